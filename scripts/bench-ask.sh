#!/usr/bin/env bash
# `dongcha bench ask` on the demo shop (data/ by default) with the defaults, the LLM off, the 0.5B model
# re-ranking, and the 0.5B model generating every call (the worst case), then llama.cpp's own llama-bench on
# the 0.5B GGUF with the same thread count, in one run. Arguments go to `dongcha bench ask`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
build_dongcha
threads=$(nproc)
$dc setup --with qwen2.5-coder-0.5b-instruct >/dev/null
small=(env DONGCHA__MODELS__LLM=qwen2.5-coder-0.5b-instruct)
echo "== dongcha bench ask, the defaults (1.5B model re-ranking when the router is unsure) =="
$dc bench ask "$@"
echo "== dongcha bench ask, LLM off =="
DONGCHA__AGENT__LLM=off $dc bench ask "$@"
echo "== dongcha bench ask, 0.5B model re-ranking when unsure =="
"${small[@]}" $dc bench ask "$@"
echo "== dongcha bench ask, 0.5B model generating every call under the grammar ($threads threads) =="
"${small[@]}" DONGCHA__AGENT__LLM=always $dc bench ask "$@"
bin=$(scripts/llama-tools.sh)
model=$(dirname "$($dc setup --print-path qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct.gguf)")/qwen2.5-coder-0.5b-instruct.gguf
echo "== llama.cpp's llama-bench, same GGUF, $threads threads =="
"$bin/llama-bench" -m "$model" -t "$threads" -p 128 -n 32 -r 3
