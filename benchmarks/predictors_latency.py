"""Benchmark: wall time of one predict() call per predictor, as the adapter makes them (every 10 s).

    .venv/bin/python benchmarks/predictors_latency.py [--seconds 3600] [--repeats 3]

For each predictor, runs the decision loop over a synthetic fluctuating trace of --seconds seconds (calls at
t = 10, 20, ...), and prints the median, mean and p99 of the per-call time plus the ratio to the 10 ms budget of the
default predictor (5 ms for the LSTMs). Timings on a shared machine are noisy: medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--predictors", default="reactive,max,moving-average,ewma,adaptive-quantile,lstm,quantile-lstm,arima"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from pipetune.errors import PipetuneError
    from pipetune.predictors import make_predictor
    from pipetune.workloads import synthetic_pattern

    x = np.concatenate([synthetic_pattern("fluctuating", seed=s) for s in range(max(1, args.seconds // 1200))])
    rows = []
    for name in args.predictors.split(","):
        try:
            p = make_predictor(name, pretrained=True) if name in ("lstm", "quantile-lstm") else make_predictor(name)
        except PipetuneError as e:
            rows.append({"name": name, "skipped": str(e)})
            continue
        medians, p99s, means = [], [], []
        for _ in range(args.repeats):
            p.reset()
            times = []
            for t in range(10, x.size + 1, 10):
                t0 = time.perf_counter()
                p.predict(x[:t])
                times.append(time.perf_counter() - t0)
            medians.append(np.median(times) * 1e3)
            means.append(np.mean(times) * 1e3)
            p99s.append(np.percentile(times, 99) * 1e3)
            if name == "arima":
                break  # refits take seconds each on a shared machine; one pass is enough
        budget = 5.0 if "lstm" in name else 10.0
        med = float(np.median(medians))
        rows.append(
            {
                "name": name,
                "calls": x.size // 10,
                "median_ms": round(med, 4),
                "mean_ms": round(float(np.median(means)), 4),
                "p99_ms": round(float(np.median(p99s)), 3),
                "budget_ms": budget,
                "budget_over_median": round(budget / med, 1) if med > 0 else None,
            }
        )
    if args.json:
        print(json.dumps({"seconds": int(x.size), "predictors": rows}, indent=1))
        return
    print(f"{'predictor':<20}{'median ms':>11}{'mean ms':>10}{'p99 ms':>10}{'budget':>8}{'x under budget':>16}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['name']:<20} skipped: {r['skipped']}")
        else:
            print(
                f"{r['name']:<20}{r['median_ms']:>11.4f}{r['mean_ms']:>10.4f}{r['p99_ms']:>10.3f}{r['budget_ms']:>8.0f}"
                f"{r['budget_over_median']:>16}"
            )


if __name__ == "__main__":
    main()
