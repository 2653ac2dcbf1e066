"""Variant mixing on the bundled pipelines: accuracy-vs-cores frontiers with and without splits, and how often a
split beats one variant per stage. One command:

    PYTHONPATH=src python scripts/mixing_frontier.py [--out docs/figures/mixing-frontier.png] [--prices 24] [--loads 12]

Frontier: at a fixed load (IPA's window peak, 34.4 rps, or half the largest load one variant per stage can plan
for where that is less), for each price of a core beta on a log grid the plan maximising accuracy - beta*cores
(the pipeline's accuracy method), with caps.mix_variants = 1 and = 2: the supported points of the accuracy/cores
frontier. Loads: `--loads` loads evenly up to the largest plannable
load (at most 200 rps), each planned with the pipeline's own objective at k = 1 and k = 2; a load counts as
improved when k = 2's objective is strictly higher (1e-9 relative). Writes the PNG and a strict JSON beside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.progress import Progress

import pipetune
from pipetune import jsonio
from pipetune.experiments.sla_calibration import max_load
from pipetune.optimizer import plan_pipeline
from pipetune.plotting import pyplot, save_figure

PIPELINES = ("paper/audio-qa", "paper/audio-sent", "paper/nlp", "paper/sum-qa", "paper/video", "text")
FRONTIER_RPS = 34.4  # IPA's four windows peak at 34.4 rps (README)
LOAD_TOP_RPS = 200.0


def _with(p, k: int, objective: dict | None = None):
    caps = p.caps.model_copy(update={"mix_variants": k})
    upd: dict = {"caps": caps}
    if objective is not None:
        upd["objective"] = p.objective.model_copy(update=objective)
    return p.model_copy(update=upd)


def frontier(p, rps: float, prices: int) -> dict:
    """The accuracy/cores trade-off at `rps`, k = 1 and k = 2: for each price of a core (beta, on a log grid),
    the plan maximising accuracy - beta*cores (the pipeline's accuracy method). Each is a point of the frontier
    (its supported points: those on its upper convex hull); a budget sweep is refused with mixing."""
    out: dict = {"rps": rps, "k1": [], "k2": []}
    for beta in np.geomspace(1e-5, 1.0, prices):
        for k in (1, 2):
            plan = plan_pipeline(_with(p, k, objective={"alpha": 1.0, "beta": float(beta), "gamma": 1e-9}), rps)
            if plan.feasible:
                out[f"k{k}"].append([plan.cost_cores, plan.accuracy])
    for k in ("k1", "k2"):
        out[k] = sorted({tuple(x) for x in out[k]})
    return out


def loads(p, top: float, n: int) -> dict:
    rows = []
    for rps in np.linspace(top / n, top, n):
        one = plan_pipeline(_with(p, 1), float(rps))
        two = plan_pipeline(_with(p, 2), float(rps))
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
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/figures/mixing-frontier.png"))
    ap.add_argument("--prices", type=int, default=24, help="prices of a core per frontier (2-200)")
    ap.add_argument("--loads", type=int, default=12, help="loads per pipeline (1-200)")
    ap.add_argument("--pipelines", nargs="*", default=list(PIPELINES), choices=PIPELINES)
    a = ap.parse_args()
    if not (2 <= a.prices <= 200 and 1 <= a.loads <= 200):
        ap.error(f"--prices {a.prices} / --loads {a.loads}: give 2-200 prices and 1-200 loads")
    result = {}
    with Progress() as prog:
        task = prog.add_task("mixing study", total=len(PIPELINES))
        for name in a.pipelines:
            p = pipetune.load_pipeline(pipetune.example_path(name))
            top, _ = max_load(p, None, cap=LOAD_TOP_RPS)
            rps = min(FRONTIER_RPS, top / 2)
            result[name] = {"frontier": frontier(p, rps, a.prices), "loads": loads(p, top, a.loads)}
            prog.advance(task)
            prog.console.print(f"{name}: done")
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (name, r) in zip(axes.ravel(), result.items()):
        f, ld = r["frontier"], r["loads"]
        for k, style in (
            ("k1", dict(color="tab:blue", marker="o", label="one variant per stage")),
            ("k2", dict(color="tab:red", marker="x", ls="--", label="split over two variants")),
        ):
            pts = f[k]
            ax.step([c for c, _ in pts], [y for _, y in pts], where="post", ms=4, **style)
        ax.set_title(
            f"{name} at {f['rps']:g} rps\nsplits better at {ld['improved']}/{ld['loads']} loads "
            f"(median gain {ld['gain_relative_median']:.2%})",
            fontsize=9,
        )
        ax.set_xlabel("cores")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=8)
    fig.suptitle("Variant mixing: accuracy vs cores at a fixed load (exact optimizer, shares in steps of 5%)")
    save_figure(fig, a.out)
    summary = {n: {k: v for k, v in r["loads"].items() if k != "rows"} for n, r in result.items()}
    a.out.with_suffix(".json").write_text(jsonio.dumps(result, indent=1) + "\n")
    print(jsonio.dumps(summary, indent=1))
    print(f"wrote {a.out} and {a.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
