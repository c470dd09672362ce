#!/usr/bin/env bash
# The main job on the embedded defaults: install what is missing, build, fetch the pinned models and data
# (`dongcha setup`), build the demo shop into the default store (data/dongcha.db), show what is in it, and
# serve the bot: the web chat on localhost ([serve] listen), Telegram too when DONGCHA_TELEGRAM_TOKEN is
# set, Discord when DONGCHA_DISCORD_TOKEN is. Arguments are passed to `dongcha stats`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
build_dongcha
$dc setup --demo
# The quick sentiment head is trained once (about 2 minutes on 2 cores with AVX-512 VNNI, mostly encoding
# 31k texts); a later run finds it under data/heads and goes straight on. The fine-tuned head (better on
# every held-out set, about 25 minutes and 4 GB on 2 cores) is not waited for: `serve --fine-tune` below
# trains it in a background process at the lowest priority and labels the reviews again, and answers
# switch to it when that is done (/healthz shows where it stands; data/fine-tune.log has its output).
$dc train sentiment --if-missing --frozen
$dc enrich
$dc stats "$@"
# Operators sign in to the web chat with a token from DONGCHA_OPERATOR_TOKENS; a local run without one gets
# a fresh token, shown here once.
if [ -z "${DONGCHA_OPERATOR_TOKENS:-}" ]; then
    DONGCHA_OPERATOR_TOKENS="local-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    export DONGCHA_OPERATOR_TOKENS
    echo "operator token for this run (sign in to the web chat with it): $DONGCHA_OPERATOR_TOKENS"
fi
exec $dc serve --fine-tune
