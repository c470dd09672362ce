# Shared by scripts/start.sh and scripts/test.sh: make sure the machine has what dongcha needs.
# shellcheck shell=bash

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Debian packages from scripts/system-packages.txt: installed with apt-get when running as root,
# otherwise the missing ones are named with the command to install them.
ensure_system_packages() {
    local list="${1:-$here/system-packages.txt}" wanted missing=()
    wanted=$(grep -vE '^\s*(#|$)' "$list")
    for p in $wanted; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "dongcha needs these packages (Debian names): ${missing[*]}; install them with your package manager." >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing system packages: ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "dongcha needs these Debian packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
        return 1
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        echo "dongcha needs a Rust toolchain (cargo, rustc >= 1.94): see https://rustup.rs" >&2
        return 1
    fi
}

ensure_all() {
    ensure_system_packages && ensure_rust
}

# What only the tests need: a browser and the driver of tests/web (pinned in its package-lock.json).
ensure_test_tools() {
    ensure_system_packages "$here/test-packages.txt" || return 1
    if ! command -v npm >/dev/null; then
        local list
        list=$(mktemp)
        printf 'nodejs\nnpm\n' >"$list"
        ensure_system_packages "$list" || return 1
        rm -f "$list"
    fi
    if [ ! -d "$here/../tests/web/node_modules/playwright-core" ]; then
        (cd "$here/../tests/web" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# Builds the release binary (incremental) and sets $dc to its path (cargo's target dir may be elsewhere).
# For the tests ($build_for_tests set), the binary comes from building the tests themselves: their
# dev-dependencies turn on features of shared crates, so a plain `cargo build` would be a second, different
# build of dongcha (minutes, and gigabytes of cache).
build_dongcha() {
    if [ -n "${build_for_tests:-}" ]; then
        cargo test --release --locked --no-run
    else
        cargo build --release --locked
    fi
    dc="${CARGO_TARGET_DIR:-target}/release/dongcha"
}

# Commands run when the calling shell exits, in the order given (each server started here is stopped).
exit_hooks=()
on_exit() {
    exit_hooks+=("$1")
    trap 'for h in "${exit_hooks[@]}"; do "$h"; done' EXIT
}

# A Python venv at $1 (made once) with the packages $2...; prints its python. For the benchmark scripts'
# reference implementations, never for the tests.
ensure_venv() {
    local venv="$1"
    shift
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q "$@" >&2
    fi
    echo "$venv/bin/python"
}

# A throwaway PostgreSQL server for the tests: its own data folder, a free port on 127.0.0.1, no disk
# syncs (unless $1 is "durable", as benchmarks want), stopped when the calling shell exits. Exports DONGCHA_TEST_POSTGRES (the server's URL; each test
# creates its own database on it) and DONGCHA_TEST_POSTGRES_REQUIRED (so no Postgres test is skipped).
start_test_postgres() {
    local bin port fsync=off
    [ "${1:-}" = durable ] && fsync=on
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ ! -x "$bin/initdb" ]; then
        echo "PostgreSQL's server is not installed (Debian package postgresql)" >&2
        return 1
    fi
    pg_bin="$bin"
    pg_dir=$(mktemp -d /tmp/dongcha-test-pg.XXXXXX)
    pg_as=()
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$pg_dir"
        pg_as=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if ! "${pg_as[@]}" "$bin/initdb" -D "$pg_dir/data" -A trust -U postgres --no-sync >"$pg_dir/initdb.log" 2>&1; then
        cat "$pg_dir/initdb.log" >&2
        return 1
    fi
    on_exit stop_test_postgres
    "${pg_as[@]}" "$bin/pg_ctl" -D "$pg_dir/data" -w -l "$pg_dir/server.log" \
        -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=300" \
        start >/dev/null
    export DONGCHA_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
    export DONGCHA_TEST_POSTGRES_REQUIRED=1
    echo "test PostgreSQL on 127.0.0.1:$port ($pg_dir)"
}

stop_test_postgres() {
    if [ -n "${pg_dir:-}" ] && [ -d "$pg_dir/data" ]; then
        "${pg_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$pg_dir"
    fi
}

# The LLM-server test (tests/llm_server.rs) against llama.cpp's llama-server, on 127.0.0.1 with the 0.5B
# GGUF, when scripts/llama-tools.sh has built it on this machine (5.5 minutes on 2 cores, once: not
# done here, to keep the test run short). Exports DONGCHA_LLM_URL; otherwise says why the test is skipped.
start_test_llama_server() {
    local root bin model port log
    if [ -n "${DONGCHA_LLM_URL:-}" ]; then
        echo "LLM server test: against DONGCHA_LLM_URL as given"
        return 0
    fi
    root="${DONGCHA_LLAMA_TOOLS:-$HOME/.cache/dongcha/llama-tools}"
    bin="$root/build/bin/llama-server"
    if [ ! -x "$bin" ]; then
        llm_skipped="LLM server test SKIPPED: llama-server is not built on this machine ($bin; scripts/llama-tools.sh builds it once, about 6 minutes on 2 cores)"
        echo "$llm_skipped"
        on_exit say_llm_skipped
        return 0
    fi
    build_dongcha
    "$dc" setup --with qwen2.5-coder-0.5b-instruct >/dev/null
    model=$(dirname "$("$dc" setup --print-path qwen2.5-coder-0.5b-instruct qwen2.5-coder-0.5b-instruct.gguf)")/qwen2.5-coder-0.5b-instruct.gguf
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=$(mktemp /tmp/dongcha-test-llama.XXXXXX)
    "$bin" -m "$model" --host 127.0.0.1 --port "$port" -t "$(nproc)" -c 4096 >"$log" 2>&1 &
    llama_pid=$!
    llama_log=$log
    on_exit stop_test_llama_server
    if ! python3 - "$port" "$llama_pid" <<'PY'
import sys, time, urllib.request
for _ in range(240):
    try:
        # Gone (or a zombie): it will not become ready.
        if open(f"/proc/{sys.argv[2]}/stat").read().split(") ")[1][0] == "Z":
            sys.exit(1)
    except OSError:
        sys.exit(1)
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
    then
        tail -20 "$log" >&2
        llm_skipped="LLM server test SKIPPED: llama-server stopped or did not become ready in 120 s (its log is above)"
        echo "$llm_skipped"
        on_exit say_llm_skipped
        return 0
    fi
    export DONGCHA_LLM_URL="http://127.0.0.1:$port"
    echo "LLM server test: llama-server on 127.0.0.1:$port with $(basename "$model")"
}

# Said again at the end of the run, where it is seen.
say_llm_skipped() {
    echo "$llm_skipped"
}

stop_test_llama_server() {
    if [ -n "${llama_pid:-}" ]; then
        kill "$llama_pid" 2>/dev/null || true
        wait "$llama_pid" 2>/dev/null || true
        rm -f "$llama_log"
    fi
}
