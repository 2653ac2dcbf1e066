"""Figures of an experiment (matplotlib, Agg, PNG): Figure-8 grid, latency CDF, predictor ablation,
objective sweep, planner calibration."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib.ticker
import numpy as np

from pipetune.experiments.verdicts import VERDICT_METRICS, per_seed, t_interval
from pipetune.experiments.worker import CDF_LEVELS
from pipetune.plotting import pyplot, save_figure

plt = pyplot()
STYLES = ["-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1))]


def _style(i: int) -> dict:
    """Systems that choose the same plans draw the same line: thicker first lines and dashes keep both visible."""
    return {"ls": STYLES[i % len(STYLES)], "lw": max(0.9, 2.4 - 0.35 * i)}


def _arr(xs) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _mean_over_seeds(runs: list[dict], key: str) -> np.ndarray:
    cols = [_arr(r["intervals"][key]) for r in runs]
    n = min(len(c) for c in cols)
    return np.nanmean(np.stack([c[:n] for c in cols]), axis=0) if len(cols) > 1 else cols[0]


def _runs(data: dict, kind: str, pipe: str | None) -> list[dict]:
    return [r for r in data["runs"] if r["kind"] == kind and (pipe is None or r.get("pipeline") == pipe)]


def fig8_grid(data: dict, path: Path, pipe: str | None = None) -> Path:
    """IPA Figure 8: per workload (column), load / cost / accuracy over time (rows), one line per system."""
    grid = _runs(data, "grid", pipe)
    workloads = [w["name"] for w in data["experiment"]["workloads"]]
    systems = [s["name"] for s in data["experiment"]["systems"]]
    fig, axes = plt.subplots(3, len(workloads), figsize=(3.6 * len(workloads), 6.4), squeeze=False, sharex="col")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, w in enumerate(workloads):
        for i, s in enumerate(systems):
            runs = [r for r in grid if r["workload"] == w and r["system"] == s]
            if not runs:
                continue
            t = _arr(runs[0]["intervals"]["t_start_s"]) / 60.0
            if i == 0:
                axes[0, j].plot(t, _mean_over_seeds(runs, "rps"), color="0.4", lw=1)
            axes[1, j].plot(
                t, _mean_over_seeds(runs, "mean_cores"), color=colors[i % len(colors)], label=s, **_style(i)
            )
            axes[2, j].plot(t, _mean_over_seeds(runs, "pas_mean"), color=colors[i % len(colors)], label=s, **_style(i))
        axes[0, j].set_title(w)
        axes[2, j].set_xlabel("time (min)")
    axes[0, 0].set_ylabel("load (rps)")
    axes[1, 0].set_ylabel("cost (cores)")
    axes[2, 0].set_ylabel("accuracy (PAS)")
    axes[1, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{pipe or data['experiment']['name']}: cost and accuracy over time", fontsize=10)
    return save_figure(fig, path)


def latency_cdf(data: dict, path: Path, pipe: str | None = None) -> Path:
    """Empirical end-to-end latency CDF per workload and system; drops count as never finishing."""
    grid = _runs(data, "grid", pipe)
    workloads = [w["name"] for w in data["experiment"]["workloads"]]
    systems = [s["name"] for s in data["experiment"]["systems"]]
    sla = grid[0]["sla_s"] if grid else None
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.4 * len(workloads), 2.9), squeeze=False)
    for j, w in enumerate(workloads):
        ax = axes[0, j]
        for i, s in enumerate(systems):
            run = next((r for r in grid if r["workload"] == w and r["system"] == s), None)
            if run is None:
                continue
            q = _arr(run["cdf"])
            ok = np.isfinite(q)
            ax.plot(q[ok], CDF_LEVELS[ok], label=s, **_style(i))
        if sla:
            ax.axvline(sla, color="red", ls="--", lw=1, label="SLA")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(f"{pipe + ': ' if pipe else ''}{w}", fontsize=9)
        ax.set_xlabel("latency (s)")
        ax.set_ylim(0, 1.01)
    axes[0, 0].set_ylabel("fraction of requests")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def ablation(data: dict, path: Path, pipe: str | None = None) -> Path | None:
    runs = _runs(data, "ablation", pipe)
    if not runs:
        return None
    workloads = list(dict.fromkeys(r["workload"] for r in runs))
    preds = list(dict.fromkeys(r["predictor"] for r in runs))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0))
    width = 0.8 / len(preds)
    x = np.arange(len(workloads))
    for k, p in enumerate(preds):
        vals = defaultdict(list)
        for w in workloads:
            r = next((r for r in runs if r["workload"] == w and r["predictor"] == p), None)
            vals["viol"].append(100 * r["summary"]["sla_violation_rate"] if r else np.nan)
            vals["cores"].append(r["summary"]["mean_cores"] if r else np.nan)
            vals["pas"].append(r["summary"]["pas_mean"] if r else np.nan)
        for ax, key in zip(axes, ("viol", "cores", "pas")):
            ax.bar(x + k * width - 0.4 + width / 2, vals[key], width, label=p)
    for ax, lab in zip(axes, ("SLA violations (%)", "mean cores", "mean PAS")):
        ax.set_xticks(x, workloads, fontsize=8)
        ax.set_ylabel(lab)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{pipe + ': ' if pipe else ''}predictor ablation (ipa policy)", fontsize=10)
    return save_figure(fig, path)


def sweep(data: dict, path: Path, pipe: str | None = None) -> Path | None:
    runs = _runs(data, "sweep", pipe)
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    cores = [r["summary"]["mean_cores"] for r in runs]
    pas = [r["summary"]["pas_mean"] for r in runs]
    viol = [100 * r["summary"]["sla_violation_rate"] for r in runs]
    sc = ax.scatter(cores, pas, c=viol, cmap="viridis", s=36, vmin=0, vmax=max(1.0, max(viol)))
    # Settings with the same α/β trade-off pick the same plans: one stacked label per distinct point.
    groups: dict[tuple, list[str]] = defaultdict(list)
    for r, x, y in zip(runs, cores, pas):
        groups[(round(x, 1), round(y, 3))].append(r["system"].replace("a=", "α=").replace(",b=", " β="))
    offsets = [(5, 2), (5, -14), (-55, 2), (-55, -14)]
    for k, ((x, y), labels) in enumerate(sorted(groups.items())):
        ax.annotate(
            "\n".join(labels),
            (x, y),
            fontsize=6,
            xytext=offsets[k % len(offsets)],
            textcoords="offset points",
            va="center",
        )
    ax.margins(0.15)
    fig.colorbar(sc, ax=ax, label="SLA violations (%)")
    ax.set_xlabel("mean cores")
    ax.set_ylabel("mean PAS")
    ax.set_title(f"{pipe + ': ' if pipe else ''}objective sweep (α, β) on {runs[0]['workload']}", fontsize=9)
    return save_figure(fig, path)


def calibration(data: dict, path: Path) -> Path | None:
    """Planner-predicted vs simulated p99 (both / SLA) of ipa's plans held at their planned rate."""
    cal = [c for c in data.get("calibration", []) if c.get("predicted_p99_s")]
    if not cal:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    pipes = list(dict.fromkeys(c.get("pipeline", "") for c in cal))
    allr = []
    for k, pipe in enumerate(pipes):
        cs = [c for c in cal if c.get("pipeline", "") == pipe]
        sla = np.array([c["sla_s"] for c in cs])
        pred = np.array([c["predicted_p99_s"] for c in cs]) / sla
        sim = np.array([c["sim_p99_s"] if c["sim_p99_s"] is not None else np.inf for c in cs]) / sla
        axes[0].scatter(pred, np.minimum(sim, 2.0), s=14, label=pipe or None, color=f"C{k}")
        allr += list(sim * sla / (pred * sla))
    axes[0].plot([0, 1.1], [0, 1.1], color="0.5", lw=1, label="simulated = predicted")
    axes[0].axhline(1.0, color="red", ls="--", lw=1, label="SLA")
    axes[0].set_xlabel("planner-predicted p99 / SLA")
    axes[0].set_ylabel("simulated p99 / SLA (capped at 2)")
    axes[0].legend(fontsize=6)
    r = np.array(allr)
    axes[1].hist(np.minimum(r[np.isfinite(r)], 3.0), bins=24, color="C1")
    axes[1].axvline(1.0, color="0.3", lw=1)
    axes[1].set_xlabel("simulated / predicted p99")
    axes[1].set_ylabel("plans")
    fig.suptitle("planner calibration: ipa plans held at their planned rate (steady Poisson)", fontsize=10)
    return save_figure(fig, path)


def verdict_bars(data: dict, path: Path, pipe: str | None = None) -> Path | None:
    """What IPA's claims rest on, for one pipeline: per system, SLA violations, cost and accuracy (mean over the
    workloads), one dot per seed and the 95% CI over seeds as an error bar."""
    grid = _runs(data, "grid", pipe)
    systems = [s["name"] for s in data["experiment"]["systems"] if any(r["system"] == s["name"] for r in grid)]
    if len(systems) < 2:
        return None
    fig, axes = plt.subplots(1, len(VERDICT_METRICS), figsize=(4.2 * len(VERDICT_METRICS), 3.4), squeeze=False)
    x = np.arange(len(systems))
    for ax, (metric, label) in zip(axes[0], VERDICT_METRICS.items()):
        k = 100.0 if metric == "sla_violation_rate" else 1.0
        for i, s in enumerate(systems):
            vals = np.array(list(per_seed(grid, s, metric).values()), dtype=float) * k
            iv = t_interval(list(vals))
            err = iv.hi - iv.mean if np.isfinite(iv.hi) else 0.0
            ax.bar(i, iv.mean, color=f"C{i}", alpha=0.6, yerr=err, capsize=4)
            ax.plot(np.full(vals.size, i), vals, "k.", ms=4)
        ax.set_xticks(x, systems, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label + (" (%)" if k != 1 else ""))
    fig.suptitle(
        f"{pipe or data['experiment']['name']}: means over workloads, dots = seeds, bars = 95% CI", fontsize=10
    )
    fig.tight_layout()
    return save_figure(fig, path)


def all_figures(data: dict, out: Path) -> dict[str, Path]:
    """Every figure; with several pipelines, one grid/CDF/ablation/sweep figure per pipeline."""
    pipes = list(data.get("pipelines", {})) or [None]
    figs: dict[str, Path] = {}
    for pipe in pipes:
        sfx = f"-{pipe}" if pipe and len(pipes) > 1 else ""
        key = f" ({pipe})" if sfx else ""
        figs[f"grid{key}"] = fig8_grid(data, out / f"sim-grid{sfx}.png", pipe)
        figs[f"cdf{key}"] = latency_cdf(data, out / f"sim-latency-cdf{sfx}.png", pipe)
        p = verdict_bars(data, out / f"sim-verdict{sfx}.png", pipe)
        if p:
            figs[f"verdict{key}"] = p
        for name, fn in (("ablation", ablation), ("sweep", sweep)):
            p = fn(data, out / f"sim-{name}{sfx}.png", pipe)
            if p:
                figs[f"{name}{key}"] = p
    p = calibration(data, out / "sim-calibration.png")
    if p:
        figs["calibration"] = p
    return figs
