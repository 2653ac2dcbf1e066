"""The Ray Serve deployments: one application per (stage, variant, cores) and one ingress that walks the DAG.

Why one application per (stage, variant, cores): Ray Serve's declarative API (`deploy_apps`) restarts every
deployment of an application whose `import_path` or `args` change, but changes a deployment's `num_replicas`
and `user_config` in place. Giving each generation of a stage its own application (its args fixed for life)
makes the three kinds of change cheap and safe:

* batch size -> that application's `user_config` (`reconfigure` calls `set_max_batch_size`): in place;
* replicas   -> its `num_replicas`: Ray starts or drains replicas, the others keep serving;
* variant or cores -> a NEW application is deployed beside the old one (make-before-break); the ingress moves
  the stage's traffic only once every new replica has loaded, warmed and passed its health check, and the old
  application is then deleted, which drains its in-flight requests.

The ingress is an HTTP deployment speaking the Open Inference Protocol (`protocol.py`). Its routing table
(stage -> application), its admission limit and its deadline arrive through its own `user_config`, so they too
change in place. It keeps the counters the adapter observes and the Prometheus metrics (`/metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from pipetune import jsonio
from pipetune.admission import AdmissionWindow
from pipetune.configs import ShareRouter
from pipetune.models.base import pin_threads
from pipetune.models.registry import model_ref
from pipetune.protocol import (
    HEADER_LENGTH,
    MAX_BODY_BYTES,
    ProtocolError,
    TensorSpec,
    decode_request,
    encode_response,
    error_body,
    model_metadata,
)
from pipetune.runtime_profile import LOADING_NICENESS
from pipetune.serving.channels import CALLS_PER_REPLICA, StageChannel
from pipetune.serving.config import INGRESS_DEPLOYMENT, STAGE_DEPLOYMENT
from pipetune.serving.front import BODY_TIMEOUT_S, RETRY_AFTER_S, HttpFront, bind

MAX_WINDOW = 200_000  # latencies kept between two observations (bounded whatever the load)
INLINE_PREDICT_S = 2e-4  # a one-item predict shorter than this runs on the replica's event loop (batch 1)
INLINE_PROBES = 5
STARTING_NICENESS = LOADING_NICENESS  # how much lower a starting replica's CPU priority is than a serving one's

# What a stage replica returns per item: (output, realised batch size, batch service seconds, Ray node id, the
# variant that served it).
StageResult = tuple[Any, int, float, str, str]
# What a batched call reports once: (realised batch size, batch service seconds, Ray node id, variant that served).
CallFacts = tuple[int, float, str, str]


# ---- one stage generation -------------------------------------------------------------------------------
def serves_on_loop(adapter: Any, probes: int = INLINE_PROBES) -> bool:
    """Whether a loaded, warmed model serves batch-1 calls on the replica's event loop: its one-item predict
    (timed warm, best of `probes`) is shorter than a hand-off to the thread pool (INLINE_PREDICT_S), so blocking
    the loop that briefly costs less than the hand-off."""
    one = adapter.sample_inputs(1)
    best = math.inf
    for _ in range(probes):
        t0 = time.perf_counter()
        adapter.predict(one)
        best = min(best, time.perf_counter() - t0)
    return best < INLINE_PREDICT_S


def predict_one(adapter: Any, item: Any, where: str, cpu: ModelCpu | None = None) -> tuple[Any, float]:
    """One item through `adapter.predict` on the calling thread: (output, seconds); `check_outputs` on the way."""
    t0 = time.perf_counter()
    outs = predict_counted(adapter, [item], cpu, where)
    check_outputs(outs, 1, where)
    return outs[0], time.perf_counter() - t0


class ModelCpu:
    """CPU seconds spent inside `predict`, per stage/variant, as the calling thread's CPU time: what the models cost,
    told apart from what the runtime around them costs (the serving benchmark reads it). A model that runs its
    math on threads of its own (a multi-core replica) is counted on the calling thread only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}

    def add(self, variant: str, cpu_s: float, items: int) -> None:
        self.seconds[variant] = self.seconds.get(variant, 0.0) + cpu_s
        self.items[variant] = self.items.get(variant, 0) + items

    def to_dict(self) -> dict:
        return {"seconds": dict(self.seconds), "items": dict(self.items)}


def predict_counted(adapter: Any, items: list[Any], cpu: ModelCpu | None, where: str) -> list[Any]:
    """`adapter.predict(items)`, its thread CPU time added to `cpu` (when given) under `where` (stage/variant)."""
    if cpu is None:
        return adapter.predict(items)
    c0 = time.thread_time()
    outs = adapter.predict(items)
    cpu.add(where, time.thread_time() - c0, len(items))
    return outs


@contextlib.contextmanager
def starting_priority(niceness: int = STARTING_NICENESS) -> Iterator[None]:
    """Run a replica's start (importing its libraries, loading and warming its model) at a lower CPU priority, then
    return to the priority it had: on a host whose cores the serving replicas share, a replica that is starting
    (a make-before-break switch, a replica added) must not take their CPU while they serve. Where the OS does not
    let the process raise its priority back (no CAP_SYS_NICE, RLIMIT_NICE too low) the priority is not lowered."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        limit = resource.getrlimit(resource.RLIMIT_NICE)[0]
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        yield
        return
    # RLIMIT_NICE allows a nice value down to 20 - limit; root (CAP_SYS_NICE) may anyway.
    can_return = os.geteuid() == 0 or limit == resource.RLIM_INFINITY or 20 - limit <= before
    if not can_return:
        yield
        return
    os.setpriority(os.PRIO_PROCESS, 0, min(19, before + niceness))  # Linux: this thread, and those it starts
    try:
        yield
    finally:
        # Every thread back, those the model's libraries started meanwhile (a math pool) included.
        for tid in _threads():
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, before)


def _threads() -> list[int]:
    """This process's thread ids (Linux: /proc/self/task), or just the calling one (0) elsewhere."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - not Linux
        return [0]


def replica_lost(e: BaseException) -> bool:
    """Whether a stage call failed because its replica went away under it (killed, crashed, drained): such a call
    is sent once more (to a replica that is there), while a model's own error is not."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    return isinstance(
        e, (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
    )


def check_outputs(outs: list[Any], n: int, where: str) -> None:
    """A batch of `n` items must come back as `n` outputs: a model that returns other is an error naming `where`
    (stage/variant), never a silently shifted answer."""
    if len(outs) != n:
        raise RuntimeError(f"{where}: {len(outs)} outputs for a batch of {n}")


@serve.deployment(name=STAGE_DEPLOYMENT, health_check_period_s=5, graceful_shutdown_timeout_s=30)
class StageReplica:
    """One replica of one generation of a stage: pins threads, loads and warms its model (a warm group's: every
    warm variant, `models`), then serves batches of items, each call naming the variant (the ingress's route; a
    call that names none, or one this replica does not hold, gets its first: a retried call that the traffic's
    move handed over). Ray's per-item calls are batched by `@serve.batch` (its size and wait set at run time by
    `reconfigure`)."""

    def __init__(
        self, stage: str, variant: str, cores: int, model: dict, warmup_batch: int = 1, models: dict | None = None
    ):
        self.stage, self.variant, self.cores = stage, variant, int(cores)
        pin_threads(self.cores)
        self.adapters: dict[str, Any] = {}
        with starting_priority():
            for name, ref in (models or {variant: model}).items():
                adapter = model_ref(ref, f"stages[{stage}].variants[{name}].model")()
                adapter.load()
                # Warm before the replica can be marked ready: first calls pay lazy initialisation.
                for n in sorted({1, max(1, int(warmup_batch))}):
                    out = adapter.predict(adapter.sample_inputs(n))
                    if len(out) != n:
                        raise RuntimeError(f"{stage}/{name}: predict returned {len(out)} outputs for {n} inputs")
                self.adapters[name] = adapter
        self.default = next(iter(self.adapters))
        self.on_loop = {name: serves_on_loop(a) for name, a in self.adapters.items()}
        self.model_cpu = ModelCpu()  # counted from here on: warm-up and probes are not serving
        # predict() runs off the event loop so items keep queueing for the next batch meanwhile.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{stage}-{variant}")
        self.batch = 1
        self.wait_s = 0.0
        import ray

        self.node = ray.get_runtime_context().get_node_id()  # reported with each output: where it ran

    def reconfigure(self, config: dict) -> None:
        self.batch = int(config.get("batch", 1))
        self.wait_s = float(config.get("wait_s", 0.0))
        # ray's stub types `@serve.batch` as returning a plain callable; the runtime wrapper has these setters
        self.run_batch.set_max_batch_size(self.batch)  # type: ignore[attr-defined]
        self.run_batch.set_batch_wait_timeout_s(self.wait_s)  # type: ignore[attr-defined]

    def _variant(self, variant: str | None) -> str:
        return variant if variant in self.adapters else self.default

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def run_batch(self, calls: list[tuple[Any, str]]) -> list[StageResult]:
        # a batch's items may name two variants (at a switch): each run of one variant is served as one batch
        out: list[StageResult] = []
        for variant, run in itertools.groupby(calls, key=lambda c: c[1]):
            out.extend(await self._predict([x for x, _ in run], variant))
        return out

    async def _run(self, items: list[Any], variant: str) -> tuple[list[Any], float]:
        """`variant`'s outputs for `items`, computed off the event loop (items keep queueing meanwhile), and the
        seconds it took."""
        t0 = time.perf_counter()
        where = f"{self.stage}/{variant}"
        loop = asyncio.get_running_loop()
        outs = await loop.run_in_executor(
            self._pool, predict_counted, self.adapters[variant], items, self.model_cpu, where
        )
        dt = time.perf_counter() - t0
        check_outputs(outs, len(items), where)
        return outs, dt

    async def _predict(self, items: list[Any], variant: str) -> list[StageResult]:
        outs, dt = await self._run(items, variant)
        return [(o, len(items), dt, self.node, variant) for o in outs]

    async def predict_batch(self, items: list[Any], variant: str | None = None) -> tuple[list[Any], CallFacts]:
        """A batch formed by the caller (the ingress's StageChannel) for `variant`: one call, `len(items)` outputs
        in order, and the call's facts once (not per item)."""
        variant = self._variant(variant)
        if len(items) == 1 and self.on_loop[variant]:
            out, dt = predict_one(self.adapters[variant], items[0], f"{self.stage}/{variant}", self.model_cpu)
            return [out], (1, dt, self.node, variant)
        outs, dt = await self._run(items, variant)
        return outs, (len(items), dt, self.node, variant)

    async def __call__(self, item: Any, variant: str | None = None) -> StageResult:
        """One item per call, batched on the replica by `@serve.batch` (Ray Serve's own idiom: what the ingress
        uses under Ray's autoscaling, whose replica counts it does not know)."""
        variant = self._variant(variant)
        if self.batch == 1:
            if self.on_loop[variant]:  # sub-INLINE_PREDICT_S model: on the event loop, one call at a time all the same
                out, dt = predict_one(self.adapters[variant], item, f"{self.stage}/{variant}", self.model_cpu)
                return (out, 1, dt, self.node, variant)
            # Nothing to batch: straight to the one-thread pool, which serves one call at a time in arrival
            # order as the batch queue would, without the queue's own work per call
            return (await self._predict([item], variant))[0]
        return await self.run_batch((item, variant))

    def cpu_stats(self) -> dict:
        """CPU seconds spent in the model since the replica was ready (see `ModelCpu`), and which replica says so
        (a handle call reaches one replica of the deployment)."""
        return {
            "replica": serve.get_replica_context().replica_id.unique_id,
            "seconds": sum(self.model_cpu.seconds.values()),
            "items": sum(self.model_cpu.items.values()),
        }

    def check_health(self) -> None:
        if self._pool is None:  # pragma: no cover - set in __init__
            raise RuntimeError("not loaded")


def build_stage(args: dict) -> Any:
    """Application builder for one stage generation (`import_path: pipetune.serving.app:build_stage`)."""
    # `@serve.deployment` makes the class a Deployment (which has `bind`); ray's stub keeps it typed as the class
    return StageReplica.bind(  # type: ignore[attr-defined]
        args["stage"], args["variant"], int(args["cores"]), args["model"], args.get("warmup", 1), args.get("models")
    )


# ---- the ingress ----------------------------------------------------------------------------------------
class _Metrics:
    """The Prometheus metrics of the ingress, in a registry of its own (one scrape target: `/metrics`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        lat = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
        self.requests = Counter(
            "pipetune_requests_total", "infer requests by outcome (arrived, completed, refused, dropped, failed, late)",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.bad_input = Counter("pipetune_bad_requests_total", "requests refused with 400", registry=r)
        self.e2e = Histogram("pipetune_e2e_latency_seconds", "end-to-end latency", buckets=lat, registry=r)
        self.stage = Histogram(
            "pipetune_stage_latency_seconds", "per-stage latency seen by the ingress (queue + batch + hop)",
            ["stage", "variant"], buckets=lat, registry=r,
        )  # fmt: skip
        self.batch = Histogram(
            "pipetune_batch_size", "realised batch sizes", ["stage", "variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=r,
        )  # fmt: skip
        self.inflight = Gauge("pipetune_inflight_requests", "requests in the pipeline now", registry=r)
        self.max_inflight = Gauge("pipetune_admission_limit", "in-flight requests admitted at most", registry=r)
        self.config = Gauge(
            "pipetune_stage_config", "configuration in effect per stage (value: the knob)",
            ["stage", "variant", "knob"], registry=r,
        )  # fmt: skip
        self.predicted = Gauge("pipetune_predicted_rps", "load predicted by the adapter", registry=r)
        self.decision = Histogram(
            "pipetune_decision_seconds", "adapter decision time (observe + predict + plan)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=r,
        )  # fmt: skip
        for o in ("arrived", "completed", "refused", "dropped", "failed", "late"):
            self.requests.labels(o)


@serve.deployment(name=INGRESS_DEPLOYMENT, max_ongoing_requests=2048, graceful_shutdown_timeout_s=30)
class Ingress:
    """HTTP ingress: the V2 endpoint, admission control, the DAG walk, counters and metrics."""

    def __init__(self, graph: dict, front: dict | None = None) -> None:
        self.name: str = graph["name"]
        self.topo: list[str] = graph["topo"]
        self.parents: dict[str, list[tuple[str, float]]] = {
            s: [tuple(p) for p in ps] for s, ps in graph["parents"].items()
        }
        self.join: dict[str, bool] = graph["join"]
        self.sinks: list[str] = graph["sinks"]
        self.inputs = [TensorSpec(d["name"], d["datatype"], tuple(d["shape"])) for d in graph["inputs"]]
        self.outputs = [TensorSpec(s, "BYTES", (-1,)) for s in self.sinks]
        self.sla_s = float(graph["sla_s"])
        self.metrics = _Metrics()
        self.routes: dict[str, str] = {}
        self.variants: dict[str, str] = {}
        # split stages (caps.mix_variants 2): per stage a function -> (application, variant) of the next item,
        # by share (configs.ShareRouter); per application of a part its configuration (batch, replicas)
        self._splits: dict[str, Any] = {}
        self._part_configs: dict[str, dict] = {}
        self.max_inflight = 0
        self.drop_after_s = 2 * self.sla_s
        self.epoch = time.time()
        self._handles: dict[str, Any] = {}
        # Observed since the previous stats() call (bounded), and arrivals per whole second since the epoch.
        self._arrivals: list[int] = []
        self._counts = dict.fromkeys(("completed", "refused", "dropped", "failed", "late"), 0)
        self._latencies: list[float] = []
        self._nodes: dict[str, set[str]] = {}  # per stage, the Ray nodes whose replicas served it
        self._window = AdmissionWindow(self.sla_s, time.monotonic())  # recent completions, for the measured limit
        self._started: OrderedDict[int, float] = OrderedDict()  # admitted requests in flight -> admission time
        self._ids = itertools.count()
        self.floor_inflight = 1
        # Stages too light to be worth a remote call run here, every variant loaded up front (so a variant
        # switch of such a stage is a table change): see `optimizer.options.inline_stages`.
        self._inline: dict[str, dict[str, Any]] = {}
        for stage, refs in graph.get("inline", {}).items():
            self._inline[stage] = {}
            for variant, model in refs.items():
                adapter = model_ref(model, f"stages[{stage}].variants[{variant}].model")()
                adapter.load()
                check_outputs(adapter.predict(adapter.sample_inputs(1)), 1, f"{stage}/{variant}")
                self._inline[stage][variant] = adapter
        self.model_cpu = ModelCpu()  # the inline stages' models
        self._configs: dict[str, dict] = {}
        self._channels: dict[str, StageChannel] = {}  # per stage application
        self._routed: set[str] = set()  # the stage applications the routes (and split parts) send to
        # Applications the routes left, with their channel (None: never used here) and when they left: the
        # backend deletes one once this ingress no longer sends to it (`apps_in_use`).
        self._retired: dict[str, tuple[StageChannel | None, float]] = {}
        self.per_item_calls = False  # True under Ray's autoscaling: one item per call, batched on the replica
        self._front: HttpFront | None = None
        if front:  # serve HTTP here, not through Ray Serve's proxy
            self._front = HttpFront(self.__call__, bind(str(front["host"]), int(front["port"])))
            self._front.start()

    @property
    def inflight(self) -> int:
        """Admitted requests not yet answered."""
        return len(self._started)

    # -- configuration, in place ---------------------------------------------------------------------------
    async def reconfigure(self, config: dict) -> None:
        # A coroutine, so that Serve runs it on the replica's event loop, where the requests and the stage
        # channels live: a channel handed over schedules its calls on that loop (Serve runs a plain method on a
        # worker thread, which has none).
        self.routes = dict(config.get("routes", {}))
        self.variants = dict(config.get("variants", {}))
        self._configs = dict(config.get("configs", {}))
        self.per_item_calls = bool(config.get("per_item_calls", False))
        self.max_inflight = int(config.get("max_inflight", 0))
        self.floor_inflight = max(1, int(config.get("floor_inflight", 1)))
        self.drop_after_s = float(config.get("drop_after_s", 2 * self.sla_s))
        # The backend's clock, so arrivals per second line up with its `now()`. A config without one (an
        # exported config run by `serve deploy`) or with a far-off one keeps the ingress's own start time:
        # the arrival counts grow one entry per second from the epoch, so it must be recent.
        epoch = float(config.get("epoch") or 0.0)
        if epoch != self.epoch and abs(time.time() - epoch) < 3600:
            self.epoch = epoch
            self._arrivals = []
        self._splits, self._part_configs = {}, {}
        by_app = {app: stage for stage, app in self.routes.items()}
        for stage, parts in dict(config.get("splits", {})).items():
            self._splits[stage] = _share_picker(
                [(app, cfg["variant"]) for app, _, cfg in parts], [f for _, f, _ in parts]
            )
            for app, _, cfg in parts:
                self._part_configs[app] = cfg
                by_app[app] = stage
        self._handles = {a: h for a, h in self._handles.items() if a in by_app}
        # Channels follow the routes: a retired generation's channel goes (its calls in flight finish: they
        # hold their own references), the serving one is resized in place to the stage's batch and replicas.
        retired = {a: ch for a, ch in self._channels.items() if a not in by_app}
        self._channels = {a: ch for a, ch in self._channels.items() if a in by_app}
        for app, ch in self._channels.items():
            ch.resize(*self._channel_size(by_app[app], app))
        for ch in retired.values():  # items still waiting for a retired generation go to the new one
            if ch.stage in self.routes:  # and so do the items of its calls that fail and are sent again
                ch.successor = self._channel(ch.stage)
                if ch.queued:
                    ch.hand_over(ch.successor)
        now = time.monotonic()
        self._retired = {a: v for a, v in self._retired.items() if a not in by_app}
        self._retired.update({a: (retired.get(a), now) for a in self._routed - set(by_app)})
        self._routed = set(by_app)
        self.metrics.max_inflight.set(self.max_inflight)
        self.metrics.config.clear()
        for stage, cfg in config.get("configs", {}).items():
            for knob in ("batch", "cores", "replicas"):
                self.metrics.config.labels(stage, cfg["variant"], knob).set(cfg[knob])

    def _channel_size(self, stage: str, app: str) -> tuple[int, int]:
        """(items per call, calls in flight) for a stage's application: its planned batch; CALLS_PER_REPLICA per
        replica (a split stage's part: its own batch and replicas)."""
        cfg = self._part_configs.get(app) or self._configs.get(stage, {})
        return int(cfg.get("batch", 1)), CALLS_PER_REPLICA * max(1, int(cfg.get("replicas", 1)))

    async def __del__(self) -> None:
        if self._front is not None:
            await self._front.stop(timeout_s=5.0)

    async def apps_in_use(self) -> list[str]:
        """The stage applications this ingress may still send to: those its routes name and, of those the routes
        left, each whose calls have not all come back yet (under Ray's autoscaling, where calls are not tracked
        here: each for the deadline after it left). A call out longer than the deadline carries only items of
        requests answered already (504), so an application is never in use longer than that after it left."""
        now = time.monotonic()

        def busy(ch: StageChannel | None) -> bool:
            return bool(ch.calls_in_flight or ch.queued) if ch is not None else self.per_item_calls

        self._retired = {a: (ch, t) for a, (ch, t) in self._retired.items() if busy(ch) and now - t < self.drop_after_s}
        return sorted(self._routed | set(self._retired))

    async def record_decision(self, predicted_rps: float, decision_s: float) -> None:
        self.metrics.predicted.set(predicted_rps)
        self.metrics.decision.observe(decision_s)

    async def stats(self) -> dict:
        """What happened since the previous call (arrivals: per second since the epoch). On the event loop, as
        the requests that change these counters."""
        self._tick_arrivals()
        out = {
            "arrivals_per_s": list(self._arrivals[:-1]),  # whole seconds only
            **self._counts,
            "latencies_s": self._latencies,
            "inflight": self.inflight,
            "routes": dict(self.routes),
            "max_inflight": self.max_inflight,
            "epoch": self.epoch,
            "nodes": {st: sorted(ns) for st, ns in self._nodes.items()},
            "model_cpu": self.model_cpu.to_dict(),  # since start (not reset): inline stages' models
            # since start, per stage: handle calls sent and items they carried (the serving generations' channels)
            "calls": {ch.stage: {"calls": ch.calls, "items": ch.items} for ch in self._channels.values()},
        }
        self._counts = dict.fromkeys(self._counts, 0)
        self._latencies = []
        return out

    def _tick_arrivals(self) -> int:
        sec = int(time.time() - self.epoch)
        if sec >= len(self._arrivals):
            self._arrivals.extend([0] * (sec + 1 - len(self._arrivals)))
        return sec

    def _count(self, outcome: str, latency: float | None = None) -> None:
        self._counts[outcome] += 1
        self.metrics.requests.labels(outcome).inc()
        if latency is not None and len(self._latencies) < MAX_WINDOW:
            self._latencies.append(latency)

    # -- HTTP ----------------------------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        method = request.method
        route, allowed = self._route(path)
        if route == "unknown-model":
            return _error(404, f"model {path.split('/')[3]!r} is not served here; this server serves {self.name!r}")
        if route is None:
            return _error(404, f"{method} {path or '/'} is not part of the Open Inference Protocol endpoint")
        if method not in allowed:  # a known route asked with another method: 405 says which it takes
            return _error(
                405, f"{method} is not allowed on {path or '/'}; it takes {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )  # fmt: skip
        if route == "live":
            return _json(200, {"live": True})
        if route == "ready":
            ready = self._ready()
            return _json(200 if ready else 503, {"ready": ready})
        if route == "metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.metrics.inflight.set(self.inflight)
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)
        if route == "server":
            return _json(200, {"name": "pipetune", "version": "0.1.0", "extensions": ["binary_tensor_data"]})
        if route == "model":
            return _json(200, model_metadata(self.name, self.inputs, self.outputs))
        if route == "model-ready":
            ready = self._ready()
            return _json(200 if ready else 503, {"name": self.name, "ready": ready})
        return await self._infer(request)

    def _route(self, path: str) -> tuple[str | None, tuple[str, ...]]:
        """(route, the methods it takes) for a path without its trailing slash; (None, ()) if it is none of the
        endpoint's. Every route but `infer` only reads: nothing reachable here changes what is served."""
        fixed = {
            "/v2/health/live": "live",
            "/v2/health/ready": "ready",
            "/metrics": "metrics",
            "/v2": "server",
            "": "server",
        }
        if path in fixed:
            return fixed[path], ("GET",)
        parts = path.split("/")  # '', 'v2', 'models', name, ...
        if len(parts) < 4 or parts[1] != "v2" or parts[2] != "models":
            return None, ()
        if parts[3] != self.name:
            return "unknown-model", ()
        rest = parts[4:]
        if rest and rest[0] == "versions" and len(rest) >= 2:
            rest = rest[2:]  # /versions/{v}/... is the same model
        if not rest:
            return "model", ("GET",)
        if rest == ["ready"]:
            return "model-ready", ("GET",)
        if rest == ["infer"]:
            return "infer", ("POST",)
        return None, ()

    def _limit(self) -> int:
        """In-flight requests to admit now: the profile's limit (capacity x SLA) and, while the pipeline is
        behind (`pipetune.admission`), no more than Little's law allows at the throughput actually measured over the
        last `RATE_WINDOW_S` (ADMIT_SHARE x completions/s x SLA), since a profile measured one model at a time
        overstates a machine whose cores the ingress and every replica share. Never below what the
        replicas hold in service at once."""
        oldest = next(iter(self._started.values())) if self._started else None
        limit = self._window.limit(time.monotonic(), self.inflight, oldest, self.max_inflight, self.floor_inflight)
        self.metrics.max_inflight.set(limit)
        return limit

    def _ready(self) -> bool:
        return all(
            s in self.routes or (s in self._inline and self.variants.get(s) in self._inline[s]) for s in self.topo
        )

    async def _infer(self, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            body = await asyncio.wait_for(_read_body(request), BODY_TIMEOUT_S)
        except TimeoutError:
            self.metrics.bad_input.inc()
            return _error(408, f"request body not received within {BODY_TIMEOUT_S:g} s")
        except BodyRefused as e:
            self.metrics.bad_input.inc()
            return _error(e.status, str(e))
        try:
            req = decode_request(
                body,
                self.inputs,
                header_length=request.headers.get(HEADER_LENGTH),
                content_type=request.headers.get("content-type"),
                outputs=self.outputs,
            )
        except ProtocolError as e:
            self.metrics.bad_input.inc()
            return _error(400, str(e))
        items, rid = req.items, req.id
        self._arrivals[self._tick_arrivals()] += 1
        self.metrics.requests.labels("arrived").inc()
        if not self._ready():
            self._count("refused")
            return _error(503, "the pipeline is not ready yet", retry=True)
        limit = self._limit()
        if self.inflight >= limit:
            # Above what the configuration serves within the SLA: refuse now, keep the admitted ones fast.
            self._count("refused")
            return _error(503, f"at capacity ({limit} requests in flight); retry later", retry=True)
        rid_local = next(self._ids)
        self._started[rid_local] = time.monotonic()
        variants = dict(self.variants)  # a split stage's entry becomes the variant that served it
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self._walk(x, variants) for x in items)), timeout=max(0.0, self.drop_after_s)
            )
        except TimeoutError:
            self._count("dropped")
            return _error(504, f"dropped: not finished within {self.drop_after_s:g} s")
        except Exception as e:  # a model raised: the request failed, with the reason
            self._count("failed")
            return _error(500, f"failed: {type(e).__name__}: {e}")
        finally:
            del self._started[rid_local]
        dt = time.perf_counter() - t0
        outputs = {s: [r[s] for r in results] for s in self.sinks}
        try:  # encoded before it is counted: a response that cannot be sent is a failure, not a completion
            payload, headers = encode_response(
                self.name, outputs, rid, {"variants": variants, "e2e_s": dt}, request=req
            )
        except (TypeError, ValueError) as e:
            self._count("failed")
            return _error(500, f"failed: an output is not JSON-serialisable ({e})")
        self.metrics.e2e.observe(dt)
        self._count("completed", dt)  # late requests completed too; `late` counts the SLA misses among them
        self._window.completed(time.monotonic())
        if dt > self.sla_s:
            self._count("late")
        return Response(payload, headers=headers)

    def _handle(self, app: str) -> Any:
        h = self._handles.get(app)
        if h is None:
            h = self._handles[app] = serve.get_deployment_handle(STAGE_DEPLOYMENT, app_name=app)
        return h

    def _channel(self, stage: str, app: str | None = None) -> StageChannel:
        """The channel to `app`, one of `stage`'s serving generations (default: its route), made on first use."""
        app = app or self.routes[stage]
        ch = self._channels.get(app)
        if ch is None:
            handle = self._handle(app).options(method_name="predict_batch")

            async def send(items: list[Any]) -> tuple[list[Any], CallFacts]:
                # the variant the routes name for this application when the batch leaves (a warm group's
                # replicas serve whichever is named: a switch among them moves the items queued here too)
                return await handle.remote(items, self._variant_of(stage, app))

            ch = self._channels[app] = StageChannel(
                send, *self._channel_size(stage, app), stage=stage, retry_if=replica_lost
            )
        return ch

    def _variant_of(self, stage: str, app: str) -> str | None:
        """The variant the routes name for `app` (a stage's route or a split part's); None for one they left."""
        if self.routes.get(stage) == app:
            return self.variants.get(stage)
        part = self._part_configs.get(app)
        return None if part is None else str(part["variant"])

    async def _call(self, stage: str, item: Any, served: dict[str, str] | None = None) -> Any:
        """One item through `stage`; `served` records the variant that served it (the replica says which)."""
        variant = self.variants.get(stage, "")
        app = None
        if stage in self._splits:
            app, variant = self._splits[stage]()
        t0 = time.perf_counter()
        if stage in self._inline:
            out, _dt = predict_one(self._inline[stage][variant], item, f"{stage}/{variant}", self.model_cpu)
            batch, node = 1, "ingress"
        elif self.per_item_calls:
            out, batch, _service, node, variant = await self._handle(self.routes[stage]).remote(item, variant)
        else:
            out, (batch, _service, node, variant) = await self._channel(stage, app).submit(item)
        if served is not None:
            served[stage] = variant
        self.metrics.stage.labels(stage, variant).observe(time.perf_counter() - t0)
        self._nodes.setdefault(stage, set()).add(node)
        self.metrics.batch.labels(stage, variant).observe(batch)
        return out

    async def _walk(self, x: Any, served: dict[str, str] | None = None) -> dict[str, Any]:
        """One item through the DAG: branches run concurrently; a join waits for all its parents; an edge
        with multiplicity other than 1 fans a list output out into one item per element. `served`: per stage
        the variant that served (of a split stage, the part its last item went to)."""
        tasks: dict[str, asyncio.Task] = {}

        async def run(stage: str) -> list[Any]:
            ps = self.parents[stage]
            if not ps:
                ins = [x]
            else:
                outs = {p: await tasks[p] for p, _ in ps}
                if self.join[stage] and len(ps) > 1:
                    ins = [{p: (o[0] if len(o) == 1 else o) for p, o in outs.items()}]
                else:
                    ins = [it for p, m in ps for o in outs[p] for it in _fan_out(o, m)]
            return list(await asyncio.gather(*(self._call(stage, it, served) for it in ins)))

        for s in self.topo:
            tasks[s] = asyncio.ensure_future(run(s))
        try:
            done = {s: await tasks[s] for s in self.sinks}
        finally:
            for t in tasks.values():
                t.cancel()
        return {s: (o[0] if len(o) == 1 else o) for s, o in done.items()}


def _share_picker(parts: list[tuple[str, str]], shares: list[float]) -> Any:
    """A split stage's router: each call -> the (application, variant) of the part the next item goes to, by
    share (configs.ShareRouter: deterministic, every part within one item of its share)."""
    pick = ShareRouter(shares).pick
    return lambda: parts[pick()]


def _fan_out(output: Any, multiplicity: float) -> list[Any]:
    if multiplicity != 1 and isinstance(output, list):
        return output
    return [output]


class BodyRefused(Exception):
    """A request body refused before it was read whole: the HTTP status and the message naming why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_body(request: Request) -> bytes:
    """The request's body, refused (BodyRefused, 413) as soon as it is known to exceed MAX_BODY_BYTES:
    from Content-Length before reading, else while streaming, so an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BodyRefused(400, f"Content-Length header: {declared[:40]!r} is not a byte count")
        if int(declared) > MAX_BODY_BYTES:
            raise BodyRefused(
                413,
                f"request body is {int(declared)} bytes (Content-Length); the limit is {MAX_BODY_BYTES}: "
                "send fewer items",
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyRefused(413, f"request body exceeds {MAX_BODY_BYTES} bytes; send fewer items")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(status: int, body: dict) -> Response:
    return Response(jsonio.dumps(body).encode(), status_code=status, media_type="application/json")


def _error(status: int, message: str, retry: bool = False, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if retry:
        headers["Retry-After"] = RETRY_AFTER_S
    return Response(error_body(message), status_code=status, headers=headers, media_type="application/json")


def build_ingress(args: dict) -> Any:
    """Application builder for the ingress (`import_path: pipetune.serving.app:build_ingress`)."""
    # a Deployment at run time (see build_stage)
    return Ingress.bind(args["graph"], args.get("front"))  # type: ignore[attr-defined]
