"""The adapter loop: every `interval_s` seconds observe -> predict -> plan -> prefer the least change -> apply.

It drives any `pipetune.backends.Backend` (the simulator or the live runtime) and knows nothing else about it.
Each decision is one JSON line (see `Decision` below for the fields) written to `log` when one is given.

Predictors come from `pipetune.predictors.make_predictor(name)`, plus `oracle` (here): it is handed the true
future per-second counts and returns the maximum over the next `horizon` seconds, which is what a perfect
forecaster of IPA's target would say. The oracle exists to separate planner error from predictor error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipetune import jsonio
from pipetune.backends.base import Backend
from pipetune.configs import ApplyState, StageConfig
from pipetune.errors import PipetuneError

HORIZON_S = 20
INTERVAL_S = 10.0
MAX_RETRIES = 3  # re-applies of a stage whose request the backend refused, before planning from what serves


class OraclePredictor:
    """Knows the future: predict(history) is the max count over seconds [len(history), len(history)+horizon)."""

    name = "oracle"

    def __init__(self, future_counts: np.ndarray, horizon: int = HORIZON_S, stat: str = "max"):
        if stat not in ("max", "mean"):
            raise PipetuneError(f"oracle stat={stat!r}; use max or mean")
        self.counts = np.asarray(future_counts, dtype=float)
        self.horizon = int(horizon)
        self.stat = stat

    def fit(self, series: np.ndarray) -> OraclePredictor:
        return self

    def reset(self) -> None:
        pass

    def predict(self, history: np.ndarray) -> float:
        t = len(history)
        window = self.counts[t : t + self.horizon]
        if window.size == 0:
            window = self.counts[-self.horizon :]
        if window.size == 0:
            return 0.0
        return float(window.max() if self.stat == "max" else window.mean())


def resolve_predictor(spec: Any, future_counts: np.ndarray | None = None, horizon: int = HORIZON_S):
    """A predictor object from a name ('oracle', or any name `pipetune.predictors.make_predictor` knows),
    a dict {name: ..., params...}, or an object with `.predict(history)`."""
    if hasattr(spec, "predict"):
        return spec
    params: dict = {}
    if isinstance(spec, dict):
        params = {k: v for k, v in spec.items() if k != "name"}
        spec = spec.get("name")
    if not isinstance(spec, str):
        raise PipetuneError(f"predictor {spec!r}: give a name such as oracle, reactive or lstm")
    if spec == "oracle":
        if future_counts is None:
            raise PipetuneError("predictor 'oracle' needs the true future counts (future_counts=...)")
        return OraclePredictor(future_counts, horizon=params.get("horizon", horizon), stat=params.get("stat", "max"))
    try:
        from pipetune.predictors import make_predictor
    except ImportError as e:  # pragma: no cover - the predictors package is part of the product
        raise PipetuneError(f"predictor {spec!r} needs pipetune.predictors.make_predictor: {e}") from None
    return make_predictor(spec, **params)


@dataclass
class Decision:
    t: float
    observed_rps: float  # mean arrivals/s over the last interval
    observed_peak_rps: float  # max per-second count over the last interval
    predicted_rps: float
    planned_rps: float  # the rate planned for: the prediction, rounded up to `rps_quantum` when set
    policy: str
    feasible: bool
    binding: str | None
    configs: dict[str, dict]
    objective: float
    objective_terms: dict[str, float]
    pas: float
    cost_cores: int
    predicted_p99_s: float  # the planner's end-to-end SLA-percentile latency at predicted_rps
    solve_time_s: float
    applied: bool
    changed_stages: list[str]
    in_effect: dict[str, dict]
    violations_last_interval: int
    requests_last_interval: int
    # What the backend answered (per stage changed or retried: state and reason), and what went wrong.
    apply_status: dict[str, dict] = field(default_factory=dict)
    pending_stages: list[str] = field(default_factory=list)  # asked for earlier, not serving yet
    retried_stages: list[str] = field(default_factory=list)  # re-applied because the last request failed
    abandoned_stages: list[str] = field(default_factory=list)  # failed MAX_RETRIES times: planning from what serves
    overrun: bool = False  # the decision took longer than the interval: nothing applied
    error: str | None = None  # the planner failed: nothing applied
    # The rate (requests/s) the chosen configuration holds, stages and host together (with a runtime profile;
    # else null): admission's limit follows it. The host CPU it keeps busy at planned_rps and the most it may.
    capacity_rps: float | None = None
    host_cpu_cores: float | None = None
    host_cpu_budget_cores: float | None = None
    refusing: bool = False  # infeasible even at the cheapest variants: admission refuses what capacity_rps cannot hold
    note: str = ""  # in words, when the plan is not simply feasible: what could not hold and what happens instead

    def to_json(self) -> str:
        """One strict JSON line: a non-finite number (an infeasible plan's latency, say) is written as null."""
        return jsonio.dumps(self.__dict__)


def _opt(plan, name: str) -> float | None:
    v = getattr(plan, name, None) if plan is not None else None
    return None if v is None else float(v)


def _note(result, planned: float, overrun: bool) -> str:
    """The decision in words when the plan is not simply feasible: infeasible even with the cheapest variants
    (refusing is the last resort), or feasible only by trading accuracy for the host's CPU."""
    if result is None or overrun:
        return ""
    if not result.feasible:
        fb = result.fallback
        cap = getattr(fb, "capacity_rps", None)
        holds = (
            f"; it holds about {cap:.3g} rps, so admission refuses what arrives beyond that (the last resort)"
            if cap is not None and math.isfinite(cap)
            else "; admission refuses what it cannot hold (the last resort)"
        )
        return (
            f"no configuration holds {planned:.3g} rps within every limit ({result.binding}): {result.reason}. "
            f"Serving the best-effort fallback{holds}"
        )
    used, budget = getattr(result, "host_cpu_cores", None), getattr(result, "host_cpu_budget_cores", None)
    if used is not None and budget is not None and budget > 0 and used >= 0.95 * budget:
        return (
            f"the host's CPU binds at {planned:.3g} rps: this plan keeps {used:.3g} of the {budget:.3g} cores a "
            "plan may use busy; more load means cheaper variants before any request is refused"
        )
    return ""


class Adapter:
    """observe -> predict -> plan -> apply, every `interval_s` seconds of the backend's clock."""

    def __init__(
        self,
        backend: Backend,
        pipeline,
        policy: str = "ipa",
        predictor: Any = "reactive",
        interval_s: float = INTERVAL_S,
        profiles=None,
        policy_params: dict | None = None,
        log: str | Path | IO[str] | None = None,
        future_counts: np.ndarray | None = None,
        planner: Callable | None = None,
        rps_quantum: float = 0.0,
        runtime=None,
        target: dict[str, StageConfig] | None = None,
    ):
        """`target`: what was asked of the backend before this adapter started (a resumed adapter's: the
        configuration the backend is converging to); None: what serves."""
        if not interval_s > 0:
            raise PipetuneError(f"interval_s={interval_s} must be > 0 seconds (IPA uses 10)")
        self.backend = backend
        self.pipeline = pipeline
        self.policy = policy
        self.predictor = resolve_predictor(predictor, future_counts)
        self.interval_s = float(interval_s)
        self.profiles = profiles
        self.policy_params = dict(policy_params or {})
        self.runtime = runtime  # a RuntimeProfile: the planner counts the runtime's host CPU (None: not counted)
        if not rps_quantum >= 0:
            raise PipetuneError(f"rps_quantum={rps_quantum} must be >= 0 (0: plan for the predicted rate as is)")
        self.rps_quantum = float(rps_quantum)
        self.decisions: list[Decision] = []
        self.plans: list = []  # the Plan/Infeasible objects, for calibration
        self._own_log = False
        if isinstance(log, (str, Path)):
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            self._log: IO[str] | None = open(log, "w")  # noqa: SIM115 - closed in close()
            self._own_log = True
        else:
            self._log = log
        if planner is None:
            from pipetune.optimizer import plan_pipeline

            planner = plan_pipeline
        self._plan = planner
        self._target: dict[str, StageConfig] | None = dict(target) if target else None
        self._retries: dict[str, int] = {}

    def plan(self, rps: float, current: dict[str, StageConfig] | None):
        extra = {} if self.runtime is None else {"runtime": self.runtime}
        return self._plan(
            self.pipeline,
            rps,
            policy=self.policy,
            current=current,
            profiles=self.profiles,
            **extra,
            **self.policy_params,
        )

    def step(self) -> Decision:
        """One decision at the backend's current time.

        The adapter keeps a target (what it last asked for). Before planning it asks the backend where each
        stage's request stands: a FAILED request is re-applied up to MAX_RETRIES times, then abandoned (the
        target falls back to what serves). Nothing is applied when the planner fails or overruns the interval:
        the last good configuration keeps serving and the decision says why.
        """
        be = self.backend
        obs = be.observe()
        status = be.stage_status()
        hist = obs.arrivals_per_s
        k = max(1, int(round(self.interval_s)))
        recent = hist[-k:] if hist.size else np.zeros(1)
        pred = float(self.predictor.predict(hist))
        if not np.isfinite(pred) or pred < 0:
            raise PipetuneError(
                f"predictor {getattr(self.predictor, 'name', self.predictor)!r} returned {pred}; "
                "a prediction must be a finite rate >= 0"
            )
        target = dict(self._target or obs.in_effect)
        retry, abandoned = [], []
        for s, st in status.items():
            if st.state is ApplyState.FAILED and target.get(s) == st.target:
                self._retries[s] = self._retries.get(s, 0) + 1
                if self._retries[s] > MAX_RETRIES:
                    abandoned.append(s)
                    target[s] = obs.in_effect[s]
                    self._retries.pop(s)
                else:
                    retry.append(s)
            elif st.state is not ApplyState.FAILED:
                self._retries.pop(s, None)
        pending = sorted(s for s, st in status.items() if st.state is ApplyState.PENDING)
        # Planning for the prediction rounded UP to a grid trades a little capacity for fewer distinct
        # questions (plans are memoised by rate) and fewer flip-flops between near-equal plans.
        planned = math.ceil(pred / self.rps_quantum - 1e-9) * self.rps_quantum if self.rps_quantum else pred
        t0 = time.perf_counter()
        error = None
        try:
            result = self.plan(planned, target)
        except PipetuneError as e:  # a solver error, say: keep what serves, say why
            result, error = None, f"{type(e).__name__}: {e}"
        solve = time.perf_counter() - t0
        overrun = error is None and solve > self.interval_s
        configs = target if result is None or overrun else result.configs
        changed = [s for s, c in configs.items() if target.get(s) != c]
        retried = sorted(s for s in retry if configs.get(s) == target.get(s))  # same request again
        to_apply = sorted(set(changed) | set(retried))
        apply_status: dict[str, dict] = {}
        if to_apply:
            answer = be.apply({s: configs[s] for s in to_apply})
            apply_status = {s: {"state": st.state.value, "reason": st.reason} for s, st in answer.items()}
        self._target = {**target, **configs}
        plan = None if result is None else (result if result.feasible else result.fallback)
        nan = float("nan")
        d = Decision(
            t=obs.now,
            observed_rps=float(recent.mean()),
            observed_peak_rps=float(recent.max()),
            predicted_rps=pred,
            planned_rps=planned,
            policy=self.policy,
            feasible=bool(result is not None and result.feasible),
            binding=None if result is None or result.feasible else result.binding,
            configs={s: c.to_dict() for s, c in configs.items()},
            objective=float(plan.objective) if plan else nan,
            objective_terms={k2: float(v) for k2, v in plan.objective_terms.items()} if plan else {},
            pas=float(plan.pas) if plan else nan,
            cost_cores=int(plan.cost_cores) if plan else sum(c.total_cores for c in configs.values()),
            predicted_p99_s=float(plan.latency_e2e_slo_s) if plan else nan,
            solve_time_s=float(getattr(result, "solve_time_s", solve) or solve),
            applied=bool(to_apply),
            changed_stages=changed,
            in_effect={s: c.to_dict() for s, c in obs.in_effect.items()},
            violations_last_interval=int(obs.sla_violations),
            requests_last_interval=int(obs.answered),
            apply_status=apply_status,
            pending_stages=pending,
            retried_stages=retried,
            abandoned_stages=sorted(abandoned),
            overrun=overrun,
            error=error,
            capacity_rps=_opt(plan, "capacity_rps"),
            host_cpu_cores=_opt(plan, "host_cpu_cores"),
            host_cpu_budget_cores=_opt(plan, "host_cpu_budget_cores"),
            refusing=bool(result is not None and not result.feasible and not overrun),
            note=_note(result, planned, overrun),
        )
        self.decisions.append(d)
        self.plans.append(result)
        if self._log is not None:
            self._log.write(d.to_json() + "\n")
            self._log.flush()
        return d

    def run(self, until_s: float, on_step: Callable[[Decision], None] | None = None) -> list[Decision]:
        """Decide every interval from the backend's now (after the first interval) until `until_s`."""
        be = self.backend
        t = be.now() + self.interval_s
        while t < until_s - 1e-9:
            be.wait_until(t)
            d = self.step()
            if on_step:
                on_step(d)
            t += self.interval_s
        be.wait_until(until_s)
        return self.decisions

    def close(self) -> None:
        if self._own_log and self._log is not None:
            self._log.close()
            self._log = None


class JointAdapter:
    """The loop for several pipelines sharing one core budget, each on its own backend: every `interval_s`
    observe every backend -> predict each load -> one shared-budget decision for all
    (`pipetune.optimizer.joint.SharedBudgetPlanner`: one MILP, or each alone on a fixed share) -> apply what
    changed. A pipeline whose decision is None keeps what serves. The backends' clocks move together."""

    def __init__(self, backends: list[Backend], planner, predictor: Any = "default", interval_s: float = INTERVAL_S):
        if not interval_s > 0:
            raise PipetuneError(f"interval_s={interval_s} must be > 0 seconds (IPA uses 10)")
        if len(backends) != len(planner.labels):
            raise PipetuneError(f"{len(backends)} backends for {len(planner.labels)} pipelines: give one each")
        self.backends = list(backends)
        self.planner = planner
        self.interval_s = float(interval_s)
        self.predictors = [resolve_predictor(predictor) for _ in backends]
        for p in self.predictors:
            if hasattr(p, "reset"):
                p.reset()
        self.target = {k: dict(be.in_effect()) for k, be in zip(planner.labels, backends)}
        self.decisions = 0
        self.missed = 0  # decisions where a load had no plan within the cores (served best effort)
        self.planned_cores: list[int] = []  # cores of the configurations asked for, after each decision

    def step(self) -> None:
        rates = []
        for be, pr in zip(self.backends, self.predictors):
            pred = float(pr.predict(be.observe().arrivals_per_s))
            if not math.isfinite(pred) or pred < 0:
                raise PipetuneError(f"predictor returned {pred}; a prediction must be a finite rate >= 0")
            rates.append(pred)
        configs, missed = self.planner.decide(rates)
        self.decisions += 1
        self.missed += int(missed)
        for k, be in zip(self.planner.labels, self.backends):
            want = configs[k]
            if want is None:
                continue
            change = {s: c for s, c in want.items() if self.target[k].get(s) != c}
            if change:
                be.apply(change)
                self.target[k].update(change)
        self.planned_cores.append(int(sum(c.total_cores for tg in self.target.values() for c in tg.values())))

    def run(self, until_s: float, on_step: Callable[[float], None] | None = None) -> None:
        """Decide every interval from the first backend's now (after the first interval) until `until_s`."""
        t = self.backends[0].now() + self.interval_s
        while t < until_s - 1e-9:
            for be in self.backends:
                be.wait_until(t)
            self.step()
            if on_step:
                on_step(t)
            t += self.interval_s
        for be in self.backends:
            be.wait_until(until_s)
