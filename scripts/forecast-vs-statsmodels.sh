#!/usr/bin/env bash
# Holt-Winters fits, dongcha vs statsmodels, on the same series and splits (the last 12 months held out):
# writes the registry series (`dongcha insight forecast --write-series`), scores both on DIR (default: the
# development series), and prints test MAPE side by side with the ratio. Makes (once) a venv with
# statsmodels==0.14.5 under ~/.cache/dongcha/bench-venv-statsmodels. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
python=$(ensure_venv "${DONGCHA_STATSMODELS_VENV:-$HOME/.cache/dongcha/bench-venv-statsmodels}" statsmodels==0.14.5 pandas==2.2.3)
build_dongcha
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$dc insight forecast --write-series "$work" >/dev/null
dir="${1:-$work/dev}"
"$python" benches/statsmodels_holt_winters.py "$dir" 12 >"$work/statsmodels.jsonl"
$dc insight forecast --eval --data "$dir" --holdout 12 --json >"$work/dongcha.json"
python3 - "$work/statsmodels.jsonl" "$work/dongcha.json" <<'PY'
import json, sys
ref = {r["series"]: r for r in map(json.loads, open(sys.argv[1]))}
ours = {s["series"]: {m["method"]: m["mape"] for m in s["score"]["methods"]}
        for s in json.load(open(sys.argv[2]))["series"]}
print(f"{'series':<16} {'HW add: dongcha':>16} {'statsmodels':>12} {'HW mult: dongcha':>17} {'statsmodels':>12} {'ratio':>6}")
for name, r in sorted(ref.items()):
    o = ours.get(name, {})
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"
    hm, rm = o.get("holt-winters-multiplicative"), r.get("hw_multiplicative")
    ratio = f"{hm / rm:.2f}" if hm and rm else "-"
    print(f"{name:<16} {fmt(o.get('holt-winters-additive')):>16} {fmt(r.get('hw_additive')):>12} "
          f"{fmt(hm):>17} {fmt(rm):>12} {ratio:>6}")
PY
