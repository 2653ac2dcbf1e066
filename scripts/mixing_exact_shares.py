"""Continuous shares decided exactly vs the 1/20 share grid and the old bound, on the bundled pipelines at the loads
of docs/optimizer.md's mixing table (12 loads evenly up to 200 rps), each pipeline with caps.mix_variants = 2 and its
own objective. One command:

    PYTHONPATH=src python scripts/mixing_exact_shares.py [--out docs/figures/mixing-exact-shares.json]

Per load: the grid plan's objective (plan_pipeline, shares on 1/MIX_SHARE_STEPS), the continuous decision's
(shares.plan_continuous_shares: its plan, its proven upper bound, how it stopped, relaxations solved, seconds per
decision) and the old bound (continuous_share_bound over 100 share ranges). Writes a strict JSON and prints the
per-pipeline summary rows of the docs' table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

import pipetune
from pipetune import jsonio
from pipetune.optimizer import continuous_share_bound
from pipetune.optimizer.shares import plan_continuous_shares

PIPELINES = ("paper/audio-qa", "paper/audio-sent", "paper/nlp", "paper/sum-qa", "paper/video", "text")
LOAD_TOP_RPS = 200.0
OLD_BOUND_RANGES = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/figures/mixing-exact-shares.json"))
    ap.add_argument("--loads", type=int, default=12)
    args = ap.parse_args()
    out: dict = {}
    with Progress() as bar:
        task = bar.add_task("decisions", total=len(PIPELINES) * args.loads)
        for name in PIPELINES:
            p = pipetune.load_pipeline(pipetune.example_path(name))
            p = p.model_copy(update={"caps": p.caps.model_copy(update={"mix_variants": 2})})
            rows = []
            for rps in np.linspace(LOAD_TOP_RPS / args.loads, LOAD_TOP_RPS, args.loads):
                rps = round(float(rps), 3)
                t0 = time.perf_counter()
                d = plan_continuous_shares(p, rps)
                dt = time.perf_counter() - t0
                old = continuous_share_bound(p, rps, steps=OLD_BOUND_RANGES)
                rows.append(
                    {
                        "rps": rps,
                        "grid": d.grid_objective,
                        "exact": None if d.lower == -np.inf else d.lower,
                        "upper": None if d.upper == -np.inf else d.upper,
                        "old_bound": None if old.upper == -np.inf else old.upper,
                        "stopped": d.stopped,
                        "iterations": d.iterations,
                        "seconds": dt,
                        "shares": {s: [f for _, f in parts] for s, parts in d.plan.mix.items()}
                        if d.plan.feasible
                        else {},
                    }
                )
                bar.advance(task)
            out[name] = rows
            both = [r for r in rows if r["grid"] is not None and r["exact"] is not None]
            gains = [r["exact"] - r["grid"] for r in both]
            slack = [r["old_bound"] - r["exact"] for r in both]
            secs = [r["seconds"] for r in rows]
            print(
                f"| {name} | {sum(g > 1e-9 for g in gains)} / {len(both)} | {max(gains, default=0):.4g} | "
                f"{max(slack, default=0):.4g} | {sum(r['stopped'] == 'optimal' for r in rows)} / {len(rows)} | "
                f"{np.median(secs):.2f} / {max(secs):.2f} |",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(jsonio.dumps(out, indent=1))


if __name__ == "__main__":
    main()
