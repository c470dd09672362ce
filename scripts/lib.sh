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
        echo "dongcha needs a Rust toolchain (cargo, rustc >= 1.89): see https://rustup.rs" >&2
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
build_dongcha() {
    cargo build --release --locked
    dc="${CARGO_TARGET_DIR:-target}/release/dongcha"
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
    trap stop_test_postgres EXIT
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
