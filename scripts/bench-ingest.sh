#!/usr/bin/env bash
# Ingestion throughput on both stores in one run: 1,000,000 JSON Lines records into a fresh SQLite file
# and into a fresh database on a throwaway PostgreSQL server (Debian's, on 127.0.0.1, disk syncs on, as a
# real server runs; stopped at the end). Prints records per second for each. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
ensure_system_packages scripts/test-packages.txt
start_test_postgres durable
export DONGCHA_BENCH_POSTGRES="$DONGCHA_TEST_POSTGRES"
cargo bench --locked --bench ingest -- --noplot
target="${CARGO_TARGET_DIR:-target}"
for name in jsonl_1m_lines jsonl_1m_lines_postgres; do
    python3 - "$name" "$target/criterion/ingest/$name/new/estimates.json" <<'PY'
import json, sys
ns = json.load(open(sys.argv[2]))["mean"]["point_estimate"]
print(f"{sys.argv[1]}: {1_000_000 / (ns / 1e9):,.0f} records/s (mean {ns / 1e9:.2f} s per million)")
PY
done
