#!/usr/bin/env bash
# The main job on the embedded defaults: install what is missing, build, fetch the pinned models and data
# (`dongcha setup`), build the demo shop into the default store (data/dongcha.db) and show what is in it.
# Arguments are passed to `dongcha stats`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
cargo build --release --locked
./target/release/dongcha setup --demo
./target/release/dongcha stats "$@"
