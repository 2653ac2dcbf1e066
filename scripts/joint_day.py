"""Joint vs separate: three paper pipelines sharing one core budget over a day of the bundled Twitter trace.

    PYTHONPATH=src python scripts/joint_day.py [--hours 24] [--budget 16] [--damping 8] [--out docs/figures/joint-day]

Each pipeline (video, audio-qa, audio-sent) gets the same day of ../shared/traces/twitter-train-14d.txt.gz
(day 1), shifted by 8 hours per pipeline so their peaks fall at different times, divided by `--damping` (IPA's 8).
Both modes see the same arrivals, predictor (pipetune's default) and decision interval (10 s): `joint` decides all
three in one MILP per interval within the budget (pipetune.optimizer.joint), `separate` plans each alone within an
equal share (6/5/5 cores of 16); a load with no plan within the cores is served best effort in both modes (the
plan for the largest fraction of it that has one; pipetune.experiments.shared_budget).
Writes joint-day.png (load, cores, SLA violations and accuracy over the day, 10-minute means) and joint-day.json
(per mode and pipeline: the summary, and the 10-minute series) into --out, and prints the summary table.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from pipetune import jsonio
from pipetune.errors import PipetuneError
from pipetune.experiments.shared_budget import MODES, run_shared_budget
from pipetune.plotting import pyplot, save_figure
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline
from pipetune.workloads import damp, load_trace

EXAMPLES = Path(__file__).resolve().parents[1] / "src/pipetune/examples"
PIPELINES = ("paper/video", "paper/audio-qa", "paper/audio-sent")
TRACE = Path(__file__).resolve().parents[2] / "shared/traces/twitter-train-14d.txt.gz"
DAY_S = 86400
SHIFT_S = 8 * 3600
BIN_S = 600


def day_counts(trace: Path, seconds: int, damping: float) -> list[np.ndarray]:
    c = load_trace(trace)
    out = []
    for i in range(len(PIPELINES)):
        start = DAY_S + i * SHIFT_S
        piece = c[start : start + seconds]
        if piece.size < seconds:
            raise PipetuneError(f"{trace}: {c.size} s of trace; day 1 shifted by {i * 8} h needs {start + seconds} s")
        out.append(damp(piece, damping))
    return out


def binned(series: list, interval_s: float) -> np.ndarray:
    x = np.array([np.nan if v is None else v for v in series], float)
    k = max(1, int(BIN_S // interval_s))
    n = x.size // k
    with np.errstate(all="ignore"):
        return np.nanmean(x[: n * k].reshape(n, k), axis=1)


def plot(runs: dict, labels: list[str], budget: int, interval_s: float, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    first = runs[MODES[0]]
    hours = None
    for i, k in enumerate(labels):
        rps = binned(first.intervals[k]["rps"], interval_s)
        hours = np.arange(rps.size) * BIN_S / 3600
        ax[0].plot(hours, rps, color=f"C{i}", label=k)
        for mode, ls in zip(MODES, ("-", "--")):
            ax[1].plot(hours, binned(runs[mode].intervals[k]["mean_cores"], interval_s), color=f"C{i}", ls=ls, lw=1)
    for mode, ls in zip(MODES, ("-", "--")):
        r = runs[mode]
        total = sum(binned(r.intervals[k]["mean_cores"], interval_s) for k in labels)
        ax[1].plot(hours, total, color="k", ls=ls, lw=1.5, label=f"{mode}: all pipelines")
        arrivals = sum(binned(r.intervals[k]["arrivals"], interval_s) for k in labels)
        viol = sum(
            binned(r.intervals[k]["sla_violation_rate"], interval_s) * binned(r.intervals[k]["arrivals"], interval_s)
            for k in labels
        )
        ax[2].plot(hours, 100 * np.divide(viol, arrivals, where=arrivals > 0, out=np.zeros_like(viol)), ls=ls,
                   color="k", label=mode)  # fmt: skip
        for i, k in enumerate(labels):
            ax[3].plot(hours, binned(r.intervals[k]["pas_mean"], interval_s), color=f"C{i}", ls=ls, lw=1)
    ax[1].axhline(budget, color="red", lw=1, ls=":", label=f"budget {budget} cores")
    ax[0].set_ylabel("load (rps)")
    ax[1].set_ylabel("cores held")
    ax[2].set_ylabel("SLA violations (%)")
    ax[3].set_ylabel("PAS (solid joint,\ndashed separate)")
    ax[3].set_xlabel("hour of the day")
    for a in ax[:3]:
        a.legend(fontsize=7, loc="upper right")
    ax[0].set_title(
        f"3 pipelines, one budget of {budget} cores: joint MILP (solid) vs equal shares (dashed), 10-min means",
        fontsize=9,
    )
    return save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--damping", type=float, default=8.0)
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--out", type=Path, default=Path("docs/figures/joint-day"))
    a = ap.parse_args()
    problems = []
    if not (math.isfinite(a.hours) and 0.1 <= a.hours <= 24):
        problems.append(f"--hours {a.hours}: give 0.1 to 24")
    if not 1 <= a.budget <= 10_000:
        problems.append(f"--budget {a.budget}: give 1 to 10000 cores")
    if not (math.isfinite(a.damping) and a.damping > 0):
        problems.append(f"--damping {a.damping}: give a number > 0")
    if not a.trace.exists():
        problems.append(f"--trace {a.trace}: no such file (the bundled trace lives in ../shared/traces)")
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    seconds = int(a.hours * 3600)
    pipes = [load_pipeline(EXAMPLES / n / "pipeline.yaml") for n in PIPELINES]
    profs = [load_profiles(p) for p in pipes]
    counts = day_counts(a.trace, seconds, a.damping)
    runs = {}
    with Progress() as prog:
        for mode in MODES:
            bar = prog.add_task(mode, total=seconds)
            runs[mode] = run_shared_budget(
                pipes, profs, counts, a.budget, mode=mode, on_step=lambda t, bar=bar: prog.update(bar, completed=t)
            )
    labels = list(runs["joint"].summaries)
    a.out.mkdir(parents=True, exist_ok=True)
    png = plot(runs, labels, a.budget, 10.0, a.out / "joint-day.png")
    data = {
        "budget_cores": a.budget,
        "hours": a.hours,
        "damping": a.damping,
        "pipelines": labels,
        "modes": {
            m: {
                "total": r.total(),
                "shares": r.shares,
                "decisions": r.decisions,
                "infeasible_decisions": r.infeasible_decisions,
                "summaries": r.summaries,
                "series_10min": {
                    k: {c: [None if math.isnan(x) else float(x) for x in binned(v, 10.0)] for c, v in iv.items()}
                    for k, iv in r.intervals.items()
                },
            }
            for m, r in runs.items()
        },
    }
    (a.out / "joint-day.json").write_text(jsonio.dumps(data, indent=1))
    t = Table(title=f"{a.hours:g} h, {a.budget} cores shared: joint vs separate (equal shares)")
    for col in ("mode", "pipeline", "requests", "SLA violations", "mean cores", "PAS", "no-plan decisions"):
        t.add_column(col, justify="left" if col in ("mode", "pipeline") else "right")
    for m, r in runs.items():
        for k, s in r.summaries.items():
            t.add_row(m, k, str(s["requests"]), f"{100 * s['sla_violation_rate']:.2f}%", f"{s['mean_cores']:.2f}",
                      f"{s['pas_mean']:.4f}", "")  # fmt: skip
        tot = r.total()
        t.add_row(m, "all", f"{tot['requests']:.0f}", f"{100 * tot['sla_violation_rate']:.2f}%",
                  f"{tot['mean_cores']:.2f}", f"{tot['pas_mean']:.4f}", f"{r.infeasible_decisions} / {r.decisions}")  # fmt: skip
    Console().print(t)
    Console().print(f"wrote {png} and {a.out / 'joint-day.json'}")


if __name__ == "__main__":
    main()
