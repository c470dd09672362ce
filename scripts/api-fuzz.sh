#!/usr/bin/env bash
# Points schemathesis (PyPI, pinned below) at `dongcha serve`'s /openapi.json: every operation, with an
# operator token and then with a shop token, all checks (no 500, responses match the document, requests
# valid by the document are not refused). Serves the shop of DATA_DIR (default: data/, as start.sh
# leaves it) on a free port of 127.0.0.1 and stops it at the end.
#
#   scripts/api-fuzz.sh [DATA_DIR] [EXAMPLES]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="${1:-$root/data}"
examples="${2:-300}"
venv="$root/target/schemathesis-venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
(cd "$root" && cargo build --release -q)
log="$(mktemp)"
out="$(mktemp)"
DONGCHA__SERVE__LISTEN=127.0.0.1:0 DONGCHA_OPERATOR_TOKENS=api-fuzz-operator \
    DONGCHA_SHOP_TOKENS=api-fuzz-shop DONGCHA__SERVE__PUBLIC_RATE_PER_MINUTE=1000000 \
    DONGCHA__SERVE__PUBLIC_RATE_BURST=1000000 DONGCHA__SERVE__RATE_PER_MINUTE=1000000 \
    DONGCHA__SERVE__RATE_BURST=1000000 \
    "$root/target/release/dongcha" --data-dir "$data" serve --no-llm >"$out" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log" "$out"' EXIT
for _ in $(seq 1 120); do
    grep -q "web chat at" "$out" && break
    sleep 0.5
done
base="$(sed -n 's|^dongcha serve: web chat at \(http://[^/]*\)/.*|\1|p' "$out" | head -1)"
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
status=0
for token in api-fuzz-operator api-fuzz-shop; do
    echo "== schemathesis with the ${token#api-fuzz-} token"
    "$venv/bin/schemathesis" run "$base/openapi.json" -H "Authorization: Bearer $token" \
        --checks all --max-examples "$examples" --request-timeout 60 --workers 2 || status=1
done
if grep -q " 500 \|status=500\|panicked" "$log"; then
    echo "the server logged a 500 or a panic:" >&2
    grep " 500 \|status=500\|panicked" "$log" >&2
    status=1
fi
exit $status
