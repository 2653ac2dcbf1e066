"""Several pipelines, one core budget: `plan_jointly()` decides all of them in one MILP.

Each pipeline keeps its own SLA, objective weights and load; only the budget (total cores, every replica of every
pipeline) is shared. The joint objective is the sum of the pipelines' own objectives.

The model. Per pipeline p, its *budget frontier*: for every share b in 0..budget, the best plan of p alone with
at most b cores (the exact single-pipeline optimizer with caps.max_total_cores = b, PAS included). It is found
by stepping down: the best plan under b costs c <= b and is also the best under every b' in [c, b] (a smaller
budget only removes plans, and this one stays), so the next share to ask about is c - 1; the frontier has as
many plans as distinct answers, not budget + 1. The joint MILP then has one binary column x[p,k] per frontier
plan k of pipeline p:

    maximise   sum obj[p,k] x[p,k]
    subject to sum_k x[p,k] = 1                 one plan per pipeline
               sum cost[p,k] x[p,k] <= budget   the shared cores

It is exact: in any joint plan, pipeline p's part costs some c_p, and the frontier plan under c_p is at least as
good and no dearer, so replacing each part by it keeps the budget and does not lower the sum. (A model over every
stage option of every pipeline at once would be as exact for linear accuracy methods, but the product accuracy
(PAS) of each pipeline is not linear; the frontier carries each pipeline's exact optimum into the joint model.)

`plan_separately()` is the baseline: each pipeline planned alone within a fixed share of the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.optimizer import Infeasible, Plan, plan_pipeline
from pipetune.profiles import PipelineProfiles, load_profiles
from pipetune.runtime_profile import RuntimeProfile


def with_budget(pipeline, cores: float | None):
    """The pipeline with caps.max_total_cores = min(its own cap, `cores`) (None: its own cap)."""
    own = pipeline.caps.max_total_cores
    cap = own if cores is None else (float(cores) if own is None else min(float(own), float(cores)))
    if cap == own:
        return pipeline
    return pipeline.model_copy(update={"caps": pipeline.caps.model_copy(update={"max_total_cores": cap})})


def budget_frontier(
    pipeline, rps: float, budget: int, profiles: PipelineProfiles | None = None, runtime: RuntimeProfile | None = None
) -> tuple[list[Plan], Infeasible | None]:
    """The plans of `pipeline` worth considering under any share of `budget` cores, cheapest first, and (when
    not even the whole budget has a plan) the planner's answer at the whole budget. `runtime`: as for
    `plan_pipeline` (the serving runtime's CPU on the host, counted in every plan)."""
    profiles = profiles or load_profiles(pipeline)
    plans: list[Plan] = []
    b = int(budget)
    first: Infeasible | None = None
    while b >= 1:
        r = plan_pipeline(with_budget(pipeline, b), rps, profiles=profiles, runtime=runtime)
        if not isinstance(r, Plan):
            if not plans:
                first = r
            break
        plans.append(r)
        b = int(r.cost_cores) - 1
    return plans[::-1], first


@dataclass
class JointPlan:
    """The joint decision: one Plan per pipeline (by label), or why there is none (`feasible` False, `reason`)."""

    budget_cores: int
    plans: dict[str, Plan]
    objective: float  # the sum of the pipelines' objectives
    cost_cores: int
    feasible: bool = True
    binding: str | None = None  # budget | <label>: a pipeline that has no plan even with the whole budget
    reason: str = ""
    columns: int = 0  # frontier plans in the joint MILP
    solve_time_s: float = 0.0
    shares: dict[str, int] = field(default_factory=dict)  # cores each pipeline got

    def to_dict(self) -> dict:
        return {
            "budget_cores": self.budget_cores,
            "feasible": self.feasible,
            "binding": self.binding,
            "reason": self.reason,
            "objective": self.objective,
            "cost_cores": self.cost_cores,
            "shares": self.shares,
            "columns": self.columns,
            "solve_time_s": self.solve_time_s,
            "pipelines": {k: p.to_dict() for k, p in self.plans.items()},
        }


def labels_for(pipelines: Sequence) -> list[str]:
    """One label per pipeline: its name, with a suffix where two share one."""
    out: list[str] = []
    for p in pipelines:
        name = p.name
        out.append(name if name not in out else f"{name}-{len(out)}")
    return out


def _check(pipelines: Sequence, rps: Sequence[float], budget: int) -> None:
    if not pipelines:
        raise PipetuneError("give at least one pipeline")
    if len(rps) != len(pipelines):
        raise PipetuneError(f"{len(rps)} rates for {len(pipelines)} pipelines: give one rate per pipeline, in order")
    for r in rps:
        if not (r >= 0 and math.isfinite(r)):
            raise PipetuneError(f"rps={r} must be a finite number >= 0")
    if not (isinstance(budget, (int, np.integer)) and budget >= 1):
        raise PipetuneError(f"budget_cores={budget!r} must be a whole number of cores >= 1")


def plan_jointly(
    pipelines: Sequence,
    rps: Sequence[float],
    budget_cores: int,
    profiles: Sequence[PipelineProfiles | None] | None = None,
    frontiers: Mapping[str, tuple[list[Plan], Infeasible | None]] | None = None,
    time_limit_s: float = 30.0,
    runtimes: Sequence[RuntimeProfile | None] | None = None,
) -> JointPlan:
    """The best plan of every pipeline at its rate, together within `budget_cores` (see the module).
    `frontiers`: precomputed `budget_frontier` answers by label (a simulation reuses them across decisions)."""
    _check(pipelines, rps, budget_cores)
    t0 = time.perf_counter()
    labels = labels_for(pipelines)
    profs = list(profiles) if profiles is not None else [None] * len(pipelines)
    rts = list(runtimes) if runtimes is not None else [None] * len(pipelines)
    front = {
        k: (frontiers[k] if frontiers and k in frontiers else budget_frontier(p, r, budget_cores, pr, rt))
        for k, p, r, pr, rt in zip(labels, pipelines, rps, profs, rts)
    }
    for k, (plans, why) in front.items():
        if not plans:
            reason = why.reason if why is not None else "no plan within the budget"
            return JointPlan(budget_cores, {}, math.nan, 0, False, k, f"pipeline {k!r}: {reason}")
    cheapest = sum(front[k][0][0].cost_cores for k in labels)
    if cheapest > budget_cores:
        mins = ", ".join(f"{k} {front[k][0][0].cost_cores}" for k in labels)
        return JointPlan(
            budget_cores, {}, math.nan, 0, False, "budget",
            f"the cheapest plans of all pipelines together need {cheapest} cores ({mins}); the budget is "
            f"{budget_cores}: raise it or lower a load",
        )  # fmt: skip
    choice = _solve(labels, front, budget_cores, time_limit_s)
    chosen = {k: front[k][0][i] for k, i in zip(labels, choice)}
    return JointPlan(
        budget_cores=int(budget_cores),
        plans=chosen,
        objective=float(sum(p.objective for p in chosen.values())),
        cost_cores=int(sum(p.cost_cores for p in chosen.values())),
        columns=sum(len(front[k][0]) for k in labels),
        solve_time_s=time.perf_counter() - t0,
        shares={k: int(p.cost_cores) for k, p in chosen.items()},
    )


def _solve(labels: list[str], front: Mapping, budget: int, time_limit_s: float) -> list[int]:
    """The joint MILP on HiGHS: one frontier plan per pipeline, the sum of objectives maximised."""
    from pipetune.errors import SolverError
    from pipetune.optimizer.milp import _Builder, _highs, _outcome, _pass_model

    m = _Builder()
    cols = []
    obj_all, cost_all = [], []
    for k in labels:
        plans = front[k][0]
        obj = np.array([p.objective for p in plans], float)
        cost = np.array([p.cost_cores for p in plans], float)
        # Minimise: -objective; shifted per pipeline by its best value, so the numbers HiGHS sees are small.
        c = m.add_cols(len(plans), -(obj - obj.max()), 0.0, 1.0, integer=True)
        m.add_row(c, np.ones(len(plans)), 1.0, 1.0)
        cols.append(c)
        obj_all.append(obj)
        cost_all.append(cost)
    m.add_row(np.concatenate(cols), np.concatenate(cost_all), -np.inf, float(budget))
    h = _highs(time_limit_s)
    _pass_model(h, m.lp(), "joint MILP")
    h.run()
    if _outcome(h, "joint MILP") != "optimal":
        raise SolverError(
            "the joint MILP found no plan although the cheapest plans fit the budget: a bug in pipetune's model, "
            "report it with the pipelines",
            status="kInfeasible",
            phase="joint MILP",
        )
    x = np.asarray(h.getSolution().col_value)
    return [int(np.argmax(x[c])) for c in cols]


def plan_separately(
    pipelines: Sequence,
    rps: Sequence[float],
    shares: Sequence[int],
    profiles: Sequence[PipelineProfiles | None] | None = None,
    frontiers: Mapping[str, tuple[list[Plan], Infeasible | None]] | None = None,
    runtimes: Sequence[RuntimeProfile | None] | None = None,
) -> dict[str, Plan | Infeasible]:
    """Each pipeline planned alone within its fixed share of cores (the baseline the joint plan is compared with).
    With `frontiers` (computed for a budget >= every share) the answer is read off them: the dearest frontier plan
    within the share is that share's optimum."""
    labels = labels_for(pipelines)
    profs = list(profiles) if profiles is not None else [None] * len(pipelines)
    rts = list(runtimes) if runtimes is not None else [None] * len(pipelines)
    out: dict[str, Plan | Infeasible] = {}
    for k, p, r, share, pr, rt in zip(labels, pipelines, rps, shares, profs, rts):
        if frontiers and k in frontiers:
            plans, why = frontiers[k]
            fit = [q for q in plans if q.cost_cores <= share]
            if fit:
                out[k] = fit[-1]
                continue
        out[k] = plan_pipeline(with_budget(p, share), r, profiles=pr, runtime=rt)
    return out


def equal_shares(budget: int, n: int) -> list[int]:
    """`budget` cores split as evenly as whole cores allow (the first pipelines get the remainder)."""
    base, extra = divmod(int(budget), int(n))
    return [base + (1 if i < extra else 0) for i in range(n)]


MODES = ("joint", "separate")
BEST_EFFORT_STEPS = 6  # halvings of the load fraction a decision with no plan serves instead (1/64 of the load)


class SharedBudgetPlanner:
    """Decisions for pipelines sharing `budget_cores`, one call per interval: `decide(rates)`.

      joint     `plan_jointly` over all pipelines within the budget;
      separate  each pipeline's optimum within its fixed share (default: equal shares).
    A load with no plan (a pipeline's, separate; the decision's, joint) is served best effort: the plan for the
    largest fraction of that load (bisection, BEST_EFFORT_STEPS halvings) that has one, so no plan exceeds the
    budget. Rates are rounded up to `rps_quantum`; each pipeline's budget frontier is computed once per rate and
    the joint MILP once per tuple of rates, so a long run costs a few hundred frontiers and MILPs."""

    def __init__(
        self,
        pipelines: Sequence,
        profiles: Sequence[PipelineProfiles],
        budget_cores: int,
        mode: str = "joint",
        shares: Sequence[int] | None = None,
        rps_quantum: float = 0.5,
        runtimes: Sequence[RuntimeProfile | None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise PipetuneError(f"mode={mode!r}: use one of {', '.join(MODES)}")
        if len(profiles) != len(pipelines):
            raise PipetuneError("give one profile table per pipeline")
        if not (rps_quantum >= 0 and math.isfinite(rps_quantum)):
            raise PipetuneError(f"rps_quantum={rps_quantum} must be a finite number >= 0 (0: no rounding)")
        self.pipelines, self.profiles = list(pipelines), list(profiles)
        self.runtimes = list(runtimes) if runtimes is not None else [None] * len(self.pipelines)
        self.budget, self.mode, self.quantum = int(budget_cores), mode, float(rps_quantum)
        self.labels = labels_for(self.pipelines)
        self.shares = list(shares) if shares is not None else equal_shares(budget_cores, len(self.pipelines))
        if len(self.shares) != len(self.pipelines) or sum(self.shares) > budget_cores:
            raise PipetuneError(
                f"shares {self.shares}: one per pipeline, summing to at most the budget ({budget_cores})"
            )
        self._fronts: dict[tuple[int, float], tuple[list[Plan], Infeasible | None]] = {}
        self._joint: dict[tuple[float, ...], JointPlan] = {}

    def quantise(self, x: float) -> float:
        q = self.quantum
        return math.ceil(x / q - 1e-9) * q if q else x

    def frontier(self, i: int, rps: float) -> tuple[list[Plan], Infeasible | None]:
        key = (i, rps)
        if key not in self._fronts:
            self._fronts[key] = budget_frontier(self.pipelines[i], rps, self.budget, self.profiles[i], self.runtimes[i])
        return self._fronts[key]

    def joint_at(self, rates: Sequence[float]) -> JointPlan:
        key = tuple(rates)
        if key not in self._joint:
            fr = {self.labels[i]: self.frontier(i, r) for i, r in enumerate(rates)}
            self._joint[key] = plan_jointly(
                self.pipelines, list(rates), self.budget, self.profiles, frontiers=fr, runtimes=self.runtimes
            )
        return self._joint[key]

    def alone_at(self, i: int, rate: float) -> Plan | None:
        """The dearest frontier plan within pipeline i's share: its optimum there (None: the share has none)."""
        fit = [p for p in self.frontier(i, rate)[0] if p.cost_cores <= self.shares[i]]
        return fit[-1] if fit else None

    @staticmethod
    def _largest(answer) -> Any:
        """The answer at the largest fraction f of the load (bisection) that has one, or None."""
        lo, hi, best = 0.0, 1.0, None
        for _ in range(BEST_EFFORT_STEPS):
            mid = (lo + hi) / 2
            got = answer(mid)
            if got is not None:
                lo, best = mid, got
            else:
                hi = mid
        return best

    def decide(self, rates: Sequence[float]) -> tuple[dict[str, dict[str, StageConfig] | None], bool]:
        """Per pipeline (by label) the configs to serve (None: keep what serves), and whether a load had no plan.
        `rates` are rounded up to the quantum first."""
        q = [self.quantise(max(0.0, float(r))) for r in rates]
        if self.mode == "joint":
            whole = self.joint_at(q)
            missed = not whole.feasible

            def scaled(f: float) -> JointPlan | None:
                got = self.joint_at([self.quantise(f * r) for r in q])
                return got if got.feasible else None

            j: JointPlan | None = self._largest(scaled) if missed else whole
            if j is None:
                return dict.fromkeys(self.labels), True
            return {k: j.plans[k].configs for k in self.labels}, missed
        out: dict[str, dict[str, StageConfig] | None] = {}
        missed = False
        for i, r in enumerate(q):
            plan = self.alone_at(i, r)
            if plan is None:
                missed = True
                plan = self._largest(lambda f, i=i, r=r: self.alone_at(i, self.quantise(f * r)))
            out[self.labels[i]] = None if plan is None else plan.configs
        return out, missed
