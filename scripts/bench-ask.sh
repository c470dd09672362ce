#!/usr/bin/env bash
# `dongcha bench ask` on the demo shop (data/ by default) with the LLM consulted on every question
# (the worst case; by default it is off or only consulted when the router is unsure), then llama.cpp's own
# llama-bench on the same GGUF with the same thread count, in one run. Arguments go to `dongcha bench ask`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
cargo build --release --locked
dc=./target/release/dongcha
threads=$(nproc)
echo "== dongcha bench ask, LLM off (the default) =="
$dc bench ask "$@"
echo "== dongcha bench ask, LLM on every question ($threads threads) =="
DONGCHA__AGENT__LLM=always $dc bench ask "$@"
bin=$(scripts/llama-tools.sh)
model=$(dirname "$($dc setup --print-path qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct.gguf)")/qwen2.5-coder-0.5b-instruct.gguf
echo "== llama.cpp's llama-bench, same GGUF, $threads threads =="
"$bin/llama-bench" -m "$model" -t "$threads" -p 128 -n 32 -r 3
