#!/usr/bin/env bash
# The main job on the embedded defaults: install what is missing, build, fetch the pinned models and data
# (`dongcha setup`), build the demo shop into the default store (data/dongcha.db) and show what is in it.
# Arguments are passed to `dongcha stats`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
build_dongcha
$dc setup --demo
# The sentiment head is trained once (about 2 minutes on 2 cores with AVX-512 VNNI, 20 without, mostly
# encoding 17k sentences); a later run finds it under data/heads and goes straight on.
$dc train sentiment --if-missing
$dc enrich
$dc stats "$@"
