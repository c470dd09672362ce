"""Holt-Winters and ETS(M,A,M) with statsmodels on every CSV (date,value) of a folder, the last H values
held out, for comparison with `dongcha insight forecast --eval --data DIR --json`'s per-model scores.
Prints one JSON object per series: MAPE of statsmodels' ExponentialSmoothing (additive trend, additive or
multiplicative season; least squares) and of its ETSModel(M,A,M) (maximum likelihood)."""
import csv
import json
import pathlib
import sys
import warnings

import numpy as np
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing

warnings.filterwarnings("ignore")
folder, holdout = pathlib.Path(sys.argv[1]), int(sys.argv[2])
for path in sorted(folder.glob("*.csv")):
    rows = list(csv.reader(open(path)))
    y = np.array([float(r[1]) for r in rows if r and r[0][:1].isdigit()])
    if len(y) < 2 * 12 + 2 + holdout:
        continue
    train, test = y[:-holdout], y[-holdout:]
    mape = lambda p: float(100 * np.mean(np.abs((test - p) / test)))
    out = {"series": path.stem}
    for name, season in [("hw_additive", "add"), ("hw_multiplicative", "mul")]:
        if season == "mul" and (train <= 0).any():
            continue
        fit = ExponentialSmoothing(train, trend="add", seasonal=season, seasonal_periods=12).fit()
        out[name] = mape(fit.forecast(holdout))
    if (train > 0).all():
        ets = ETSModel(train, error="mul", trend="add", seasonal="mul", seasonal_periods=12).fit(disp=False)
        out["ets_mam"] = mape(ets.forecast(holdout))
    print(json.dumps(out))
