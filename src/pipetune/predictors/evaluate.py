"""Score predictors the way the adapter uses them: a decision every `interval` s, judged on the max of the
next `horizon` s.

For each window and each decision second t (t = warmup, warmup + interval, ... while t + horizon <= length)
the predictor sees counts[:t] and predicts p; the realised load is r = max(counts[t : t + horizon]).

* smape           mean of 2|p - r| / (|p| + |r|)
* under_rate      share of decisions with p < r (the adapter under-provisions: SLA violations follow)
* over_provision  mean of (p - r) / r over the decisions where it is positive (cores paid for, not used)
* mean_over       mean of max(p - r, 0) / r over all decisions (the same cost spread over every decision)
* predict_ms      median wall time of one predict() call

The predictor sees every decision of a window in order (it may keep online state) and is reset between
windows. The warmup defaults to 120 s, the lookback of IPA's features; earlier decisions would be taken by
any predictor's cold-start fallback, which is scored separately with warmup=interval if wanted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.predictors.base import HORIZON_S, INTERVAL_S, Predictor


@dataclass
class WindowResult:
    name: str
    times: np.ndarray  # decision seconds
    predicted: np.ndarray
    realised: np.ndarray


@dataclass
class Score:
    name: str
    smape: float
    under_rate: float
    over_provision: float
    mean_over: float
    predict_ms: float
    decisions: int
    windows: list[WindowResult] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "smape": round(self.smape, 4),
            "under_rate": round(self.under_rate, 4),
            "over_provision": round(self.over_provision, 4),
            "mean_over": round(self.mean_over, 4),
            "predict_ms": round(self.predict_ms, 4),
            "decisions": self.decisions,
        }


def metrics(predicted: np.ndarray, realised: np.ndarray) -> dict[str, float]:
    p = np.asarray(predicted, dtype=np.float64)
    r = np.asarray(realised, dtype=np.float64)
    denom = np.abs(p) + np.abs(r)
    smape = float(np.mean(np.where(denom > 0, 2 * np.abs(p - r) / np.where(denom > 0, denom, 1), 0.0)))
    rel = np.where(r > 0, (p - r) / np.where(r > 0, r, 1), np.where(p > 0, 1.0, 0.0))
    over = rel[rel > 0]
    return {
        "smape": smape,
        "under_rate": float(np.mean(p < r)),
        "over_provision": float(over.mean()) if over.size else 0.0,
        "mean_over": float(np.maximum(rel, 0).mean()),
    }


def run_window(
    predictor: Predictor,
    counts: np.ndarray,
    name: str = "window",
    interval: int = INTERVAL_S,
    horizon: int = HORIZON_S,
    warmup: int = 120,
    timings: list[float] | None = None,
) -> WindowResult:
    if interval < 1 or horizon < 1 or warmup < 1:
        raise PipetuneError("evaluation: interval, horizon and warmup must be >= 1 second")
    x = np.asarray(counts, dtype=np.float64)
    predictor.reset()
    times, preds, real = [], [], []
    # The predictor is called at every interval from the start (so online state sees what the adapter's
    # would), but only decisions from `warmup` on are scored.
    for t in range(interval, x.size - horizon + 1, interval):
        t0 = time.perf_counter()
        p = predictor.predict(x[:t])
        if timings is not None:
            timings.append(time.perf_counter() - t0)
        if t >= warmup:
            times.append(t)
            preds.append(p)
            real.append(x[t : t + horizon].max())
    if not times:
        raise PipetuneError(
            f"window {name!r} ({x.size} s) is too short to score: it needs more than warmup {warmup} + horizon {horizon} s"
        )
    return WindowResult(name, np.array(times), np.array(preds), np.array(real))


def evaluate(
    predictor: Predictor,
    windows: Mapping[str, np.ndarray],
    interval: int = INTERVAL_S,
    horizon: int = HORIZON_S,
    warmup: int = 120,
    name: str | None = None,
) -> Score:
    timings: list[float] = []
    results = [run_window(predictor, w, n, interval, horizon, warmup, timings) for n, w in windows.items()]
    p = np.concatenate([r.predicted for r in results])
    r = np.concatenate([r.realised for r in results])
    m = metrics(p, r)
    return Score(
        name=name or predictor.name,
        decisions=int(p.size),
        predict_ms=float(np.median(timings) * 1e3),
        windows=results,
        **m,
    )


def plot_scores(scores: list[Score], path: str | Path, title: str = "predicted vs realised load") -> Path:
    """One panel per window: the realised 20-s max and each scored predictor's prediction."""
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()

    names = [w.name for w in scores[0].windows]
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.6 * len(names)), sharex=False, squeeze=False)
    for ax, wname in zip(axes[:, 0], names):
        first = next(w for w in scores[0].windows if w.name == wname)
        ax.plot(
            first.times,
            first.realised,
            color="black",
            lw=1.6,
            drawstyle="steps-post",
            label="realised max of the next horizon",
        )
        for s in scores:
            w = next(w for w in s.windows if w.name == wname)
            m = metrics(w.predicted, w.realised)
            ax.plot(
                w.times,
                w.predicted,
                lw=1.1,
                drawstyle="steps-post",
                label=f"{s.name} (under {m['under_rate']:.0%}, over {m['over_provision']:.0%})",
            )
        ax.set_title(wname, fontsize=10)
        ax.set_ylabel("rps")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("decision time in window (s)")
    fig.suptitle(title)
    return save_figure(fig, path)
