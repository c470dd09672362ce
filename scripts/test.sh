#!/usr/bin/env bash
# The test suite: install what is missing, then build once (release: real models are too slow in debug)
# and run every test. Tests fetch the pinned assets they use into the shared cache on first use. The
# database tests run on SQLite and on a throwaway PostgreSQL server started here and stopped at the end;
# the LLM-server test runs against llama-server when scripts/llama-tools.sh has built it (said either way).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
ensure_test_tools
build_for_tests=1
start_test_postgres
start_test_llama_server
cargo test --release --locked "$@"
