"""Several pipelines sharing one core budget, simulated side by side: one simulator per pipeline, driven by the
JointAdapter (pipetune.adapter) with a SharedBudgetPlanner (pipetune.optimizer.joint) deciding jointly (one MILP
per decision) or separately (each pipeline alone within a fixed share). Every `interval_s` each pipeline's load
is predicted (the same predictor for every pipeline and both modes) and rounded up to `rps_quantum`; a load with
no plan within the cores is served best effort in both modes (the plan for the largest fraction of it that has
one), so no plan exceeds the budget (cores held by make-before-break switches in flight are counted, as
everywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.adapter import JointAdapter
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.errors import PipetuneError
from pipetune.metrics import per_interval, summarise
from pipetune.optimizer.joint import MODES, SharedBudgetPlanner

__all__ = ["MODES", "SharedBudgetRun", "run_shared_budget"]


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
    """Simulate `pipelines` (per-second `counts` each) sharing `budget_cores`, decided in `mode` by the
    JointAdapter (pipetune.adapter) over one simulator per pipeline."""
    from pipetune.workloads import arrival_times

    if len(counts) != len(pipelines):
        raise PipetuneError("give one count series per pipeline")
    planner = SharedBudgetPlanner(pipelines, profiles, budget_cores, mode, shares, rps_quantum)
    horizon = float(min(len(c) for c in counts))
    if horizon < 2 * interval_s:
        raise PipetuneError(f"the count series are {horizon:g} s long: give at least two intervals ({interval_s:g} s)")
    labels = planner.labels
    k0 = max(1, int(round(interval_s)))
    first, _ = planner.decide([float(np.max(c[:k0])) for c in counts])
    if any(v is None for v in first.values()):  # start from the plans for no load (the run then adapts)
        first, _ = planner.decide([0.0] * len(pipelines))
    if any(v is None for v in first.values()):
        raise PipetuneError(
            f"{mode}: no plan within {budget_cores} cores even at no load (shares {planner.shares}); raise the budget"
        )
    sims = []
    for i, p in enumerate(pipelines):
        arr = arrival_times(np.asarray(counts[i][: int(horizon)], float), process="poisson", seed=seed + i)
        init = first[labels[i]]
        assert init is not None
        sims.append(Simulator(p, profiles[i], arr, init, SimSettings(seed=seed + i)))
    loop = JointAdapter(list(sims), planner, predictor=predictor, interval_s=interval_s)
    loop.run(horizon, on_step=on_step)
    run = SharedBudgetRun(
        mode, int(budget_cores), dict(zip(labels, planner.shares)) if mode == "separate" else None, {}, {}
    )
    run.decisions, run.infeasible_decisions, run.planned_cores = loop.decisions, loop.missed, loop.planned_cores
    for i, sim in enumerate(sims):
        sim.close()
        res = sim.result(horizon_s=horizon)
        run.summaries[labels[i]] = summarise(res, horizon)
        iv = per_interval(res, interval_s, horizon)
        run.intervals[labels[i]] = {
            k: [None if not math.isfinite(float(x)) else float(x) for x in v] for k, v in iv.items()
        }
    return run
