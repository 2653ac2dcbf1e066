"""Several pipelines sharing one core budget, simulated side by side: decided jointly (one MILP per decision,
pipetune.optimizer.joint) or separately (each pipeline planned alone within a fixed share).

Every `interval_s` each pipeline's simulator is observed, its load predicted (the same predictor for every
pipeline and both modes) and rounded up to `rps_quantum`; then
  joint     `plan_jointly` over all pipelines within the budget;
  separate  `plan_separately`, each within its share (default: equal shares).
A load with no plan (a pipeline's, separate; the decision's, joint) is served best effort in both modes: the plan
for the largest fraction of that load (bisection) that has one within the cores, so a plan never exceeds the
budget (cores held by make-before-break switches in flight are counted, as everywhere).
Each pipeline's budget frontier is computed once per (pipeline, planned rate) and the joint decision once per
tuple of planned rates, so a day of decisions costs a few hundred frontiers and MILPs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.adapter import resolve_predictor
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.metrics import per_interval, summarise
from pipetune.optimizer import Plan
from pipetune.optimizer.joint import JointPlan, budget_frontier, equal_shares, labels_for, plan_jointly

MODES = ("joint", "separate")
BEST_EFFORT_STEPS = 6  # halvings of the load fraction a decision with no plan serves instead (1/64 of the load)


@dataclass
class SharedBudgetRun:
    mode: str
    budget_cores: int
    shares: dict[str, int] | None
    summaries: dict[str, dict]  # per pipeline: pipetune.metrics.summarise
    intervals: dict[str, dict[str, list]]  # per pipeline: per_interval columns
    decisions: int = 0
    infeasible_decisions: int = 0  # a pipeline's (separate) or the decision's (joint) load had no plan
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
    q = rps_quantum
    fronts: dict[tuple[str, float], Any] = {}
    joint_cache: dict[tuple[float, ...], JointPlan] = {}

    def frontier(i: int, rps: float):
        key = (labels[i], rps)
        if key not in fronts:
            fronts[key] = budget_frontier(pipelines[i], rps, budget_cores, profiles[i])
        return fronts[key]

    def quantise(x: float) -> float:
        return math.ceil(x / q - 1e-9) * q if q else x

    def joint_at(rates: list[float]) -> JointPlan:
        key = tuple(rates)
        if key not in joint_cache:
            fr = {labels[i]: frontier(i, r) for i, r in enumerate(rates)}
            joint_cache[key] = plan_jointly(pipelines, rates, budget_cores, profiles, frontiers=fr)
        return joint_cache[key]

    def alone_at(i: int, rate: float) -> Plan | None:
        """The dearest frontier plan within pipeline i's share: its optimum there (None: the share has none)."""
        fit = [p for p in frontier(i, rate)[0] if p.cost_cores <= shares[i]]
        return fit[-1] if fit else None

    def largest(feasible: Callable[[float], Any]) -> Any:
        """The answer at the largest fraction f of the load (bisection, BEST_EFFORT_STEPS halvings) that has one."""
        lo, hi, best = 0.0, 1.0, None
        for _ in range(BEST_EFFORT_STEPS):
            mid = (lo + hi) / 2
            got = feasible(mid)
            if got is not None:
                lo, best = mid, got
            else:
                hi = mid
        return best

    def alone_scaled(i: int, rate: float, f: float) -> Plan | None:
        return alone_at(i, quantise(f * rate))

    def feasible_or_none(j: JointPlan) -> JointPlan | None:
        return j if j.feasible else None

    def decide(rates: list[float]) -> tuple[dict[str, dict[str, StageConfig] | None], bool]:
        """Per pipeline the configs to serve (None: keep what serves), and whether a load had no plan (then the
        plan for the largest share of that load that has one serves: as much as the cores allow)."""
        if mode == "joint":
            j = joint_at(rates)
            missed = not j.feasible
            if missed:
                j = largest(lambda f: feasible_or_none(joint_at([quantise(f * r) for r in rates])))
            if j is None:
                return dict.fromkeys(labels), True
            return {k: j.plans[k].configs for k in labels}, missed
        out: dict[str, dict[str, StageConfig] | None] = {}
        missed = False
        for i, r in enumerate(rates):
            plan = alone_at(i, r)
            if plan is None:
                missed = True
                plan = largest(functools.partial(alone_scaled, i, r))
            out[labels[i]] = None if plan is None else plan.configs
        return out, missed

    k0 = max(1, int(round(interval_s)))
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
        run.summaries[labels[i]] = summarise(res, horizon)
        iv = per_interval(res, interval_s, horizon)
        run.intervals[labels[i]] = {
            k: [None if not math.isfinite(float(x)) else float(x) for x in v] for k, v in iv.items()
        }
    return run
