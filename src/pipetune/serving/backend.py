"""`RayServeBackend`: the live runtime behind the same `Backend` interface the simulator implements.

Three parts, one job each: `serving/config.py` turns stage configurations into a Ray Serve config (pure),
`serving/reconcile.py` keeps the target against what Ray reports (pure), and this class runs them: it deploys
the config in place (`serving/ray_api.py`, never `serve.run`, which restarts every replica) and polls Ray
Serve's status on a background thread, every `poll_s` while a change is pending and every `idle_poll_s`
otherwise (each `serve.status()` costs CPU on the controller; `apply` wakes the thread at once).

Locking: `_lock` guards the reconciler's state and is never held across a call to Ray; `_deploy_lock` orders
the deploys, so that a config built later is never overwritten by one built earlier.

Time is wall time since the pipeline started serving (`now()`; `epoch` is that start, in `time.time()`
seconds); the ingress counts arrivals per second from the same epoch. Cores held are read from Ray Serve's
replica states, so starting and stopping replicas count too, plus the ingress's reserved cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from typing import Any

import numpy as np

from pipetune.backends.base import Backend, Observation, config_problem
from pipetune.configs import ApplyState, SplitConfig, StageConfig, StageStatus
from pipetune.optimizer.options import inline_stages
from pipetune.protocol import TensorSpec
from pipetune.runtime_profile import RuntimeProfile, assumed_runtime, load_runtime_for
from pipetune.serving import ray_api
from pipetune.serving.config import (
    INGRESS_CPUS,
    INGRESS_DEPLOYMENT,
    ServeOptions,
    ServingError,
    app_name,
    generation_key,
    graph_args,
    ingress_app_name,
    ingress_args,
    input_specs,
    serve_config,
    warm_of,
)
from pipetune.serving.reconcile import Deployed, Reconciler, read_deployed, read_status

__all__ = ["INGRESS_CPUS", "RayServeBackend", "ServingError"]

STARTUP_TIMEOUT_S = 600.0
POLL_S = 0.1  # status polls while a change is pending
IDLE_POLL_S = 1.0  # status polls otherwise (a replica that dies and restarts shows within this)
STARTUP_POLL_S = 0.5  # status polls while the first configuration starts
ROUTES_POLL_S = 0.1  # polls of the ingress until it has taken its routes (in place, a fraction of a second)
INGRESS_RPC_TIMEOUT_S = 30.0  # a call to the ingress actor (its counters) that takes longer is an error
RETIRE_ASK_TIMEOUT_S = 2.0  # asking the ingress which stage applications it still sends to (a busy one: ask again)
# A generation the traffic left is deleted once the ingress no longer sends to it; when the ingress cannot say so
# (unreachable, restarting) for this long after the deadline, it is deleted anyway, so the cores come back.
RETIRE_BOUND_S = 60.0
WAIT_SLICE_S = 0.5  # wait_until sleeps at most this long at a time
THREAD_JOIN_S = 5.0


class RayServeBackend(Backend):
    """Serve `pipeline` on Ray Serve and re-configure it in place.

    `address`: an existing Ray cluster (`ray://...` or `host:port`); None starts a local Ray with `num_cpus`
    logical CPUs (default: what the machine has), unless Ray is already initialised in this process.
    `initial`: the first configuration (one StageConfig per stage). `proxy_location`, `host`, `port` and the
    rest of the serving options: `serving.config.ServeOptions`. `deployer`: what sends this pipeline's Serve
    config and, on close, takes it down (`deploy(config)`, `shutdown()`); default `ray_api.ServeDeployer`, which
    owns all of Ray Serve. Several pipelines on one Ray Serve share one (`serving/fleet.py`).

    `attach`: when the cluster already serves this pipeline (a backend before this one deployed it and stopped
    without shutting it down, e.g. an adapter that was killed), take it over as it is instead of deploying
    `initial`: its generations, routes, clock (`epoch`) and ingress (its args, so its HTTP front and inline
    stages) are read back from Ray (`reconcile.read_deployed`), nothing is deployed until something changes, and
    a switch that was under way completes. `attached` says which happened. The pipeline's DAG must be the one
    deployed (ServingError otherwise).
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
        poll_s: float = POLL_S,
        idle_poll_s: float = IDLE_POLL_S,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        namespace: str = "pipetune",
        autoscale: dict | None = None,
        proxy_location: str = "EveryNode",
        front: str = "direct",
        inline: bool = True,
        caller_batching: bool = True,
        runtime: RuntimeProfile | None = None,
        deployer: Any = None,
        attach: bool = False,
    ):
        import ray

        missing = sorted(set(pipeline.stage_names) - set(initial))
        if missing:
            raise ServingError(f"initial configuration has no entry for stages {missing}; give one per stage")
        self.pipeline = pipeline
        self.profiles = profiles
        self.name = pipeline.name
        # Ray Serve's own autoscaling (`autoscale`) instead of pipetune's replica counts: the baseline a Ray user
        # gets without pipetune. The adapter must not drive a backend in this mode.
        self.options = ServeOptions.for_pipeline(
            pipeline,
            drop_after_s=drop_after_s,
            batch_wait_s=batch_wait_s,
            host=host,
            port=int(port),
            ingress_cpus=float(ingress_cpus),
            autoscale=dict(autoscale) if autoscale else None,
            proxy_location=proxy_location,
            front=front,
            caller_batching=caller_batching,
        )
        self.host, self.port = host, int(port)
        self.ingress_cpus = float(ingress_cpus)
        self.poll_s = poll_s
        self.idle_poll_s = max(poll_s, idle_poll_s)
        self._inputs = input_specs(pipeline)
        # The runtime's own CPU on this host (`pipetune profile --runtime`; beside the model profile), which also
        # says which stages run in the ingress (without one, by an assumed call cost); none under Ray's
        # autoscaling (that baseline is Ray Serve's own idiom), or with `inline` off.
        self.runtime = runtime if runtime is not None else load_runtime_for(pipeline)
        judge = self.runtime if self.runtime is not None else assumed_runtime(1.0)
        self.inline = set(inline_stages(pipeline, profiles, judge)) if inline and not autoscale else set()
        ray_api.check_ray_version()
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
        self.warm = warm_of(pipeline)
        deployed = (
            read_deployed(self.name, pipeline.stage_names, ray_api.deployed_apps(), self.warm) if attach else None
        )
        self.attached = deployed is not None
        if deployed is not None:
            self.inline = self._adopt(deployed)
        self.cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        self.budget_cores = self.cluster_cpus - self.ingress_cpus
        if self.budget_cores < 1:
            raise ServingError(
                f"Ray has {self.cluster_cpus:g} CPUs; the ingress needs {self.ingress_cpus:g} and every replica at "
                "least 1: start Ray with more (--num-cpus declares logical CPUs)"
            )
        if deployed is not None:
            self._ingress_args = deployed.ingress_args
            self._rec = Reconciler.resumed(self.name, deployed, self.inline, now=time.monotonic(), warm=self.warm)
        else:
            if self.options.front == "direct":
                # The ingress serves HTTP on this machine's address, so it runs on this (the driver's) node.
                node = f"node:{ray.util.get_node_ip_address()}"
                self.options = dataclasses.replace(self.options, ingress_resources={node: 0.001})
            self._ingress_args = ingress_args(pipeline, self.options, self._inputs, self.inline)
            self._rec = Reconciler(self.name, initial, self.inline, self.warm)
            held = 0
            for s, c in initial.items():
                why = self._check(s, c, holding=held)
                held += self._rec.holds(s, c)
                if why:
                    raise ServingError(f"initial configuration for {s!r}: {why}")
            ray_api.start_serve(self.options)
        self._deployer = deployer if deployer is not None else ray_api.ServeDeployer()
        self._lock = threading.RLock()  # the reconciler's state; never held across a call to Ray
        self._deploy_lock = threading.Lock()  # one deploy at a time, the newest config last
        self._built = 0  # configs built so far (under _lock)
        self._sent = 0  # the newest config deployed (under _deploy_lock)
        self._epoch = 0.0  # the exported config's value until the pipeline serves
        self._last_observe = 0.0  # now() of the previous observe(): the next one covers (it, now]
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by apply() and close(): poll now, not after the idle interval
        if deployed is not None:
            self._epoch = deployed.epoch  # the clock goes on: the ingress counts arrivals from it
            self._converge()  # Ray's report of what runs (a switch that finished meanwhile is routed now)
        else:
            self._deploy(list(initial))
            self._wait_ready(startup_timeout_s)
        self._thread = threading.Thread(target=self._poll_loop, name="pipetune-converge", daemon=True)
        self._thread.start()

    def _adopt(self, deployed: Deployed) -> set[str]:
        """Take the deployed ingress's settings (its front and resources) so that a later deploy keeps it as it
        runs; its inline stages. Refuses a pipeline whose DAG differs from the one deployed."""
        graph = dict(deployed.ingress_args.get("graph", {}))
        inline = set(graph.get("inline", {}))
        ours = json.loads(json.dumps(graph_args(self.pipeline, self._inputs, ())))  # as read back: JSON types
        differ = sorted(k for k in set(ours) | set(graph) if k != "inline" and ours.get(k) != graph.get(k))
        if differ:
            raise ServingError(
                f"the cluster serves a pipeline {self.name!r} deployed from another spec (it differs in "
                f"{', '.join(differ)}): stop it (`serve shutdown`) before serving this one, or rename this one"
            )
        front = deployed.ingress_args.get("front")
        self.options = dataclasses.replace(
            self.options,
            front="direct" if front else "proxy",
            host=str(front["host"]) if front else self.options.host,
            port=int(front["port"]) if front else self.options.port,
            ingress_resources=deployed.ingress_resources,
        )
        self.host, self.port = self.options.host, self.options.port
        return inline

    def redeploy_would_change(self) -> list[str]:
        """The applications whose deployed config differs from what this backend would deploy next (empty right
        after attaching: the next deploy changes only what is asked of it)."""
        with self._lock:
            ours = ray_api.normalised_apps(self._config())
        theirs = ray_api.deployed_apps()
        mine = {a for a in theirs if a == self.ingress_app or a.startswith(f"{self.name}--")}
        return sorted(a for a in set(ours) | mine if ours.get(a) != theirs.get(a))

    # ---- public accessors ----------------------------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        """The endpoint's input tensors (what a request to it must carry)."""
        return list(self._inputs)

    @property
    def epoch(self) -> float:
        """When the pipeline started serving, in `time.time()` seconds: `now()` is measured from it."""
        return self._epoch

    def app_name(self, stage: str, key: tuple[str, int]) -> str:
        """The Serve application of `stage`'s generation `key` = (variant, cores)."""
        return app_name(self.name, stage, key[0], key[1])

    def app_of(self, stage: str, c: StageConfig) -> str:
        """The Serve application that serves the one-variant configuration `c` of `stage` (its warm group's, where
        `c`'s variant is one of the stage's warm variants)."""
        return self.app_name(stage, generation_key(self.warm.get(stage, ()), c))

    @property
    def ingress_app(self) -> str:
        return ingress_app_name(self.name)

    def serve_config(self) -> dict:
        """The Serve config of what should run now (what the last deploy sent, or is about to)."""
        with self._lock:
            return self._config()

    # ---- deploying -----------------------------------------------------------------------------------------
    def _config(self) -> dict:
        rec = self._rec
        return serve_config(
            self.pipeline, self.profiles, rec.keyed_generations(), rec.serving(), self.options,
            args=self._ingress_args, epoch=self._epoch, runtime=self.runtime, retiring=rec.retiring(),
        )  # fmt: skip

    def _deploy(self, stages: list[str]) -> None:
        """Build the config of the target now and deploy it (outside `_lock`); `stages` changed with it."""
        with self._lock:
            config = self._config()
            self._built += 1
            version = self._built
        with self._deploy_lock:
            if version > self._sent:  # else a newer config went out meanwhile: it holds these changes too
                self._deployer.deploy(config)
                self._sent = version
        with self._lock:
            self._rec.deployed(stages, time.monotonic())

    def _converge(self) -> None:
        t = time.monotonic()
        snapshot = read_status(ray_api.serve_status())
        with self._lock:
            changed = self._rec.observe(snapshot, t)
            retiring = self._rec.retiring()
        if retiring and not changed:  # a route that moved just now has not reached the ingress yet: ask later
            unused = self._unused(retiring, t)
            with self._lock:
                changed = self._rec.retire(unused)
        if changed:
            self._deploy([])

    def _unused(self, retiring: dict[str, float], t: float) -> set[str]:
        """Of the retiring applications, those the ingress no longer sends to (its routes have left them and its
        calls there have come back), and those retired longer ago than the deadline and RETIRE_BOUND_S."""
        bound = float(self.options.drop_after_s) + RETIRE_BOUND_S
        overdue = {a for a, since in retiring.items() if t - since > bound}
        try:
            in_use = set(self.ingress_handle().apps_in_use.remote().result(timeout_s=RETIRE_ASK_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - an ingress that cannot answer now is asked again at the next poll
            return overdue
        return (set(retiring) - in_use) | overdue

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pending = self._rec.pending()
            self._wake.wait(self.poll_s if pending else self.idle_poll_s)
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
            with self._lock:
                ready, failed = self._rec.all_serving(), self._rec.failures()
            if ready:
                break
            if failed:
                raise ServingError("; ".join(f"{s}: {r}" for s, r in failed.items()))
            time.sleep(STARTUP_POLL_S)
        else:
            with self._lock:
                waiting = [s for s in self._rec.stages if s not in self._rec.serving()]
            raise ServingError(
                f"the pipeline did not become ready within {timeout_s:g} s (stages not ready: {waiting}); "
                "check that Ray has the CPUs it asks for"
            )
        self._epoch = time.time()  # the run starts once the pipeline serves
        self._deploy([])
        # The routes reach the ingress through its user_config (in place): wait for them so that the first
        # request after start-up is served, not refused.
        # (With every stage inline the stages serve at once; the ingress itself may not be deployed yet.)
        while time.time() < t_end:
            try:
                st = self._ingress_stats()
            except KeyError:  # Ray Serve does not know the ingress's deployment yet
                time.sleep(ROUTES_POLL_S)
                continue
            if len(st["routes"]) == len(set(self._rec.stages) - self.inline) and st.get("epoch") == self._epoch:
                return
            time.sleep(ROUTES_POLL_S)
        raise ServingError(f"the ingress did not take its routes within {timeout_s:g} s")

    def _check(self, stage: str, c: StageConfig, holding: float) -> str | None:
        why = config_problem(self.pipeline, stage, c)
        if why:
            return why
        if isinstance(c, SplitConfig) and (stage in self.inline or self.options.per_item_calls):
            # The ingress routes a split stage's items by share over its parts' applications; it does not split
            # a stage it runs itself, nor calls sent one per item under Ray's autoscaling.
            return (
                "a split stage (several variants by share) is served only as remote stages with planned batches "
                f"(stage {stage!r} runs {'in the ingress' if stage in self.inline else 'under Ray autoscaling'})"
            )
        need = holding + self._rec.holds(stage, c)
        if need > self.budget_cores + 1e-9:
            return (
                f"needs {need:g} CPUs with what the stage holds now, and Ray has {self.budget_cores:g} for replicas "
                "(its CPUs less the ingress): plan within the budget or add CPUs"
            )
        return None

    # ---- Backend -------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() - self._epoch

    def wait_until(self, t: float) -> None:
        while True:
            left = t - self.now()
            if left <= 0:
                return
            time.sleep(min(left, WAIT_SLICE_S))

    def apply(self, configs: dict[str, StageConfig]) -> dict[str, StageStatus]:
        unknown = sorted(set(configs) - set(self.pipeline.stage_names))
        if unknown:
            raise ServingError(f"apply: unknown stages {unknown}; stages are {self.pipeline.stage_names}")
        with self._lock:
            for s, c in configs.items():
                why = self._check(s, c, self._rec.held_elsewhere(s, c) if isinstance(c, StageConfig) else 0)
                self._rec.request(s, c, refused=why, now=time.monotonic())
        self._deploy(list(configs))
        self._wake.set()
        with self._lock:
            return {s: self._rec.stage_status(s) for s in configs}

    def wait_applied(self, stage: str, timeout_s: float = 120.0) -> float:
        """Wait until `stage`'s last apply is in effect; seconds waited. Raises ServingError when Ray refused it
        (with its reason) or when it is not in effect within `timeout_s`."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout_s:
            st = self.stage_status()[stage]
            if st.state is ApplyState.FAILED:
                raise ServingError(f"stage {stage!r}: the apply failed: {st.reason}")
            if st.state is ApplyState.APPLIED:
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise ServingError(f"stage {stage!r}: the apply was not in effect within {timeout_s:g} s")

    def stage_status(self) -> dict[str, StageStatus]:
        with self._lock:
            return {s: self._rec.stage_status(s) for s in self._rec.stages}

    def in_effect(self) -> dict[str, StageConfig]:
        with self._lock:
            return self._rec.in_effect()

    def replicas_ready(self) -> dict[str, int]:
        with self._lock:
            return self._rec.replicas_ready()

    def cores_held(self) -> float:
        """Every core held: replicas starting, running and stopping, of every generation, plus the ingress."""
        with self._lock:
            return self.ingress_cpus + self._rec.replica_cores_held()

    def ingress_handle(self) -> Any:
        return ray_api.deployment_handle(INGRESS_DEPLOYMENT, self.ingress_app)

    def _ingress_stats(self) -> dict:
        return self.ingress_handle().stats.remote().result(timeout_s=INGRESS_RPC_TIMEOUT_S)

    def observe(self) -> Observation:
        stats = self._ingress_stats()
        now = self.now()
        since = self._last_observe
        self._last_observe = now
        return Observation(
            now=now,
            since=since,
            arrivals_per_s=np.asarray(stats["arrivals_per_s"], dtype=float),
            completed=int(stats["completed"]),
            refused=int(stats["refused"]),
            dropped=int(stats["dropped"]),
            failed=int(stats["failed"]),
            late=int(stats["late"]),
            latencies_s=np.asarray(stats["latencies_s"], dtype=float),
            inflight=int(stats["inflight"]),
            in_effect=self.in_effect(),
            replicas_ready=self.replicas_ready(),
            cores_held=self.cores_held(),
        )

    def record_decision(self, predicted_rps: float, decision_s: float) -> None:
        """Show the adapter's prediction and decision time on the metrics endpoint."""
        self.ingress_handle().record_decision.remote(float(predicted_rps), float(decision_s))

    def close(self, keep_serving: bool = False) -> None:
        """Stop the convergence thread, take the pipeline down (its deployer's shutdown: all of Ray Serve by
        default), and Ray too if this backend started it (unless PIPETUNE_KEEP_RAY is set). `keep_serving`: leave
        the pipeline serving on the cluster as it is (a backend created with `attach` takes it over later); only
        the thread stops."""
        import ray

        self._stop.set()
        self._wake.set()
        if getattr(self, "_thread", None) is not None:
            self._thread.join(timeout=THREAD_JOIN_S)
        if keep_serving:
            return
        try:
            self._deployer.shutdown()
        finally:
            if self._started_ray and not os.environ.get("PIPETUNE_KEEP_RAY"):
                ray.shutdown()
