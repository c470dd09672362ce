#!/usr/bin/env bash
# BG/NBD fit speed, dongcha vs lifetimes' BetaGeoFitter, on the same file in one run; prints the ratio.
# Makes (once) a venv with lifetimes==0.11.3 under ~/.cache/dongcha/bench-venv. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
python=$(ensure_venv "${DONGCHA_BENCH_VENV:-$HOME/.cache/dongcha/bench-venv}" lifetimes==0.11.3 "numpy<2" "pandas<2.2" scipy)
build_dongcha
summary="$($dc setup --print-path cdnow cdnow_customers_summary.csv)"
echo "lifetimes BetaGeoFitter on $summary:"
py=$("$python" benches/lifetimes_bgnbd.py "$summary" 20)
echo "  $py"
cargo bench --locked --bench insight -- --noplot bgnbd_fit_cdnow_2357
target="${CARGO_TARGET_DIR:-target}"
python3 - "$py" "$target/criterion/bgnbd_fit_cdnow_2357/new/estimates.json" <<'PY'
import json, sys
ref = json.loads(sys.argv[1])
ours = json.load(open(sys.argv[2]))["median"]["point_estimate"] / 1e9
print(f"BG/NBD fit on CDNOW (2,357 customers): lifetimes {ref['median_seconds']*1e3:.1f} ms, "
      f"dongcha {ours*1e3:.2f} ms: {ref['median_seconds']/ours:.1f}x faster")
PY
