"""Optimizer decision time, from scratch and warm (the adapter's re-plan), and exactness of each finishing path.

    .venv/bin/python benchmarks/optimizer_speed.py --instances 20 --cells 9x9,15x9,25x9 --oracle 200

From scratch = a new pipeline object per instance, so no cache helps (what `pipetune bench optimizer` times;
the same seed gives the same instances when the cells match). Warm = the adapter's case: the same pipeline
re-planned at a load 3% higher with `current` set to the previous plan (cached profiles and rate-independent
option facts, plus the least-change tie-break MILP). Both wall and CPU time are printed: on a shared, loaded
machine wall time mostly measures the neighbours. `--oracle N` re-checks N small random instances against brute
force with the flat enumeration switched off, so the frontier enumeration (and, with its cap at 0, HiGHS branch
and bound) is what answers. Writes a PNG of the time distributions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--cells", default="9x9,15x9,25x9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracle", type=int, default=0, help="small instances checked with the flat enumeration off")
    ap.add_argument("--png", default=str(Path(__file__).with_suffix(".png")))
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.progress import Progress

    import pipetune.optimizer.milp as milp
    from pipetune.optimizer import plan_pipeline, stage_options
    from pipetune.optimizer.bench import agrees
    from pipetune.optimizer.instances import METHODS, random_instance
    from pipetune.optimizer.oracle import MAX_COMBINATIONS, brute_force, combinations

    branches = {"n": 0}
    original_branch = milp._branch

    def counted_branch(*a, **k):
        branches["n"] += 1
        return original_branch(*a, **k)

    milp._branch = counted_branch
    cells = [tuple(int(x) for x in c.split("x")) for c in args.cells.split(",")]
    rng = np.random.default_rng(args.seed)
    rows = []
    with Progress(transient=True) as prog:
        task = prog.add_task("decisions", total=len(cells) * args.instances + args.oracle)
        for s, v in cells:
            for _ in range(args.instances):
                pipeline, profiles, rps = random_instance(rng, s, v)
                before = branches["n"]
                w0, c0 = time.perf_counter(), time.process_time()
                plan = plan_pipeline(pipeline, rps, profiles=profiles)
                cold = ((time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3)
                used_branch = branches["n"] > before
                warm = (np.nan, np.nan)
                if plan.feasible:
                    current = {name: st.config for name, st in plan.stages.items()}
                    w0, c0 = time.perf_counter(), time.process_time()
                    plan_pipeline(pipeline, rps * 1.03, profiles=profiles, current=current)
                    warm = ((time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3)
                rows.append(
                    {
                        "cell": f"{s}x{v}",
                        "method": pipeline.objective.accuracy,
                        "cold_wall": cold[0],
                        "cold_cpu": cold[1],
                        "warm_wall": warm[0],
                        "warm_cpu": warm[1],
                        "branch": used_branch,
                    }
                )
                prog.advance(task)

        checked = agree = 0
        if args.oracle:
            milp.ENUMERATE_AT_MOST, saved = 0, milp.ENUMERATE_AT_MOST
            orng = np.random.default_rng(args.seed + 1000)
            attempts = 0
            while checked < args.oracle and attempts < args.oracle * 4:
                attempts += 1
                pipeline, profiles, rps = random_instance(
                    orng,
                    int(orng.integers(2, 6)),
                    int(orng.integers(1, 5)),
                    n_batches=int(orng.integers(2, 5)),
                    n_cores=int(orng.integers(1, 3)),
                    method=METHODS[attempts % len(METHODS)],
                    budget=bool(orng.random() < 0.25),
                    max_replicas=30,
                )
                raw = stage_options(pipeline, rps, profiles)
                if combinations(raw) > MAX_COMBINATIONS // 4:
                    continue
                checked += 1
                agree += agrees(plan_pipeline(pipeline, rps, profiles=profiles), brute_force(pipeline, raw))
                prog.advance(task)
            milp.ENUMERATE_AT_MOST = saved

    def stats(sel, key):
        x = np.array([r[key] for r in sel], float)
        x = x[np.isfinite(x)]
        return (round(float(np.median(x)), 2), round(float(np.percentile(x, 95)), 2)) if x.size else None

    out = {"cells": {}, "by_method_9x9": {}}
    for s, v in cells:
        sel = [r for r in rows if r["cell"] == f"{s}x{v}"]
        out["cells"][f"{s}x{v}"] = {k: stats(sel, k) for k in ("cold_wall", "cold_cpu", "warm_wall", "warm_cpu")}
        out["cells"][f"{s}x{v}"]["highs_branch_decisions"] = f"{sum(r['branch'] for r in sel)}/{len(sel)}"
    for m in METHODS:
        sel = [r for r in rows if r["cell"] == "9x9" and r["method"] == m]
        if sel:
            out["by_method_9x9"][m] = {
                "n": len(sel),
                "cold_wall": stats(sel, "cold_wall"),
                "cold_cpu": stats(sel, "cold_cpu"),
            }
    if args.oracle:
        out["oracle_frontier_path"] = {"instances": checked, "agree": int(agree)}
    print(json.dumps(out, indent=1))
    print("(median, p95) in ms")

    fig, ax = plt.subplots(figsize=(7, 4))
    labels, data = [], []
    for s, v in cells:
        for key in ("cold_cpu", "warm_cpu", "cold_wall"):
            x = np.array([r[key] for r in rows if r["cell"] == f"{s}x{v}"], float)
            data.append(x[np.isfinite(x)])
            labels.append(f"{s}x{v}\n{key.replace('_', ' ')}")
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("decision time (ms)")
    ax.axhline(20, color="g", ls="--", lw=0.8, label="goal 9x9 (20 ms)")
    ax.axhline(100, color="r", ls="--", lw=0.8, label="goal 25x9 (100 ms)")
    ax.set_title("pipetune optimizer decision time per stages x variants")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(args.png), dpi=120)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
