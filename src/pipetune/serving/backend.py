"""`RayServeBackend`: the live runtime behind the same `Backend` interface the simulator implements.

The backend keeps a declarative target (per stage: the serving generation and, during a switch, the incoming
one) and converges Ray Serve to it with `deploy_apps` (never `serve.run`, which restarts every replica). A
background thread polls Ray Serve's status every `poll_s` while a change is pending and every `idle_poll_s`
otherwise (one `serve.status()` costs ~20 ms of CPU here, and at 10 Hz it raised a stage hop's p99 from 5.5 ms to
23 ms on 2 cores; `apply` wakes the thread at once): when an incoming generation is RUNNING (every
replica loaded, warmed and healthy) the ingress's route moves to it and the old generation's application is
deleted (Ray drains its in-flight requests); when it is DEPLOY_FAILED the stage keeps its old generation and
the request is reported FAILED with Ray's message.

Time is wall time since the backend started (`now()`); the ingress counts arrivals per second from the same
epoch. Cores held are read from Ray Serve's replica states, so starting and stopping replicas count too.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from pipetune.backends.base import Backend, Observation
from pipetune.configs import ApplyState, StageConfig, StageStatus
from pipetune.errors import PipetuneError
from pipetune.protocol import TensorSpec, spec_for_sample
from pipetune.serving.app import INGRESS_DEPLOYMENT, STAGE_DEPLOYMENT, admission_limit, graph_args

if TYPE_CHECKING:
    from ray.serve._private.client import ServeControllerClient

STARTUP_TIMEOUT_S = 600.0
INGRESS_CPUS = 1.0  # Ray CPUs the ingress reserves (a core it holds all the time: counted in cores held)


class ServingError(PipetuneError):
    """The live runtime cannot start or cannot take a configuration; the message says why and the fix."""


@dataclass
class _Gen:
    """One generation of a stage: a (variant, cores) application and its in-place knobs."""

    variant: str
    cores: int
    replicas: int
    batch: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.variant, self.cores)


def input_specs(pipeline: Any) -> list[TensorSpec]:
    """The endpoint's input tensor, from the first source stage's example data (its first variant's adapter)."""
    from pipetune.models.registry import variant_model_ref

    src = next(iter(pipeline.source_shares()))
    variant = pipeline.stage(src).variants[0].name
    sample = variant_model_ref(pipeline, src, variant)().sample_inputs(1)[0]
    return [spec_for_sample("input", sample)]


class ServeTarget:
    """What should run, as Ray Serve config: per stage its generations (the serving one and, during a switch,
    the incoming one) and the ingress's routes. Pure data: `pipetune serve --export` uses it without Ray."""

    def __init__(
        self,
        pipeline: Any,
        profiles: Any = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        ingress_cpus: float = INGRESS_CPUS,
        drop_after_s: float | None = None,
        batch_wait_s: float | None = None,
        inputs: list[TensorSpec] | None = None,
        autoscale: dict | None = None,
    ):
        self.pipeline = pipeline
        # Ray Serve's own autoscaling (`autoscaling_config` per stage) instead of pipetune's replica counts: the
        # baseline a Ray user gets without pipetune. The adapter must not drive a backend in this mode.
        self.autoscale = dict(autoscale) if autoscale else None
        self.profiles = profiles
        self.name = pipeline.name
        self.host, self.port = host, int(port)
        self.ingress_cpus = float(ingress_cpus)
        self.drop_after_s = float(drop_after_s) if drop_after_s is not None else 2.0 * pipeline.sla.seconds
        self.batch_wait_s = float(batch_wait_s if batch_wait_s is not None else (pipeline.caps.max_batch_wait_s or 0.0))
        self._inputs = inputs if inputs is not None else input_specs(pipeline)
        self._graph = graph_args(pipeline, self._inputs)
        self._gens: dict[str, dict[tuple[str, int], _Gen]] = {s: {} for s in pipeline.stage_names}
        self._serving: dict[str, tuple[str, int] | None] = dict.fromkeys(pipeline.stage_names)
        self._app_cores: dict[str, int] = {}
        self._epoch = 0.0

    @classmethod
    def of(cls, pipeline: Any, configs: dict[str, StageConfig], profiles: Any = None, **kw: Any) -> ServeTarget:
        """The target that serves `configs` (every stage routed to its generation)."""
        t = cls(pipeline, profiles, **kw)
        for s, c in configs.items():
            t._gens[s][(c.variant, c.cores)] = _Gen(c.variant, c.cores, c.replicas, c.batch)
            t._serving[s] = (c.variant, c.cores)
        return t

    # ---- naming and the declarative config --------------------------------------------------------------
    def app_name(self, stage: str, key: tuple[str, int]) -> str:
        return f"{self.name}--{stage}--{key[0]}--c{key[1]}"

    @property
    def ingress_app(self) -> str:
        return f"{self.name}--ingress"

    def serve_config(self) -> dict:
        """The Ray Serve config (ServeDeploySchema) of what should run now: `serve deploy` and KubeRay's
        RayService (`serveConfigV2`) accept it as is."""
        apps = [self._ingress_app_config()]
        for s, gens in self._gens.items():
            for g in gens.values():
                apps.append(self._stage_app_config(s, g))
        return {
            "proxy_location": "EveryNode",
            "http_options": {"host": self.host, "port": self.port},
            "applications": apps,
        }

    def _stage_app_config(self, stage: str, g: _Gen) -> dict:
        from pipetune.models.registry import variant_model_ref

        ref = variant_model_ref(self.pipeline, stage, g.variant)
        name = self.app_name(stage, g.key)
        self._app_cores[name] = g.cores
        max_batch = max(self.pipeline.batch_sizes_for(stage))
        deployment: dict[str, Any] = {
            "name": STAGE_DEPLOYMENT,
            "num_replicas": g.replicas,
            # enough requests per replica to fill its largest batch while the previous one runs
            "max_ongoing_requests": 2 * max_batch,
            "user_config": {"batch": g.batch, "wait_s": self.batch_wait_s},
            "ray_actor_options": {"num_cpus": g.cores},
        }
        if self.autoscale:
            del deployment["num_replicas"]
            deployment["autoscaling_config"] = {"initial_replicas": g.replicas, **self.autoscale}
        return {
            "name": name,
            "route_prefix": None,
            "import_path": "pipetune.serving.app:build_stage",
            "args": {
                "stage": stage,
                "variant": g.variant,
                "cores": g.cores,
                "model": {"adapter": ref.adapter, "params": ref.params},
                "warmup": max_batch,
            },
            "deployments": [deployment],
        }

    def _ingress_app_config(self) -> dict:
        routes: dict[str, str] = {}
        variants: dict[str, str] = {}
        configs: dict[str, dict[str, Any]] = {}
        for s, key in self._serving.items():
            if key is None:
                continue
            g = self._gens[s][key]
            routes[s] = self.app_name(s, key)
            variants[s] = g.variant
            configs[s] = {"variant": g.variant, "batch": g.batch, "cores": g.cores, "replicas": g.replicas}
        return {
            "name": self.ingress_app,
            "route_prefix": "/",
            "import_path": "pipetune.serving.app:build_ingress",
            "args": {"graph": self._graph},
            "deployments": [
                {
                    "name": INGRESS_DEPLOYMENT,
                    "num_replicas": 1,
                    "ray_actor_options": {"num_cpus": self.ingress_cpus},
                    "user_config": {
                        "routes": routes,
                        "variants": variants,
                        "configs": configs,
                        "max_inflight": self._admission(configs),
                        # what the replicas hold in service at once: admission never goes below it
                        # (under Ray's autoscaling: no admission control at all, as Serve has none)
                        "floor_inflight": 4096
                        if self.autoscale
                        else sum(c["replicas"] * c["batch"] for c in configs.values()),
                        "drop_after_s": self.drop_after_s,
                        "epoch": self._epoch,
                    },
                }
            ],
        }

    def _admission(self, configs: dict[str, dict]) -> int:
        """Admit at most capacity x SLA requests, capacity from the profiles of the serving configuration.
        Under Ray's autoscaling the replica count is Ray's, so the ingress admits everything (as Serve does)."""
        if self.autoscale:
            return 4096
        if len(configs) < len(self.pipeline.stage_names) or self.profiles is None:
            return 0 if len(configs) < len(self.pipeline.stage_names) else 4096
        factors = self.pipeline.load_factors()
        cap = math.inf
        for s, c in configs.items():
            try:
                thr = self.profiles.get(s, c["variant"]).row(c["batch"], c["cores"]).throughput_rps
            except (KeyError, PipetuneError):
                continue
            if factors.get(s, 0) > 0:
                cap = min(cap, c["replicas"] * thr / factors[s])
        return 4096 if math.isinf(cap) else admission_limit(cap, self.pipeline.sla.seconds)


class RayServeBackend(ServeTarget, Backend):
    """Serve `pipeline` on Ray Serve and re-configure it in place.

    `address`: an existing Ray cluster (`ray://...` or `host:port`); None starts a local Ray with `num_cpus`
    logical CPUs (default: what the machine has). `initial`: the first configuration (one StageConfig per stage).
    """

    def __init__(
        self,
        pipeline: Any,
        initial: dict[str, StageConfig],
        profiles: Any = None,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        ingress_cpus: float = INGRESS_CPUS,
        drop_after_s: float | None = None,
        batch_wait_s: float | None = None,
        poll_s: float = 0.1,
        idle_poll_s: float = 1.0,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        namespace: str = "pipetune",
        autoscale: dict | None = None,
    ):
        import ray
        from ray import serve

        missing = sorted(set(pipeline.stage_names) - set(initial))
        if missing:
            raise ServingError(f"initial configuration has no entry for stages {missing}; give one per stage")
        super().__init__(
            pipeline,
            profiles,
            host=host,
            port=port,
            ingress_cpus=ingress_cpus,
            drop_after_s=drop_after_s,
            batch_wait_s=batch_wait_s,
            autoscale=autoscale,
        )
        self.poll_s = poll_s
        self.idle_poll_s = max(poll_s, idle_poll_s)
        self._started_ray = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"namespace": namespace, "log_to_driver": False, "include_dashboard": False}
            if address is None:
                kw["num_cpus"] = num_cpus
                self._started_ray = True
            else:
                kw["address"] = address
            try:
                ray.init(**kw)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ServingError(
                    f"--address {address}: cannot connect to Ray ({e}); start the cluster or fix it"
                ) from None
        self.cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        self.budget_cores = self.cluster_cpus - self.ingress_cpus
        if self.budget_cores < 1:
            raise ServingError(
                f"Ray has {self.cluster_cpus:g} CPUs; the ingress needs {self.ingress_cpus:g} and every replica at "
                "least 1: start Ray with more (--num-cpus declares logical CPUs)"
            )
        serve.start(http_options={"host": host, "port": self.port})
        # Optional in ray's signature, but it raises rather than return None unless told otherwise
        self._client = cast("ServeControllerClient", serve.context._get_global_client())
        self._lock = threading.RLock()
        self._target: dict[str, StageConfig] = {}
        self._failed: dict[str, str] = {}
        self._snapshot: dict[str, Any] = {}
        self._snapshot_t = -math.inf  # monotonic time the snapshot was asked for
        self._deployed_t: dict[str, float] = {}  # per stage: when its last change was deployed
        self._epoch = time.time()
        held = 0
        for s, c in initial.items():
            why = self._check(s, c, holding=held)
            held += c.total_cores
            if why:
                raise ServingError(f"initial configuration for {s!r}: {why}")
            self._gens[s][(c.variant, c.cores)] = _Gen(c.variant, c.cores, c.replicas, c.batch)
            self._target[s] = c
        self._deploy()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by apply() and close(): poll now, not after the idle interval
        self._wait_ready(startup_timeout_s)
        self._thread = threading.Thread(target=self._poll_loop, name="pipetune-converge", daemon=True)
        self._thread.start()

    def _deploy(self) -> None:
        from ray.serve.schema import ServeDeploySchema

        with self._lock:
            schema = ServeDeploySchema.model_validate(self.serve_config())
            self._client.deploy_apps(schema)

    # ---- convergence ---------------------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        from ray import serve

        return dict(serve.status().applications)

    def _running(self, app: str, snap: dict[str, Any]) -> int:
        st = snap.get(app)
        if st is None:
            return 0
        d = st.deployments.get(STAGE_DEPLOYMENT)
        return int(d.replica_states.get("RUNNING", 0)) if d is not None else 0

    def _converge(self) -> None:
        t_snap = time.monotonic()
        snap = self._status()
        changed = False
        with self._lock:
            self._snapshot, self._snapshot_t = snap, t_snap
            for s, gens in self._gens.items():
                for key, g in list(gens.items()):
                    if key == self._serving[s]:
                        continue
                    app = self.app_name(s, key)
                    st = snap.get(app)
                    status = str(getattr(st, "status", ""))
                    if st is not None and status.endswith("DEPLOY_FAILED"):
                        self._failed[s] = f"{g.variant} on {g.cores} cores failed to deploy: {st.message[-500:]}"
                        del gens[key]
                        changed = True
                    elif status.endswith("RUNNING") and self._running(app, snap) >= g.replicas:
                        old = self._serving[s]
                        self._serving[s] = key  # every new replica is ready: move the traffic
                        if old is not None:
                            gens.pop(old, None)  # deleting the old app drains it
                        changed = True
            if changed:
                self._deploy()

    def _pending(self) -> bool:
        with self._lock:
            return any(self._stage_status(s).state is ApplyState.PENDING for s in self.pipeline.stage_names)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s if self._pending() else self.idle_poll_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._converge()
            except Exception:  # noqa: BLE001 - a transient controller error must not kill the loop
                time.sleep(self.poll_s)

    def _wait_ready(self, timeout_s: float) -> None:
        t_end = time.time() + timeout_s
        while time.time() < t_end:
            self._converge()
            if all(k is not None for k in self._serving.values()):
                break
            if self._failed:
                raise ServingError("; ".join(f"{s}: {r}" for s, r in self._failed.items()))
            time.sleep(0.5)
        else:
            raise ServingError(
                f"the pipeline did not become ready within {timeout_s:g} s (stages not ready: "
                f"{[s for s, k in self._serving.items() if k is None]}); check that Ray has the CPUs it asks for"
            )
        self._epoch = time.time()  # the run starts once the pipeline serves
        self._deploy()
        # The routes reach the ingress through its user_config (in place, a fraction of a second): wait for them
        # so that the first request after start-up is served, not refused.
        while time.time() < t_end:
            st = self.ingress_handle().stats.remote().result(timeout_s=30)
            if len(st["routes"]) == len(self._serving) and st.get("epoch") == self._epoch:
                return
            time.sleep(0.1)
        raise ServingError(f"the ingress did not take its routes within {timeout_s:g} s")

    # ---- Backend ---------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() - self._epoch

    def wait_until(self, t: float) -> None:
        while True:
            left = t - self.now()
            if left <= 0:
                return
            time.sleep(min(left, 0.5))

    def _check(self, stage: str, c: StageConfig, holding: float) -> str | None:
        st = self.pipeline.stage(stage)
        if c.variant not in [v.name for v in st.variants]:
            return f"variant {c.variant!r} is not one of {[v.name for v in st.variants]}"
        if c.batch < 1 or c.cores < 1 or c.replicas < 1:
            return f"batch, cores and replicas must be >= 1 (got {c.to_dict()})"
        need = holding + c.total_cores
        if need > self.budget_cores + 1e-9:
            return (
                f"needs {need:g} CPUs with what the stage holds now, and Ray has {self.budget_cores:g} for replicas "
                "(its CPUs less the ingress): plan within the budget or add CPUs"
            )
        return None

    def apply(self, configs: dict[str, StageConfig]) -> dict[str, StageStatus]:
        out: dict[str, StageStatus] = {}
        with self._lock:
            for s, c in configs.items():
                if s not in self._gens:
                    raise ServingError(f"apply: unknown stage {s!r}; stages are {self.pipeline.stage_names}")
                key = (c.variant, c.cores)
                gens = self._gens[s]
                serving = self._serving[s]
                others = {k: g for k, g in gens.items() if k != key}
                # Cores held elsewhere while this change happens: every other stage, plus the old
                # generation of this one during a make-before-break switch.
                elsewhere = sum(g.replicas * g.cores for t, gs in self._gens.items() if t != s for g in gs.values())
                old = gens[serving].replicas * gens[serving].cores if serving is not None and serving != key else 0
                why = self._check(s, c, elsewhere + old)
                if why:
                    self._failed[s] = why
                    self._target[s] = c
                    out[s] = StageStatus(ApplyState.FAILED, c, why)
                    continue
                self._failed.pop(s, None)
                self._target[s] = c
                for k in list(others):
                    if k != serving:
                        del gens[k]  # an earlier switch that has not finished is replaced by this one
                gens[key] = _Gen(c.variant, c.cores, c.replicas, c.batch)
            self._deploy()
            now = time.monotonic()
            self._deployed_t.update(dict.fromkeys(configs, now))
            self._wake.set()
            for s in configs:
                if s not in out:
                    out[s] = self._stage_status(s)
        return out

    def _stage_status(self, s: str) -> StageStatus:
        target = self._target[s]
        if s in self._failed:
            return StageStatus(ApplyState.FAILED, target, self._failed[s])
        key = (target.variant, target.cores)
        if self._serving[s] != key:
            return StageStatus(ApplyState.PENDING, target, f"{target.variant} on {target.cores} cores is loading")
        app = self.app_name(s, key)
        running = self._running(app, self._snapshot)
        if len(self._gens[s]) > 1 or running != target.replicas:
            return StageStatus(ApplyState.PENDING, target, f"{running}/{target.replicas} replicas running")
        # A status read before the last deploy cannot show it; an in-place change (batch size: user_config)
        # is UPDATING until every replica has run `reconfigure`.
        if self._snapshot_t <= self._deployed_t.get(s, -math.inf):
            return StageStatus(ApplyState.PENDING, target, "waiting for Ray Serve to report the change")
        d = self._snapshot[app].deployments.get(STAGE_DEPLOYMENT)
        if d is None or not str(d.status).endswith("HEALTHY"):
            return StageStatus(ApplyState.PENDING, target, f"deployment {getattr(d, 'status', 'missing')}")
        return StageStatus(ApplyState.APPLIED, target)

    def stage_status(self) -> dict[str, StageStatus]:
        with self._lock:
            return {s: self._stage_status(s) for s in self.pipeline.stage_names}

    def in_effect(self) -> dict[str, StageConfig]:
        with self._lock:
            out = {}
            for s, key in self._serving.items():
                if key is None:
                    continue
                g = self._gens[s][key]
                out[s] = StageConfig(g.variant, g.batch, g.cores, self._running(self.app_name(s, key), self._snapshot))
            return out

    def replicas_ready(self) -> dict[str, int]:
        with self._lock:
            return {
                s: sum(self._running(self.app_name(s, k), self._snapshot) for k in gens)
                for s, gens in self._gens.items()
            }

    def cores_held(self) -> float:
        """Every core held: replicas starting, running and stopping, of every generation, plus the ingress."""
        held = self.ingress_cpus
        with self._lock:
            for app, st in self._snapshot.items():
                cores = self._app_cores.get(app)
                d = st.deployments.get(STAGE_DEPLOYMENT)
                if cores is None or d is None:
                    continue
                held += cores * sum(n for state, n in d.replica_states.items() if state != "PENDING_MIGRATION")
        return held

    def ingress_handle(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=self.ingress_app)

    def observe(self) -> Observation:
        stats = self.ingress_handle().stats.remote().result(timeout_s=30)
        now = self.now()
        since = getattr(self, "_last_observe", 0.0)
        self._last_observe = now
        return Observation(
            now=now,
            since=since,
            arrivals_per_s=np.asarray(stats["arrivals_per_s"], dtype=float),
            completed=int(stats["completed"]),
            dropped=int(stats["dropped"]) + int(stats["refused"]),
            failed=int(stats["failed"]),
            late=int(stats["late"]),
            latencies_s=np.asarray(stats["latencies_s"], dtype=float),
            in_effect=self.in_effect(),
            replicas_ready=self.replicas_ready(),
            cores_held=self.cores_held(),
            extra={"refused": int(stats["refused"]), "timed_out": int(stats["dropped"]), "inflight": stats["inflight"]},
        )

    def record_decision(self, predicted_rps: float, decision_s: float) -> None:
        """Show the adapter's prediction and decision time on the metrics endpoint."""
        self.ingress_handle().record_decision.remote(float(predicted_rps), float(decision_s))

    def stop_polling(self) -> None:
        """End the convergence thread (close() does this; a caller that shuts Ray down itself calls it first)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        import ray
        from ray import serve

        if hasattr(self, "_stop"):
            self.stop_polling()
            self._thread.join(timeout=5)
        try:
            serve.shutdown()
        finally:
            if self._started_ray and not os.environ.get("PIPETUNE_KEEP_RAY"):
                ray.shutdown()
