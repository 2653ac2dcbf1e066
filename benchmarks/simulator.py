"""Simulator benchmark as a script (same as `pipetune bench simulator`): speed and queueing-theory validation.

    .venv/bin/python benchmarks/simulator.py [--requests 400000] [--seeds 3]

Prints JSON: requests_per_s (goal >= 200,000 on one core), md1 (M/D/1 vs Pollaczek-Khinchine at rho 0.5/0.8/0.9,
goal rel_err <= 3%) and mmc (M/M/c vs Erlang C). Timings are wall-clock on whatever else the machine runs:
compare medians of repeated runs.
"""

from __future__ import annotations

import argparse
import json

from pipetune.backends.simulator.bench import run_simulator_benchmark

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(run_simulator_benchmark(n=a.requests, seeds=a.seeds), indent=1))
