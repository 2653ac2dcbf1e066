"""Several pipelines sharing one core budget, simulated side by side: decided jointly (one MILP per decision,
pipetune.optimizer.joint) or separately (each pipeline planned alone within a fixed share).

Every `interval_s` each pipeline's simulator is observed, its load predicted (the same predictor for every
pipeline and both modes) and rounded up to `rps_quantum`; then
  joint     `plan_jointly` over all pipelines within the budget;
  separate  `plan_separately`, each within its share (default: equal shares).
A pipeline (separate) or the whole decision (joint) with no plan keeps what serves: the budget is never
exceeded by a plan (cores held by make-before-break switches in flight are counted, as everywhere).
Each pipeline's budget frontier is computed once per (pipeline, planned rate) and the joint decision once per
tuple of planned rates, so a day of decisions costs a few hundred frontiers and MILPs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.adapter import resolve_predictor
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.metrics import per_interval, summarize
from pipetune.optimizer import Plan
from pipetune.optimizer.joint import budget_frontier, equal_shares, labels_for, plan_jointly, plan_separately

MODES = ("joint", "separate")


@dataclass
class SharedBudgetRun:
    mode: str
    budget_cores: int
    shares: dict[str, int] | None
    summaries: dict[str, dict]  # per pipeline: pipetune.metrics.summarize
    intervals: dict[str, dict[str, list]]  # per pipeline: per_interval columns
    decisions: int = 0
    infeasible_decisions: int = 0  # a pipeline (separate) or the decision (joint) kept what served
    planned_cores: list[int] = field(default_factory=list)  # cores of the plans in effect after each decision

    def total(self) -> dict[str, float]:
        """Over all pipelines: mean cores held (sum), SLA violation rate and PAS (request-weighted)."""
        req = {k: s["requests"] for k, s in self.summaries.items()}
        n = sum(req.values()) or 1
        return {
            "mean_cores": float(sum(s["mean_cores"] for s in self.summaries.values())),
            "sla_violation_rate": float(sum(s["sla_violation_rate"] * req[k] for k, s in self.summaries.items()) / n),
            "pas_mean": float(
                sum(
                    (s["pas_mean"] if math.isfinite(s["pas_mean"]) else 0.0) * req[k] for k, s in self.summaries.items()
                )
                / n
            ),
            "requests": float(n),
        }


def run_shared_budget(
    pipelines: Sequence,
    profiles: Sequence,
    counts: Sequence[np.ndarray],
    budget_cores: int,
    mode: str = "joint",
    shares: Sequence[int] | None = None,
    interval_s: float = 10.0,
    predictor: Any = "default",
    rps_quantum: float = 0.5,
    seed: int = 0,
    on_step: Callable[[float], None] | None = None,
) -> SharedBudgetRun:
    """Simulate `pipelines` (per-second `counts` each) sharing `budget_cores`, decided in `mode`."""
    from pipetune.workloads import arrival_times

    if mode not in MODES:
        raise PipetuneError(f"mode={mode!r}: use one of {', '.join(MODES)}")
    if not (len(pipelines) == len(profiles) == len(counts)):
        raise PipetuneError("give one profile table and one count series per pipeline")
    horizon = float(min(len(c) for c in counts))
    if horizon < 2 * interval_s:
        raise PipetuneError(f"the count series are {horizon:g} s long: give at least two intervals ({interval_s:g} s)")
    labels = labels_for(pipelines)
    shares = list(shares) if shares is not None else equal_shares(budget_cores, len(pipelines))
    if len(shares) != len(pipelines) or sum(shares) > budget_cores:
        raise PipetuneError(f"shares {shares}: one per pipeline, summing to at most the budget ({budget_cores})")
    fronts: dict[tuple[str, float], Any] = {}
    joint_cache: dict[tuple[float, ...], Any] = {}

    def frontier(i: int, rps: float):
        key = (labels[i], rps)
        if key not in fronts:
            fronts[key] = budget_frontier(pipelines[i], rps, budget_cores, profiles[i])
        return fronts[key]

    def decide(rates: list[float]) -> tuple[dict[str, dict[str, StageConfig] | None], bool]:
        """Per pipeline the configs to serve (None: keep what serves), and whether anything had no plan."""
        fr = {labels[i]: frontier(i, r) for i, r in enumerate(rates)}
        if mode == "joint":
            key = tuple(rates)
            if key not in joint_cache:
                joint_cache[key] = plan_jointly(pipelines, rates, budget_cores, profiles, frontiers=fr)
            j = joint_cache[key]
            if not j.feasible:
                return dict.fromkeys(labels), True
            return {k: j.plans[k].configs for k in labels}, False
        sep = plan_separately(pipelines, rates, shares, profiles, frontiers=fr)
        out = {k: (r.configs if isinstance(r, Plan) else None) for k, r in sep.items()}
        return out, any(v is None for v in out.values())

    k0 = max(1, int(round(interval_s)))
    q = rps_quantum

    def quantise(x: float) -> float:
        return math.ceil(x / q - 1e-9) * q if q else x

    first, _ = decide([quantise(float(np.max(c[:k0]))) for c in counts])
    if any(v is None for v in first.values()):  # start from the plans for no load (the run then adapts)
        first, _ = decide([0.0] * len(pipelines))
    if any(v is None for v in first.values()):
        raise PipetuneError(
            f"{mode}: no plan within {budget_cores} cores even at no load (shares {shares}); raise the budget"
        )
    sims = []
    for i, p in enumerate(pipelines):
        arr = arrival_times(np.asarray(counts[i][: int(horizon)], float), process="poisson", seed=seed + i)
        init = first[labels[i]]
        assert init is not None
        sims.append(Simulator(p, profiles[i], arr, init, SimSettings(seed=seed + i)))
    preds = [resolve_predictor(predictor) for _ in pipelines]
    for pr in preds:
        if hasattr(pr, "reset"):
            pr.reset()
    target = {labels[i]: dict(first[labels[i]] or {}) for i in range(len(pipelines))}
    run = SharedBudgetRun(mode, int(budget_cores), dict(zip(labels, shares)) if mode == "separate" else None, {}, {})
    t = interval_s
    while t < horizon - 1e-9:
        rates = []
        for sim, pr in zip(sims, preds):
            sim.wait_until(t)
            rates.append(quantise(max(0.0, float(pr.predict(sim.observe().arrivals_per_s)))))
        configs, missed = decide(rates)
        run.decisions += 1
        run.infeasible_decisions += int(missed)
        for i, sim in enumerate(sims):
            want = configs[labels[i]]
            if want is None:
                continue
            change = {s: c for s, c in want.items() if target[labels[i]].get(s) != c}
            if change:
                sim.apply(change)
                target[labels[i]].update(change)
        run.planned_cores.append(int(sum(c.total_cores for tg in target.values() for c in tg.values())))
        if on_step is not None:
            on_step(t)
        t += interval_s
    for i, sim in enumerate(sims):
        sim.wait_until(horizon)
        sim.close()
        res = sim.result(horizon_s=horizon)
        run.summaries[labels[i]] = summarize(res, horizon)
        iv = per_interval(res, interval_s, horizon)
        run.intervals[labels[i]] = {
            k: [None if not math.isfinite(float(x)) else float(x) for x in v] for k, v in iv.items()
        }
    return run
