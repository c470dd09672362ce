"""The Python reference for benches/encoder.rs: sentence-transformers (PyTorch, CPU) encoding the same 2,000
review-length sentences (at most 120 characters) with batch 32. Prints one JSON line with sentences/s (median of runs). Not part of the tests."""
import json
import statistics
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, pos, neg = sys.argv[1:4]
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else torch.get_num_threads())


def read(p):
    seen, out = set(), []
    for line in open(p, encoding="utf-8"):
        t = line.strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


p, n = read(pos), read(neg)
both = set(p) & set(n)
texts = [t for t in ([t for t in p if t not in both] + [t for t in n if t not in both]) if len(t) <= 120][:2000]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=32)
times = []
for _ in range(3):
    t = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    times.append(time.perf_counter() - t)
print(json.dumps({"sentences": len(texts), "median_seconds": statistics.median(times),
                  "sentences_per_second": len(texts) / statistics.median(times), "threads": torch.get_num_threads()}))
