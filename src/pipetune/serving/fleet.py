"""Several pipelines served side by side on one Ray Serve, under one core budget, decided by one joint loop.

Each pipeline is served as it would be alone (`RayServeBackend`: its own stage applications, its own ingress,
make-before-break switches, its own V2 model name, admission and metrics) and on its own port: with the direct
front each pipeline's ingress replica serves HTTP itself, so one port is one ingress (a shared port would put a
process in front of them again, the hop the direct front removes). Pipeline i listens on `port + i`.

What they share:
- Ray Serve's config. `deploy_apps` takes the whole config and deletes every application it does not name, so the
  pipelines cannot each deploy their own: `SharedDeployer` keeps each pipeline's applications as last sent and
  deploys the union whenever one of them changes (`merged_config`, pure). Closing one pipeline deploys the union
  without it; closing the last shuts Ray Serve down.
- The core budget. The decision is `optimizer.joint.SharedBudgetPlanner`'s (one MILP over the pipelines' budget
  frontiers, each keeping its own SLA, objective and load), its loop `adapter.JointAdapter` over the pipelines'
  backends; `run_joint_adapter` adds what a live loop needs around it (a log line per
  decision, the prediction on each pipeline's metrics, a refused request planned again from what serves).

The budget a plan may use (`plan_budget`): Ray's CPUs less one ingress per pipeline, less the switch reserve
(`session.SWITCH_RESERVE`, as for one pipeline), or a smaller `--budget-cores`; never below what the pipelines'
cheapest plans need together (`start_configs` says which and how much).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipetune import jsonio
from pipetune.adapter import JointAdapter
from pipetune.backends.base import Observation
from pipetune.configs import ApplyState, StageConfig, StageStatus
from pipetune.optimizer.joint import SharedBudgetPlanner, budget_frontier
from pipetune.serving import ray_api
from pipetune.serving.backend import RayServeBackend
from pipetune.serving.config import INGRESS_CPUS, ServingError

NEED_PROBE_CORES = 4096  # the budget a pipeline's need at no load is found within, when the fleet's is too small

__all__ = [
    "Fleet",
    "FleetDecision",
    "SharedDeployer",
    "check_names",
    "merged_config",
    "plan_budget",
    "run_joint_adapter",
    "start_configs",
]


# ---- one Serve config for several pipelines (pure) ---------------------------------------------------------------
def merged_config(parts: Mapping[str, Mapping[str, Any]]) -> dict:
    """The Serve config holding every pipeline's applications (`parts`: pipeline name -> its own config).

    Every part must have the direct front (Ray Serve's proxy disabled: each ingress serves its own port); an
    ingress's `route_prefix` is then unused, and set to None, since Serve's schema refuses two applications on
    one prefix. An application name in two parts is refused (it would be one application)."""
    if not parts:
        raise ServingError("no pipeline to deploy")
    apps: list[dict] = []
    owner: dict[str, str] = {}
    for name, config in parts.items():
        if config.get("proxy_location") != "Disabled":
            raise ServingError(
                f"pipeline {name!r} is served through Ray Serve's proxy; several pipelines on one Ray Serve need the "
                "direct front (each ingress on its own port): serve them with front='direct'"
            )
        for app in config["applications"]:
            if app["name"] in owner:
                raise ServingError(
                    f"Serve application {app['name']!r} belongs to pipelines {owner[app['name']]!r} and {name!r}: "
                    "give the pipelines names that do not clash"
                )
            owner[app["name"]] = name
            apps.append({**app, "route_prefix": None} if app.get("route_prefix") is not None else dict(app))
    first = next(iter(parts.values()))
    return {"proxy_location": "Disabled", "http_options": dict(first["http_options"]), "applications": apps}


class SharedDeployer:
    """Deploys several pipelines' configs as one (`merged_config`), one deploy at a time; `part(name)` is what a
    pipeline's backend is given as its deployer. `deploy` is the controller call (default: `ServeDeployer`'s,
    made on first use, once Ray Serve runs)."""

    def __init__(self, deploy: Callable[[dict], None] | None = None, shutdown: Callable[[], None] | None = None):
        self._deploy_fn = deploy
        self._shutdown_fn = shutdown if shutdown is not None else ray_api.shutdown_serve
        self._lock = threading.Lock()  # the parts and the deploy of their union, in one order
        self._parts: dict[str, dict] = {}

    def part(self, name: str) -> _PartDeployer:
        return _PartDeployer(self, name)

    @property
    def pipelines(self) -> list[str]:
        with self._lock:
            return list(self._parts)

    def _send(self, config: dict) -> None:
        if self._deploy_fn is None:
            self._deploy_fn = ray_api.ServeDeployer().deploy
        self._deploy_fn(config)

    def deploy(self, name: str, config: dict) -> None:
        with self._lock:
            parts = {**self._parts, name: config}
            merged = merged_config(parts)  # refused before anything is sent
            self._send(merged)
            self._parts = parts

    def remove(self, name: str) -> None:
        """Take pipeline `name` down: the union without it (its applications drain and go), or, when it was the
        last, Ray Serve itself."""
        with self._lock:
            self._parts.pop(name, None)
            if self._parts:
                self._send(merged_config(self._parts))
            else:
                self._shutdown_fn()


@dataclass(frozen=True)
class _PartDeployer:
    """One pipeline's view of a SharedDeployer: the `deploy(config)` / `shutdown()` a RayServeBackend calls."""

    shared: SharedDeployer
    name: str

    def deploy(self, config: dict) -> None:
        self.shared.deploy(self.name, config)

    def shutdown(self) -> None:
        self.shared.remove(self.name)


# ---- what is checked before any Ray starts (pure but for the planner's MILPs) -----------------------------------
def check_names(pipelines: Sequence[Any], files: Sequence[Any] | None = None) -> None:
    """Every pipeline a distinct name: each is served as its own V2 model and its own Serve applications."""
    seen: dict[str, int] = {}
    for i, p in enumerate(pipelines):
        if p.name in seen:
            j = seen[p.name]
            where = f"{files[j]} and {files[i]}" if files is not None else f"pipelines {j + 1} and {i + 1}"
            raise ServingError(
                f"{where} are both named {p.name!r} (their `name:` field): each pipeline is served as its own V2 "
                "model, so give each a distinct name"
            )
        seen[p.name] = i


def plan_budget(
    cluster_cpus: float,
    pipelines: int,
    switch_reserve: float,
    budget_cores: int | None = None,
    ingress_cpus: float = INGRESS_CPUS,
) -> int:
    """The cores the pipelines' plans may use together: Ray's CPUs less one ingress each, less the switch reserve
    (room for make-before-break), or `budget_cores` when given, which must fit in that."""
    if not 0 <= switch_reserve < 1:
        raise ServingError(f"switch reserve {switch_reserve} must be in [0, 1)")
    replica_cpus = cluster_cpus - pipelines * ingress_cpus
    most = math.floor(max(0.0, replica_cpus) * (1 - switch_reserve))
    if most < 1:
        raise ServingError(
            f"Ray has {cluster_cpus:g} CPUs; {pipelines} ingresses take {pipelines * ingress_cpus:g} and leave "
            f"{most} for replicas after the switch reserve: give Ray more CPUs (--num-cpus declares logical CPUs)"
        )
    if budget_cores is None:
        return most
    if budget_cores > most:
        raise ServingError(
            f"--budget-cores {budget_cores} is more than this Ray can hold: of its {cluster_cpus:g} CPUs, "
            f"{pipelines} ingresses take {pipelines * ingress_cpus:g} and the switch reserve "
            f"({switch_reserve:.0%} of the rest) is kept free, which leaves {most}: give --budget-cores {most} or "
            "less, or Ray more CPUs (--num-cpus), or a smaller --switch-reserve"
        )
    return int(budget_cores)


def start_configs(
    planner: SharedBudgetPlanner, rates: Sequence[float], budget_from: str | None = None
) -> tuple[dict[str, dict[str, StageConfig]], bool]:
    """The configurations to start with (per pipeline name) and whether a load had no plan (best effort then).
    A budget below what the pipelines' cheapest plans need together is refused, naming how much they need.
    `budget_from`: where the budget came from when not from --budget-cores (`plan_budget`'s reading of Ray)."""
    need: dict[str, int] = {}
    for i, k in enumerate(planner.labels):
        plans, why = planner.frontier(i, 0.0)
        if not plans:  # not within the budget: how much the pipeline needs at no load, whatever the budget
            plans, why = budget_frontier(planner.pipelines[i], 0.0, NEED_PROBE_CORES, planner.profiles[i])
        if not plans:
            reason = why.reason if why is not None else "no plan"
            raise ServingError(f"pipeline {k!r} has no plan at any budget, even at no load: {reason}")
        need[k] = int(plans[0].cost_cores)
    total = sum(need.values())
    if total > planner.budget:
        each = ", ".join(f"{k} {c}" for k, c in need.items())
        what = (
            f"--budget-cores {planner.budget}" if budget_from is None else f"the {planner.budget} cores {budget_from}"
        )
        fix = (
            f"give --budget-cores {total} or more"
            if budget_from is None
            else "give Ray more CPUs (--num-cpus declares logical CPUs) or a smaller --switch-reserve"
        )
        raise ServingError(
            f"{what} is below what the pipelines need: their cheapest plans need {total} cores together ({each}); {fix}"
        )
    configs, missed = planner.decide(list(rates))
    out = {}
    for k, c in configs.items():
        if c is None:  # pragma: no cover - the cheapest plans fit, so some fraction of the load has a plan
            raise ServingError(f"pipeline {k!r}: no plan within --budget-cores {planner.budget}; raise it")
        out[k] = c
    return out, missed


# ---- serving them -----------------------------------------------------------------------------------------------
class Fleet:
    """Serve `pipelines` side by side on the Ray this process is connected to (pipeline i on `port + i`), each
    from its configuration in `initial` (by pipeline name). `backend_kw`: RayServeBackend's other options, the
    same for all. Started one after the other; if one cannot start, those started are taken down."""

    def __init__(
        self,
        pipelines: Sequence[Any],
        initial: Mapping[str, dict[str, StageConfig]],
        profiles: Sequence[Any],
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        deployer: SharedDeployer | None = None,
        **backend_kw: Any,
    ):
        check_names(pipelines)
        if backend_kw.get("front", "direct") != "direct":
            raise ServingError("several pipelines are served with the direct front (each ingress on its own port)")
        self.pipelines = list(pipelines)
        self.deployer = deployer if deployer is not None else SharedDeployer()
        self.backends: list[RayServeBackend] = []
        try:
            for i, (p, prof) in enumerate(zip(self.pipelines, profiles)):
                be = RayServeBackend(
                    p, initial[p.name], prof, host=host, port=port + i, deployer=self.deployer.part(p.name),
                    **backend_kw,
                )  # fmt: skip
                self.backends.append(be)
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pipelines]

    def backend(self, name: str) -> RayServeBackend:
        for be in self.backends:
            if be.name == name:
                return be
        raise KeyError(name)

    def cores_held(self) -> float:
        return sum(be.cores_held() for be in self.backends)

    def close(self) -> None:
        """Take every pipeline down, the last started first (the last close shuts Ray Serve down)."""
        while self.backends:
            self.backends.pop().close()


# ---- the joint loop, live ---------------------------------------------------------------------------------------
@dataclass
class FleetDecision:
    """One joint decision, per pipeline by name: what arrived, what was predicted, what was asked for."""

    t: float
    observed_rps: dict[str, float]  # mean arrivals/s over the last interval
    predicted_rps: dict[str, float]
    changed_stages: dict[str, list[str]]  # stages whose configuration was applied at this decision
    replanned_stages: dict[str, list[str]]  # stages whose last request failed: planned again from what serves
    configs: dict[str, dict[str, dict]]  # what each pipeline is asked to run after this decision
    planned_cores: int  # every replica core of every pipeline's configuration
    budget_cores: int
    missed: bool  # a load had no plan within the budget: served best effort
    solve_time_s: float
    violations_last_interval: dict[str, int] = field(default_factory=dict)
    requests_last_interval: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return jsonio.dumps(self.__dict__)


class _Watched:
    """A backend as the joint loop sees it: the last observation kept for the decision's record, and time told
    by `clock`, one backend's for all (each backend's clock starts when it serves, one after the other, and the
    loop waits on every backend's clock in turn: on their own clocks it would lag by the start-up gap)."""

    def __init__(self, backend: RayServeBackend, clock: RayServeBackend):
        self.backend = backend
        self.clock = clock
        self.last: Observation | None = None

    def observe(self) -> Observation:
        self.last = self.backend.observe()
        return self.last

    def apply(self, configs: dict[str, StageConfig]) -> dict[str, StageStatus]:
        return self.backend.apply(configs)

    def in_effect(self) -> dict[str, StageConfig]:
        return self.backend.in_effect()

    def now(self) -> float:
        return self.clock.now()

    def wait_until(self, t: float) -> None:
        self.clock.wait_until(t)


class _Recorded:
    """The planner as the joint loop sees it: before deciding, a stage whose last request failed is planned again
    from what serves (the loop's target for it becomes what serves, so the plan is applied again if it still
    differs); the rates and the decision time are kept for the decision's record."""

    def __init__(self, planner: SharedBudgetPlanner, backends: Sequence[RayServeBackend]):
        self.inner = planner
        self.labels = planner.labels
        self.backends = list(backends)
        self.loop: Any = None  # the JointAdapter, set once made
        self.rates: list[float] = []
        self.before: dict[str, dict[str, StageConfig]] = {}
        self.replanned: dict[str, list[str]] = {}
        self.solve_s = 0.0
        self.missed = False

    def decide(self, rates: Sequence[float]) -> tuple[dict[str, dict[str, StageConfig] | None], bool]:
        self.replanned = {}
        for k, be in zip(self.labels, self.backends):
            serving = be.in_effect()
            failed = [
                s
                for s, st in be.stage_status().items()
                if st.state is ApplyState.FAILED and self.loop.target[k].get(s) != serving[s]
            ]
            for s in failed:
                self.loop.target[k][s] = serving[s]
            self.replanned[k] = sorted(failed)
        self.before = {k: dict(tg) for k, tg in self.loop.target.items()}
        self.rates = [float(r) for r in rates]
        t0 = time.perf_counter()
        out, self.missed = self.inner.decide(rates)
        self.solve_s = time.perf_counter() - t0
        return out, self.missed


def run_joint_adapter(
    fleet: Fleet,
    planner: SharedBudgetPlanner,
    *,
    predictor: Any = "default",
    interval_s: float = 10.0,
    until_s: float = math.inf,
    log: Path | IO[str] | None = None,
    on_step: Callable[[FleetDecision], None] | None = None,
) -> list[FleetDecision]:
    """One joint loop for every pipeline of `fleet` until `until_s` (seconds on the first pipeline's clock) or
    Ctrl-C: observe each, predict each load (`predictor`: a name, or an object with `predict(history)`), decide jointly within the planner's budget, apply each pipeline's
    changes to its own backend (make-before-break there, as alone). One JSON line per decision to `log`."""
    if list(planner.labels) != fleet.names:
        raise ServingError(f"the planner decides for {planner.labels}, the fleet serves {fleet.names}: give the same")
    watched = [_Watched(be, clock=fleet.backends[0]) for be in fleet.backends]
    recorded = _Recorded(planner, fleet.backends)
    loop = JointAdapter(watched, recorded, predictor=predictor, interval_s=interval_s)  # type: ignore[arg-type]
    recorded.loop = loop
    decisions: list[FleetDecision] = []
    out: IO[str] | None
    with contextlib.ExitStack() as stack:
        if isinstance(log, (str, Path)):
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(open(log, "w", encoding="utf-8"))
        else:
            out = log

        def step(t: float) -> None:
            names = fleet.names
            obs = {k: w.last for k, w in zip(names, watched)}
            d = FleetDecision(
                t=t,
                observed_rps={k: _mean_recent(o, interval_s) for k, o in obs.items()},
                predicted_rps=dict(zip(names, recorded.rates)),
                changed_stages={
                    k: sorted(s for s, c in loop.target[k].items() if recorded.before.get(k, {}).get(s) != c)
                    for k in names
                },
                replanned_stages=dict(recorded.replanned),
                configs={k: {s: c.to_dict() for s, c in loop.target[k].items()} for k in names},
                planned_cores=loop.planned_cores[-1] if loop.planned_cores else 0,
                budget_cores=planner.budget,
                missed=recorded.missed,
                solve_time_s=recorded.solve_s,
                violations_last_interval={k: int(o.sla_violations) if o else 0 for k, o in obs.items()},
                requests_last_interval={k: int(o.answered) if o else 0 for k, o in obs.items()},
            )
            decisions.append(d)
            for be, k in zip(fleet.backends, names):
                with contextlib.suppress(Exception):  # metrics are best effort; the decision stands
                    be.record_decision(d.predicted_rps[k], d.solve_time_s)
            if out is not None:
                out.write(d.to_json() + "\n")
                out.flush()
            if on_step:
                on_step(d)

        loop.run(until_s, on_step=step)
    return decisions


def _mean_recent(obs: Observation | None, interval_s: float) -> float:
    if obs is None or obs.arrivals_per_s.size == 0:
        return 0.0
    k = max(1, int(round(interval_s)))
    return float(obs.arrivals_per_s[-k:].mean())
