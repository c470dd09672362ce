"""The Python reference for benches/insight.rs: lifetimes' BetaGeoFitter on the published CDNOW summary.

Run by scripts/bench-insight.sh in a venv (lifetimes==0.11.3); prints one JSON line with the fitted
parameters and the median fit time over repeated runs. Not part of the tests.
"""
import json
import statistics
import sys
import time

from lifetimes import BetaGeoFitter
import pandas as pd

summary = pd.read_csv(sys.argv[1])
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
times = []
for _ in range(runs):
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    t = time.perf_counter()
    bgf.fit(summary["frequency"], summary["recency"], summary["T"])
    times.append(time.perf_counter() - t)
p = bgf.params_
print(json.dumps({
    "r": p["r"], "alpha": p["alpha"], "a": p["a"], "b": p["b"],
    "median_seconds": statistics.median(times), "runs": runs,
}))
