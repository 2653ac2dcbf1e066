"""Variant mixing on the bundled pipelines: accuracy-vs-cores frontiers with and without splits, how often (and by
how much) a split beats one variant per stage, how far the 1/20 share grid can be from continuous shares, and the
split plans served by the simulator. One command:

    PYTHONPATH=src python scripts/mixing_frontier.py [--out docs/figures/mixing-frontier.png] [--budgets 30] [--loads 12]

Frontier: at a fixed load (IPA's window peak, 34.4 rps, or half the largest load one variant per stage can plan
for where that is less), for each core budget (caps.max_total_cores, up to `--budgets` of them from the fewest
cores any plan needs to the cores of the most accurate plan) the most accurate plan within it (alpha 1, a core
price of 1e-6 to break ties toward fewer cores), with caps.mix_variants = 1 and = 2: the whole accuracy/cores
frontier, points inside its hull included. Loads: `--loads` loads evenly up to the largest plannable load (at most
200 rps), each planned with the pipeline's own objective at k = 1 and k = 2; a load counts as improved when k = 2's
objective is strictly higher (1e-9 relative); at each, `continuous_share_bound` bounds what continuous shares could
add. Simulated: at the load where a split gains most, the k = 1 and k = 2 plans served by the simulator (Poisson
arrivals, `--sim-s` seconds, 3 seeds): accuracy served (PAS), SLA violations, cores. Writes the PNG and a strict
JSON beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.progress import Progress

import pipetune
from pipetune import jsonio
from pipetune.backends.simulator import Simulator
from pipetune.backends.simulator.engine import SimSettings
from pipetune.experiments.sla_calibration import max_load
from pipetune.metrics import summarise
from pipetune.optimizer import continuous_share_bound, plan_pipeline
from pipetune.plotting import pyplot, save_figure
from pipetune.profiles import load_profiles
from pipetune.workloads import arrival_times

PIPELINES = ("paper/audio-qa", "paper/audio-sent", "paper/nlp", "paper/sum-qa", "paper/video", "text")
FRONTIER_RPS = 34.4  # IPA's four windows peak at 34.4 rps (README)
LOAD_TOP_RPS = 200.0
BOUND_RANGES = 100  # share ranges of the continuous-share bound (finer ranges, tighter bound)


def _with(p, k: int, objective: dict | None = None, budget: float | None = None):
    caps = p.caps.model_copy(update={"mix_variants": k, "max_total_cores": budget})
    upd: dict = {"caps": caps}
    if objective is not None:
        upd["objective"] = p.objective.model_copy(update=objective)
    return p.model_copy(update=upd)


def frontier(p, rps: float, budgets: int) -> dict:
    """The accuracy/cores frontier at `rps`, k = 1 and k = 2: for each core budget the most accurate plan within
    it (a core price of 1e-6 breaks ties toward fewer cores). Points: [budget, cores used, accuracy] per budget
    with a plan (both k on the same budgets, so k = 2 is never below k = 1 at a budget)."""
    obj = {"alpha": 1.0, "beta": 1e-6, "gamma": 1e-9}
    cheap = plan_pipeline(_with(p, 1, objective={"alpha": 1e-6, "beta": 1.0, "gamma": 1e-9}), rps)
    best = plan_pipeline(_with(p, 2, objective=obj), rps)
    out: dict = {"rps": rps, "k1": [], "k2": [], "budgets": []}
    if not (cheap.feasible and best.feasible):
        return out
    lo, hi = cheap.cost_cores, best.cost_cores
    grid = sorted({int(round(x)) for x in np.linspace(lo, hi, budgets)} | {lo, hi})
    out["budgets"] = grid
    for budget in grid:
        for k in (1, 2):
            plan = plan_pipeline(_with(p, k, objective=obj, budget=float(budget)), rps)
            if plan.feasible:
                out[f"k{k}"].append([budget, plan.cost_cores, plan.accuracy])
    return out


def loads(p, top: float, n: int) -> dict:
    rows = []
    for rps in np.linspace(top / n, top, n):
        one = plan_pipeline(_with(p, 1), float(rps))
        bound = continuous_share_bound(_with(p, 2), float(rps), steps=BOUND_RANGES)
        two = bound.plan
        if not (one.feasible and two.feasible):
            continue
        gain = two.objective - one.objective
        rows.append(
            {
                "rps": round(float(rps), 3),
                "objective_k1": one.objective,
                "objective_k2": two.objective,
                "improved": bool(gain > 1e-9 * max(1.0, abs(one.objective))),
                "gain": gain,
                "gain_relative": gain / max(1e-12, abs(one.objective)),
                "cores_k1": one.cost_cores,
                "cores_k2": two.cost_cores,
                "accuracy_k1": one.accuracy,
                "accuracy_k2": two.accuracy,
                "split_stages": sorted(two.mix),
                "shares": {st: [f for _, f in parts] for st, parts in two.mix.items()},
                "continuous_upper": bound.upper,
                "continuous_gap": bound.gap,
                # relative to the objective's accuracy term (the objective itself may be near 0 or negative)
                "continuous_gap_relative": bound.gap / max(1e-12, abs(two.objective_terms["accuracy"])),
            }
        )
    improved = [r for r in rows if r["improved"]]
    return {
        "top_rps": round(top, 3),
        "loads": len(rows),
        "improved": len(improved),
        "gain_median": float(np.median([r["gain"] for r in improved])) if improved else 0.0,
        "gain_max": max((r["gain"] for r in improved), default=0.0),
        "gain_relative_median": float(np.median([r["gain_relative"] for r in improved])) if improved else 0.0,
        "gain_relative_max": max((r["gain_relative"] for r in improved), default=0.0),
        "continuous_gap_max": max((r["continuous_gap"] for r in rows), default=0.0),
        "continuous_gap_relative_max": max((r["continuous_gap_relative"] for r in rows), default=0.0),
        "rows": rows,
    }


def served(p, ld: dict, seconds: float, seeds: int = 3) -> dict:
    """At the load where a split gains most: the k = 1 and k = 2 plans served by the simulator (Poisson
    arrivals at that load, each plan fixed): PAS served, SLA violations, mean cores, against the plans'."""
    improved = [r for r in ld["rows"] if r["improved"]]
    if not improved:
        return {}
    rps = max(improved, key=lambda r: r["gain"])["rps"]
    profiles = load_profiles(p)
    out: dict = {"rps": rps}
    for k in (1, 2):
        plan = plan_pipeline(_with(p, k), rps, profiles=profiles)
        runs = []
        for seed in range(seeds):
            arr = arrival_times(np.full(int(seconds), rps), seed=seed)
            sim = Simulator(_with(p, k), profiles, arr, plan.configs, SimSettings(seed=seed))
            sim.close()
            runs.append(summarise(sim.result(float(seconds)), float(seconds)))
        out[f"k{k}"] = {
            "plan_pas": plan.pas,
            "plan_cores": plan.cost_cores,
            "split": {st: [[c.variant, f] for c, f in parts] for st, parts in plan.mix.items()},
            "pas_served": float(np.mean([r["pas_mean"] for r in runs])),
            "violations": float(np.max([r["sla_violation_rate"] for r in runs])),
            "mean_cores": float(np.mean([r["mean_cores"] for r in runs])),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/figures/mixing-frontier.png"))
    ap.add_argument("--budgets", type=int, default=30, help="core budgets per frontier (2-200)")
    ap.add_argument("--loads", type=int, default=12, help="loads per pipeline (1-200)")
    ap.add_argument("--sim-s", type=float, default=120.0, help="simulated seconds per served plan (10-3600)")
    ap.add_argument("--pipelines", nargs="*", default=list(PIPELINES), choices=PIPELINES)
    a = ap.parse_args()
    if not (2 <= a.budgets <= 200 and 1 <= a.loads <= 200 and 10 <= a.sim_s <= 3600):
        ap.error(f"--budgets {a.budgets} / --loads {a.loads} / --sim-s {a.sim_s}: give 2-200, 1-200, 10-3600")
    result = {}
    with Progress() as prog:
        task = prog.add_task("mixing study", total=3 * len(a.pipelines))
        for name in a.pipelines:
            p = pipetune.load_pipeline(pipetune.example_path(name))
            top, _ = max_load(p, None, cap=LOAD_TOP_RPS)
            rps = min(FRONTIER_RPS, top / 2)
            f = frontier(p, rps, a.budgets)
            prog.advance(task)
            ld = loads(p, top, a.loads)
            prog.advance(task)
            result[name] = {"frontier": f, "loads": ld, "served": served(p, ld, a.sim_s)}
            prog.advance(task)
            prog.console.print(f"{name}: {ld['improved']}/{ld['loads']} loads improved")
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    for ax, (name, r) in zip(axes.ravel(), result.items()):
        f, ld, sv = r["frontier"], r["loads"], r["served"]
        for k, style in (
            ("k1", dict(color="tab:blue", marker="o", label="one variant per stage")),
            ("k2", dict(color="tab:red", marker="x", ls="--", label="split over two variants")),
        ):
            pts = f[k]
            ax.step([b for b, _, _ in pts], [y for _, _, y in pts], where="post", ms=4, **style)
        lines = [
            f"{name} at {f['rps']:g} rps",
            f"split better at {ld['improved']}/{ld['loads']} loads (gain median {ld['gain_relative_median']:.2%}, "
            f"max {ld['gain_relative_max']:.2%})",
            f"continuous shares: <= +{ld['continuous_gap_max']:.3g} objective "
            f"({ld['continuous_gap_relative_max']:.2%} of its accuracy term)",
        ]
        if sv:
            lines.append(
                f"simulated at {sv['rps']:g} rps: PAS {sv['k1']['pas_served']:.4f} -> {sv['k2']['pas_served']:.4f}, "
                f"SLA viol. {sv['k1']['violations']:.2%} / {sv['k2']['violations']:.2%}"
            )
        ax.set_title("\n".join(lines), fontsize=8)
        ax.set_xlabel("cores (budget)")
        ax.set_ylabel("accuracy (pipeline's method)")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle(
        "Variant mixing: the most accurate plan per core budget at a fixed load (exact optimizer, shares in steps of 5%)"
    )
    save_figure(fig, a.out)
    summary = {
        n: {**{k: v for k, v in r["loads"].items() if k != "rows"}, "served": r["served"]} for n, r in result.items()
    }
    a.out.with_suffix(".json").write_text(jsonio.dumps(result, indent=1) + "\n")
    print(jsonio.dumps(summary, indent=1))
    print(f"wrote {a.out} and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
