#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 600), two at a time,
# seeded from fuzz/seeds/. A crash or a hang stops that target and leaves its input under
# fuzz/artifacts/TARGET/; turn it into a regression test in tests/regression.rs, named for what broke.
#
#   scripts/fuzz.sh                 # every target, 10 minutes each
#   scripts/fuzz.sh 60 csv jsonl    # these targets, a minute each
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer's instrumentation takes a nightly compiler
# flag; on a stable toolchain RUSTC_BOOTSTRAP=1 allows it. Targets run without a sanitizer (the code
# under test is safe Rust: what is looked for is a panic, an overflow, a hang or a broken invariant),
# with debug assertions on, so arithmetic overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -a
status=0
run() {
    local t="$1" log="artifacts/$1.log"
    mkdir -p "corpus/$t" "artifacts/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    if cargo fuzz run -s none -a "$t" "corpus/$t" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
        echo "$t: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs in ${seconds} s, no crash, corpus $(ls "corpus/$t" | wc -l) inputs"
    else
        echo "$t: FAILED, see fuzz/$log and fuzz/artifacts/$t/"
        return 1
    fi
}
pids=()
for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
    if [ ${#pids[@]} -ge 2 ]; then
        wait "${pids[0]}" || status=1
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
