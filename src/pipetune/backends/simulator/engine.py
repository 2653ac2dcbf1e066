"""The discrete-event simulator: the pipeline's digital twin, driven through the `Backend` interface.

Model (one paragraph per mechanism; docs/simulator.md has the rationale)
------------------------------------------------------------------------
* **Arrivals** are given as sorted timestamps (from `pipetune.workloads.arrival_times` or any array). Request i
  arrives at `arrivals[i]` and puts one item into every source stage it carries (share < 1: drawn).
* **Flow**: an item leaving stage a sends `multiplicity` items to each child b (a fractional multiplicity m
  sends floor(m) or floor(m)+1 with the right mean). A `join` fan-in stage waits until no item of the request
  is left in any of its ancestor stages, then processes ONE item for the request; a `merge` fan-in processes
  each arriving item. A request completes when its last item anywhere completes.
* **Stage**: one central FIFO queue. A free, ready replica takes up to its batch size of items; with a batch
  wait w > 0 it waits until the batch is full or the oldest item has waited w (default w = 0: work
  conserving, the replica takes what is there). The batch's service time is drawn from the profile of the
  REALISED batch size k (not the configured maximum), from a shifted gamma matching the row's mean, p50 and
  p99 (service.py). Each (stage, variant, cores, k) has its own seeded random stream, so two policies that
  pick the same option see the same service times (common random numbers).
* **Drops**: when a replica takes an item whose request has been in the system longer than `drop_limit_s`
  (default: the SLA), the whole request is dropped (its other items are discarded when they are reached).
  A request is **failed** when one of its items reaches a stage that has no replica ready or loading (a
  guard: every stage keeps at least one replica, since `replicas` >= 1 is part of the Backend contract).
* **Admission** (optional, `admission=True`; the live ingress's rule, `pipetune.admission`): an arriving
  request is **refused** when the requests in flight reach the limit: the profile's (capacity of what serves x
  SLA) and, while the pipeline is behind, the one measured from recent completions, never below what the
  replicas hold in service. With admission on, an admitted request is dropped at its deadline
  (`drop_limit_s` after arrival) as the live ingress drops it, not when a replica next reaches it.
* **Reconfiguration** (`apply`): same variant and cores -> resize in place (new replicas load for the
  variant's `load_time_s`; removed replicas: loading ones are cancelled, idle ones retire at once, busy ones
  drain their batch). New variant or cores -> make-before-break: a new generation loads while the old one
  keeps serving; new replicas serve as soon as each is ready and the old generation drains once the last new
  one is ready. Batch-size changes apply at once to the generation they name. Every replica's cores count
  from the moment it is asked for until it retires (loading and draining included).
* **Shared host** (optional, `host_cores`; host.py): every replica of every stage shares `host_cores` physical
  cores by processor sharing. A batch in service demands its replica's cores; with `host_overhead_s` > 0 each
  request first runs that much CPU work at 1 core (the ingress and proxy) before entering its source stages.
  When the demand D of everything in service exceeds `host_cores`, every job progresses at host_cores / D (a
  drawn service time is the work at full speed). `host_hop_s` adds that much work per item to each batch (a
  replica's CPU outside its model: receiving, scheduling and answering the handle call) and `host_call_s` that
  much per batch (per call), except for the (stage, variant) pairs in `host_inline` (run in the ingress process:
  runtime_profile.py); `host_side_s` runs that
  much 1-core work per request beside its path (a load generator, the engine's control plane); with `host_load_cores`
  > 0 a loading replica is a job of that demand whose work is its `load_time_s`, ready when the job is done (a
  contended host loads slower, and a load slows everything else). Cores held (cost) are unchanged. None: no
  sharing.

Hot path: heapq of plain tuples (time, seq, kind, stage, replica, batch), arrivals merged from a sorted list
without touching the heap, per-stage deques, per-request state in flat Python lists, random numbers pre-drawn
in numpy blocks. Deterministic for a seed: every tie is broken by a sequence number.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
import zlib
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipetune.admission import AdmissionWindow, profile_admission, service_floor
from pipetune.backends.base import Backend, Observation, config_problem, status_from_effect
from pipetune.backends.simulator.host import SharedHost
from pipetune.backends.simulator.service import ServiceDist, deterministic, exponential, fit_shifted_gamma
from pipetune.configs import ShareRouter, SplitConfig, StageConfig, StageStatus, parts_of
from pipetune.errors import PipetuneError
from pipetune.metrics import COMPLETED, DROPPED, FAILED, PENDING, REFUSED
from pipetune.spec import warm_group_of

LOADING, READY, DRAINING, RETIRED = 0, 1, 2, 3
_EV_DONE, _EV_READY, _EV_TIMER, _EV_HOST = 0, 1, 2, 3
_BLOCK = 1 << 16
INF = math.inf


class SimulatorError(PipetuneError):
    """A simulator setting or configuration is invalid; the message names it and the fix."""


# The settings that charge CPU on a shared host (each needs host_cores), with their units.
HOST_CPU_KNOBS = {
    "host_overhead_s": "CPU-seconds per request",
    "host_hop_s": "CPU-seconds per item",
    "host_call_s": "CPU-seconds per call (batch)",
    "host_side_s": "CPU-seconds per request",
    "host_load_cores": "cores per loading replica",
}


@dataclass
class SimSettings:
    """Knobs of the simulated runtime (not of the pipeline)."""

    seed: int = 0
    drop_limit_s: float | None = None  # a request waiting longer is dropped; None = the pipeline's SLA
    batch_wait_s: float | None = None  # None = caps.max_batch_wait_s, or 0 (work conserving) when unset
    service: str = "profile"  # profile (shifted gamma fitted to the row: service.py) | deterministic | exponential
    load_time_s: float | None = None  # override every variant's start-up time (None = the profile's)
    # Shared host (host.py, docs/simulator.md "Shared host"): the physical cores every replica of every stage
    # shares, by processor sharing. None = each replica has its own cores (no sharing).
    host_cores: float | None = None
    host_overhead_s: float = 0.0  # CPU-seconds each request costs on the host outside the models (ingress, proxy)
    host_hop_s: float = 0.0  # CPU-seconds each item costs its stage's replica outside the model (the handle hop)
    host_call_s: float = 0.0  # CPU-seconds each call (one batch) costs outside the model, on top of its items
    # (stage, variant) pairs the runtime runs in its ingress process: their batches pay no call or item hop
    host_inline: frozenset[tuple[str, str]] = frozenset()
    host_side_s: float = 0.0  # CPU-seconds per request spent on the host beside its path (load generator, control)
    host_load_cores: float = 0.0  # cores a loading replica keeps busy on the host (0: loading is only a delay)
    # seconds a new replica takes before its model loads (a worker process starting), added to its load time
    replica_start_s: float = 0.0
    # a loading replica's CPU weight beside a serving one's (1: equal; the live runtime starts replicas at a lower
    # priority: runtime_profile.LOADING_CPU_WEIGHT)
    host_load_weight: float = 1.0
    # Refuse arrivals at the ingress as the live runtime does (pipetune.admission); False admits everything.
    admission: bool = False

    def __post_init__(self) -> None:
        if self.service not in ("profile", "deterministic", "exponential"):
            raise SimulatorError(
                f"service={self.service!r} is not a service-time model; use profile, deterministic or exponential"
            )
        if not (0 < self.host_load_weight <= 1):
            raise SimulatorError(f"host_load_weight={self.host_load_weight} must be in (0, 1] (1: equal priority)")
        if not (self.replica_start_s >= 0 and math.isfinite(self.replica_start_s)):
            raise SimulatorError(f"replica_start_s={self.replica_start_s} must be a finite number of seconds >= 0")
        for name in ("drop_limit_s", "batch_wait_s", "load_time_s"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and not math.isnan(v)):
                raise SimulatorError(f"{name}={v} must be >= 0 seconds (or omitted for the default)")
        h = self.host_cores
        if h is not None and not (isinstance(h, numbers.Real) and math.isfinite(h) and h > 0):
            raise SimulatorError(
                f"host_cores={h!r} must be a finite number of physical cores > 0 (or None: each replica has its own)"
            )
        pairs = self.host_inline
        if isinstance(pairs, (str, bytes)) or not all(
            isinstance(x, tuple) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in pairs
        ):
            raise SimulatorError(
                f"host_inline={pairs!r} must be a set of (stage, variant) pairs (host.host_settings builds it)"
            )
        self.host_inline = frozenset(pairs)
        for name, unit in HOST_CPU_KNOBS.items():
            o = getattr(self, name)
            if not (isinstance(o, numbers.Real) and math.isfinite(o) and float(o) >= 0):
                raise SimulatorError(f"{name}={o!r} must be >= 0 {unit} (0: none)")
            if float(o) > 0 and h is None:
                raise SimulatorError(f"{name}={o!r} is CPU on the shared host: set host_cores too (or {name}=0)")


def _stream(rng: np.random.Generator, kind: str, shape: float = 1.0, block: int = _BLOCK):
    """An endless iterator of pre-drawn numbers (one numpy call per `block` draws)."""
    while True:
        if kind == "uniform":
            yield from rng.random(block).tolist()
        elif shape == 1.0:
            yield from rng.standard_exponential(block).tolist()
        else:
            yield from rng.standard_gamma(shape, block).tolist()


def _ones():
    return itertools.repeat(1.0).__next__


class _Replica:
    __slots__ = ("state", "gen", "batch", "dists", "acc", "cores", "busy")

    def __init__(self, gen: _Generation, state: int):
        self.state = state
        self.gen = gen
        self.batch = gen.batch
        self.dists = gen.dists
        self.acc = gen.acc
        self.cores = gen.cores
        self.busy = False


@dataclass(eq=False)
class _Generation:
    """Replicas of one (variant, cores) choice of a stage."""

    variant: str
    cores: int
    batch: int
    acc: float
    dists: list  # index k -> (shift, scale, draw, ServiceDist) for a realised batch of k items
    load_time_s: float
    replicas: list = field(default_factory=list)
    loading: int = 0
    # run in the ingress process (SimSettings.host_inline): every variant is loaded there from the start, so a
    # switch takes no load, and its replicas hold no cores of their own (the ingress's are counted apart)
    inline: bool = False
    # the stage's warm group (`spec.WARM_GROUP`) when its replicas hold every warm variant, else None (one
    # variant's: a cold variant, or a split's part, which never uses warm grouping)
    group: str | None = None

    @property
    def held_cores(self) -> int:
        return 0 if self.inline else self.cores

    def live(self) -> list[_Replica]:
        return [r for r in self.replicas if r.state in (LOADING, READY)]


@dataclass
class SimResult:
    """Everything a run produced, as arrays (one entry per request) and logs, for `pipetune.metrics`."""

    arrival_s: np.ndarray
    finish_s: np.ndarray  # completion, drop or failure time
    status: np.ndarray  # 1 completed, 2 dropped, 3 failed, 4 refused (never 0 after close())
    pas: np.ndarray  # product of the served stages' accuracies (completed requests)
    norm_acc: np.ndarray  # mean over stages of min-max normalised accuracy, in [0, 1]
    cost_t: np.ndarray  # times at which the cores held changed ...
    cost_cores: np.ndarray  # ... and the cores held from then on
    events: list[dict]  # reconfiguration log: apply / ready / switch / drained
    sla_s: float
    horizon_s: float


class Simulator(Backend):
    """Discrete-event simulation of a pipeline under a configuration that the adapter may change."""

    def __init__(
        self,
        pipeline,
        profiles,
        arrivals,
        initial: dict[str, StageConfig],
        settings: SimSettings | None = None,
        record_batches: bool = False,
    ):
        self.pipeline = pipeline
        self.profiles = profiles
        self.settings = s = settings or SimSettings()
        arr = np.asarray(arrivals, dtype=float)
        if arr.ndim != 1:
            raise SimulatorError("arrivals must be a 1-D array of timestamps in seconds")
        if arr.size and (not np.all(np.isfinite(arr)) or arr[0] < 0 or np.any(np.diff(arr) < 0)):
            raise SimulatorError("arrivals must be finite, >= 0 and sorted ascending (use np.sort)")
        self.sla_s = float(pipeline.sla.seconds)
        self.drop_s = float(s.drop_limit_s) if s.drop_limit_s is not None else self.sla_s
        if s.batch_wait_s is not None:
            self.wait_s = float(s.batch_wait_s)
        else:
            self.wait_s = float(pipeline.caps.max_batch_wait_s or 0.0)
        self._unext = _stream(np.random.default_rng([s.seed, 1]), "uniform").__next__

        # ---- graph, flattened to indices --------------------------------------------------------------
        self.names = names = pipeline.topological_order()
        idx = {n: i for i, n in enumerate(names)}
        self._idx = idx
        S = len(names)
        self._acc_of = {(st.name, v.name): v.accuracy for st in pipeline.stages for v in st.variants}
        # per stage its warm variants (`Stage.warm_variants`): every replica holds them loaded, so a switch among
        # them on the same cores is in place, as live (`serving.config.generation_key`)
        self._warm = {st.name: list(st.warm_variants) for st in pipeline.stages}
        self._acc_range = []
        for n in names:
            accs = [v.accuracy for v in pipeline.stage(n).variants]
            self._acc_range.append((min(accs), max(accs)))
        joins = [i for i, n in enumerate(names) if len(pipeline.parents(n)) > 1 and pipeline.stage(n).fan_in == "join"]
        is_join = [i in joins for i in range(S)]
        self._children = []
        for n in names:
            kids = []
            for e in pipeline.children(n):
                m = float(e.multiplicity)
                kids.append((idx[e.dst], int(m), m - int(m), is_join[idx[e.dst]]))
            self._children.append(kids)
        ancestors = {i: self._ancestors(names[i]) for i in joins}
        self._join_watch = [[j for j in joins if names[i] in ancestors[j]] for i in range(S)]
        self._anc: dict[int, dict[int, int]] = {
            j: {} for j in joins
        }  # join -> {rid: items of rid still in the join's ancestors}
        self._jarr: dict[int, dict[int, int]] = {j: {} for j in joins}  # join -> {rid: items arrived from parents}
        shares = pipeline.source_shares()
        self._sources = [(idx[n], float(shares[n])) for n in names if n in shares]

        # ---- per-request state ----------------------------------------------------------------------
        N = arr.size
        self._arr = arr.tolist()
        self._N = N
        self._ai = 0
        self.status = [PENDING] * N
        self.finish = [0.0] * N
        self.live = [0] * N
        self.acc_sum = [[0.0] * N for _ in range(S)]
        self.acc_n = [[0] * N for _ in range(S)]
        self._done_log: list[int] = []
        self._obs_ptr = 0
        self._obs_t = 0.0
        self._per_second = np.bincount(arr.astype(np.int64)) if N else np.zeros(0, np.int64)

        # ---- per-lane state ---------------------------------------------------------------------------
        # A lane is one part of a stage: its own queue, replicas and generations. A stage has caps.mix_variants
        # lanes: lane s (= the stage's index) and, where a stage may split its load over k variants, k - 1 more
        # after the S stages. Items reach a stage and its router sends each to one lane by the parts' shares.
        k = max(1, int(pipeline.caps.mix_variants))
        self._k = k
        L = S * k
        self._lanes = [[s] + [S + s * (k - 1) + j for j in range(k - 1)] for s in range(S)]
        self._stage_of = list(range(S)) + [s for s in range(S) for _ in range(k - 1)]
        self._lane_names = [names[s] for s in self._stage_of]
        self._share = [1.0] * S + [0.0] * (L - S)  # each lane's share of its stage's load (0: unused)
        self._leaving = [False] * L  # a part dropped from its stage: it serves its share until the new ones do
        self._router: list = [None] * S  # per stage: None (every item to lane s) or a function -> the item's lane
        self._children = [self._children[st] for st in self._stage_of]
        self._join_watch = [self._join_watch[st] for st in self._stage_of]
        self._kid_lanes = [[lane for c, *_ in kids for lane in self._lanes[c]] for kids in self._children]
        self._watch_lanes = [[lane for j in w for lane in self._lanes[j]] for w in self._join_watch]
        self.queues: list[deque[int]] = [deque() for _ in range(L)]
        self.qtimes: list[deque[float]] = [
            deque() for _ in range(L)
        ]  # enqueue times, kept only when a batch wait needs them
        self._track_qt = self.wait_s > 0
        self.idle: list[list[_Replica]] = [[] for _ in range(L)]
        self.capacity = [0] * L  # replicas LOADING or READY (will take work)
        self.in_service = [0] * L  # items in batches being served (what `ongoing` adds to the queues)
        self.active: list[_Generation | None] = [None] * L
        self.pending: list[_Generation | None] = [None] * L
        self._timer_set = [False] * L
        self._dist_cache: dict[tuple[str, str, int], list] = {}

        self._heap: list = []
        self._seq = itertools.count()
        self._now = 0.0
        self._cores = 0.0
        self.cost_t: list[float] = [0.0]
        self.cost_cores: list[float] = [0.0]
        self.events: list[dict] = []
        self._closed = False
        # Optional audit trail (tests, debugging): one (start, stage, variant, replica state, replica id, k,
        # service) tuple per batch started. None keeps the hot path free of it.
        self.batch_log: list | None = [] if record_batches else None
        # Shared host (host.py): every batch in service and every request's overhead share host_cores.
        self.host: SharedHost | None = None
        self._overhead_s = float(s.host_overhead_s)
        if s.host_cores is not None:
            self.host = SharedHost(
                s.host_cores, self._heap, self._seq, _EV_HOST, _EV_DONE, _EV_READY, self._admit, s.host_load_weight
            )
        self._load_cores = float(s.host_load_cores) if self.host is not None else 0.0
        self._dispatch = self._make_dispatch()
        # Admission (pipetune.admission): admitted requests in arrival order (the front is the oldest in flight),
        # how far the completion log has been read into the measured rate, and the profile's limit and floor of
        # what serves (recomputed when the configuration changes).
        self._admission = bool(s.admission)
        self._adm_window = AdmissionWindow(self.sla_s)
        self._admitted: deque[int] = deque()
        self._adm_read = 0
        self._adm_limits: tuple[int, int] | None = None

        missing = [n for n in names if n not in initial]
        if missing:
            raise SimulatorError(f"initial configuration has no entry for stages {missing}; give one per stage")
        for n in names:  # the run starts warm: the initial replicas are loaded before t = 0
            cfg = self._check_config(n, initial[n])
            for (part, share), lane in zip(parts_of(cfg), self._lanes[idx[n]]):
                gen = self._new_generation(lane, part, len(parts_of(cfg)) > 1)
                for _ in range(part.replicas):
                    self._add_replica(lane, gen, READY)
                self.active[lane], self._share[lane] = gen, share
            self._reroute(idx[n], 0.0)
        self._requested: dict[str, StageConfig] = {n: initial[n] for n in names}  # the last request per stage
        self._refused: dict[str, str] = {}  # stage -> why its last request was refused
        self.events.append({"t": 0.0, "event": "initial", "configs": {n: initial[n].to_dict() for n in names}})

    # ------------------------------------------------------------------ helpers
    def _ancestors(self, name: str) -> set[str]:
        out, stack = set(), [e.src for e in self.pipeline.parents(name)]
        while stack:
            n = stack.pop()
            if n not in out:
                out.add(n)
                stack.extend(e.src for e in self.pipeline.parents(n))
        return out

    def _check_config(self, stage: str, cfg: StageConfig) -> StageConfig:
        why = config_problem(self.pipeline, stage, cfg)
        if why:
            raise SimulatorError(f"stage {stage!r}: {why}")
        return cfg

    def _dists(self, stage: str, variant: str, cores: int, batch: int) -> list:
        key = (stage, variant, cores)
        table = self._dist_cache.get(key)
        if table is None or len(table) <= batch:
            vp = self.profiles.get(stage, variant)
            table = table or [None]
            for k in range(len(table), max(batch, 8) + 1):
                row = vp.row(k, cores)
                mode = self.settings.service
                if mode == "deterministic":
                    d = deterministic(row.latency_mean_s)
                elif mode == "exponential":
                    d = exponential(row.latency_mean_s)
                else:
                    d = fit_shifted_gamma(row.latency_mean_s, row.latency_p50_s, row.latency_p99_s)
                if d.deterministic:
                    draw = _ones()
                else:
                    tag = zlib.crc32(f"{stage}|{variant}|{cores}|{k}".encode())
                    rng = np.random.default_rng([self.settings.seed, 2, tag])
                    draw = _stream(rng, "gamma", d.shape, block=4096).__next__
                table.append((d.shift, d.scale, draw, d))
            self._dist_cache[key] = table
        return table

    def service_dist(self, stage: str, variant: str, cores: int, k: int) -> ServiceDist:
        """The distribution a batch of k items is served from (for docs, tests and calibration)."""
        return self._dists(stage, variant, cores, k)[k][3]

    def _same_generation(self, s: int, gen: _Generation | None, cfg: StageConfig, split: bool) -> bool:
        """Whether lane s's `gen` serves `cfg` in place: the same variant and cores, or (a one-variant
        configuration) two of the stage's warm variants on the same cores."""
        if gen is None or gen.cores != cfg.cores:
            return False
        # keyed as live (`serving.config.generation_key`): a warm group's generation serves any of its variants,
        # one variant's only that one (a split's part and a warm generation of the same variant are two)
        group = self._group(s, cfg.variant, split)
        return gen.group == group if group is not None or gen.group is not None else gen.variant == cfg.variant

    def _group(self, s: int, variant: str, split: bool) -> str | None:
        """The warm group a generation of lane s serving `variant` is (None: that variant's alone)."""
        return None if split else warm_group_of(self._warm[self._lane_names[s]], variant)

    def _switch_variant(self, s: int, gen: _Generation, variant: str) -> None:
        """A warm generation serves `variant` from now on: batches that start from now on are its (the replicas
        hold it loaded); a batch in service finishes as it started."""
        n = self._lane_names[s]
        self.events.append(
            {"t": self._now, "event": "warm-switch", "stage": n, "variant": variant, "from": gen.variant}
        )
        gen.variant, gen.acc = variant, self._acc_of[(n, variant)]
        gen.dists = self._dists(n, variant, gen.cores, gen.batch)
        for r in gen.replicas:  # the next batch draws from the new variant; a busy one's ends with its own
            r.dists = gen.dists
            if not r.busy:
                r.acc = gen.acc
        self._adm_limits = None

    def _new_generation(self, s: int, cfg: StageConfig, split: bool = False) -> _Generation:
        n = self._lane_names[s]
        inline = (n, cfg.variant) in self.settings.host_inline
        load = self.settings.load_time_s
        group = self._group(s, cfg.variant, split)
        if load is None and group is not None:  # each replica loads every warm variant, one after another
            load = sum(self.profiles.get(n, v).load_time_s for v in self._warm[n])
        elif load is None:
            load = self.profiles.get(n, cfg.variant).load_time_s
        return _Generation(
            variant=cfg.variant,
            cores=cfg.cores,
            batch=cfg.batch,
            acc=self._acc_of[(n, cfg.variant)],
            dists=self._dists(n, cfg.variant, cfg.cores, cfg.batch),
            load_time_s=0.0 if inline else float(load) + self.settings.replica_start_s,
            inline=inline,
            group=group,
        )

    def _cores_changed(self, t: float, delta: float) -> None:
        self._cores += delta
        if self.cost_t[-1] == t:
            self.cost_cores[-1] = self._cores
        else:
            self.cost_t.append(t)
            self.cost_cores.append(self._cores)

    def _add_replica(self, s: int, gen: _Generation, state: int) -> _Replica:
        r = _Replica(gen, state)
        gen.replicas.append(r)
        self.capacity[s] += 1
        self._cores_changed(self._now, gen.held_cores)
        if state == READY:
            self.idle[s].append(r)
        else:
            gen.loading += 1
            if self._load_cores > 0:  # the load is CPU work on the shared host: slowed by, and slowing, the rest
                self.host.start(self._now, gen.load_time_s, self._load_cores, -2 - s, r, None)  # type: ignore[union-attr]
            else:
                heapq.heappush(self._heap, (self._now + gen.load_time_s, next(self._seq), _EV_READY, s, r, None))
        return r

    def _retire(self, s: int, r: _Replica, t: float) -> None:
        if r.state in (LOADING, READY):
            self.capacity[s] -= 1
        if r.state == LOADING:
            r.gen.loading -= 1
            if self._load_cores > 0:  # a cancelled load stops using the host
                self.host.cancel(t, r)  # type: ignore[union-attr]
        if r.state == READY and not r.busy:
            self.idle[s].remove(r)
        r.state = RETIRED
        r.gen.replicas.remove(r)
        self._cores_changed(t, -r.gen.held_cores)

    def _release(self, s: int, r: _Replica, t: float) -> None:
        """Take a replica out of service: at once if loading or idle, after its batch if busy."""
        if r.state == READY and r.busy:
            r.state = DRAINING
            self.capacity[s] -= 1
        elif r.state in (LOADING, READY):
            self._retire(s, r, t)

    def _resize(self, s: int, gen: _Generation, n: int) -> None:
        live = gen.live()
        if n > len(live):
            for _ in range(n - len(live)):
                self._add_replica(s, gen, LOADING)
            return
        # Remove the least useful first: loading, then idle, then busy (drained).
        order = sorted(live, key=lambda r: (r.state == READY, r.busy))
        for r in order[: len(live) - n]:
            self._release(s, r, self._now)

    def _promote(self, s: int, t: float) -> None:
        new, old = self.pending[s], self.active[s]
        assert new is not None, "promoted a stage without a pending generation"  # every caller checks first
        if old is not None:
            for r in list(old.replicas):
                self._release(s, r, t)
        self.active[s], self.pending[s] = new, None
        self._adm_limits = None
        self.events.append(
            {
                "t": t,
                "event": "switch",
                "stage": self._lane_names[s],
                "variant": new.variant,
                "cores": new.cores,
                "from": old.variant if old else None,
            }
        )
        self._reroute(self._stage_of[s], t)

    # ------------------------------------------------------------------ Backend interface
    def now(self) -> float:
        return self._now

    def apply(self, configs: dict[str, StageConfig]) -> dict[str, StageStatus]:
        unknown = sorted(set(configs) - set(self._idx))
        if unknown:
            raise SimulatorError(f"configuration names unknown stages {unknown}; known stages: {self.names}")
        accepted = {}
        for name, cfg in configs.items():
            s = self._idx[name]
            try:
                self._check_config(name, cfg)
            except SimulatorError as e:  # refused: the previous configuration keeps serving
                self._requested[name], self._refused[name] = cfg, str(e)
                continue
            self._requested[name] = accepted[name] = cfg
            self._refused.pop(name, None)
            self._apply_stage(s, cfg)
        self._adm_limits = None
        self.events.append({"t": self._now, "event": "apply", "configs": {n: c.to_dict() for n, c in accepted.items()}})
        for name, reason in self._refused.items():
            if name in configs:
                self.events.append({"t": self._now, "event": "refused", "stage": name, "reason": reason})
        status = self.stage_status()
        return {n: status[n] for n in configs}

    def _apply_stage(self, s: int, cfg: StageConfig) -> None:
        """Stage s serves `cfg` from now on: each part goes to the lane already serving (or loading) its variant,
        else to an empty lane, else to a leaving one; each lane changes as a stage always did (in place, or
        make-before-break for a new variant or cores). A lane no part takes leaves: it keeps serving its share
        until every new part serves (`_reroute`)."""
        parts = parts_of(cfg)
        split = len(parts) > 1
        free = list(self._lanes[s])
        lane_of: dict[int, int] = {}
        for gens in (self.active, self.pending):
            for i, (c, _) in enumerate(parts):
                match = [lane for lane in free if i not in lane_of and gens[lane] is not None]
                match = [lane for lane in match if self._same_generation(lane, gens[lane], c, split)]
                if match:
                    lane_of[i] = match[0]
                    free.remove(match[0])
        for i in range(len(parts)):
            if i not in lane_of:
                lane = min(free, key=lambda x: (self.active[x] is not None, self.pending[x] is not None))
                lane_of[i] = lane
                free.remove(lane)
        for i, lane in lane_of.items():
            c, share = parts[i]
            self._leaving[lane], self._share[lane] = False, share
            self._apply_lane(lane, c, split)
        for lane in free:
            pen = self.pending[lane]
            if pen is not None:
                self._cancel(lane, pen)
            if self.active[lane] is not None:
                self._leaving[lane] = True
            else:
                self._share[lane] = 0.0
        self._reroute(s, self._now)
        for lane in self._lanes[s]:
            self._dispatch(lane, self._now)

    def _cancel(self, s: int, pen: _Generation) -> None:
        for r in list(pen.replicas):
            self._release(s, r, self._now)
        self.pending[s] = None
        self.events.append({"t": self._now, "event": "cancel", "stage": self._lane_names[s], "variant": pen.variant})

    def _apply_lane(self, s: int, cfg: StageConfig, split: bool = False) -> None:
        """Lane s serves the one-variant `cfg`: in place for the same variant and cores (or, `cfg` not a split's
        part, another of the stage's warm variants on the same cores), else make-before-break."""
        act, pen = self.active[s], self.pending[s]
        if act is not None and self._same_generation(s, act, cfg, split):
            if pen is not None:  # going back to what serves: cancel the half-loaded generation
                self._cancel(s, pen)
            if act.variant != cfg.variant:
                self._switch_variant(s, act, cfg.variant)
            self._set_batch(s, act, cfg.batch)
            self._resize(s, act, cfg.replicas)
        elif pen is not None and self._same_generation(s, pen, cfg, split):
            if pen.variant != cfg.variant:
                self._switch_variant(s, pen, cfg.variant)
            self._set_batch(s, pen, cfg.batch)
            self._resize(s, pen, cfg.replicas)
            # an incoming generation takes the traffic once every replica asked for is ready, as live (Ray Serve
            # reports an application RUNNING once every replica runs)
            if pen.loading == 0 and pen.live():
                self._promote(s, self._now)
        else:
            if pen is not None:
                self._cancel(s, pen)
            if act is not None:  # the serving generation keeps what serves; its loads give way to the new one
                for r in [r for r in act.replicas if r.state == LOADING]:
                    self._release(s, r, self._now)
            gen = self._new_generation(s, cfg, split)
            self.pending[s] = gen
            for _ in range(cfg.replicas):
                self._add_replica(s, gen, LOADING)

    def _reroute(self, s: int, t: float) -> None:
        """Stage s's router from its lanes' shares: only lanes whose generation serves take items (a new part
        takes its share once ready: make-before-break), and parts that left keep theirs until every new part
        serves; then they drain (busy replicas finish their batch) and their queued items move to the others."""
        lanes = self._lanes[s]
        gone = []
        if all(self.pending[lane] is None for lane in lanes if not self._leaving[lane]):
            for lane in lanes:
                if self._leaving[lane]:
                    g = self.active[lane]
                    assert g is not None, "a leaving part is one that serves"
                    for r in list(g.replicas):
                        self._release(lane, r, t)
                    self.active[lane], self._leaving[lane], self._share[lane] = None, False, 0.0
                    self.events.append({"t": t, "event": "part-removed", "stage": self.names[s], "variant": g.variant})
                    gone.append(lane)
        serving = [(lane, self._share[lane]) for lane in lanes if self.active[lane] is not None and self._share[lane]]
        if len(serving) == 1 and serving[0][0] == s:
            self._router[s] = None
        else:
            total = sum(f for _, f in serving)
            pick = ShareRouter([f / total for _, f in serving]).pick
            order = [lane for lane, _ in serving]
            self._router[s] = lambda: order[pick()]
        self._adm_limits = None
        for lane in gone:  # items queued on a part that left: to the parts that serve, by share
            q, qt = self.queues[lane], self.qtimes[lane]
            while q:
                dst = self._router[s]() if self._router[s] is not None else s
                self.queues[dst].append(q.popleft())
                if self._track_qt:
                    self.qtimes[dst].append(qt.popleft())
            for dst in lanes:
                if self.queues[dst]:
                    self._dispatch(dst, t)

    def stage_status(self) -> dict[str, StageStatus]:
        serving = self.in_effect()
        return {n: status_from_effect(self._requested[n], serving[n], self._refused.get(n)) for n in self.names}

    def _set_batch(self, s: int, gen: _Generation, batch: int) -> None:
        if batch != gen.batch:
            gen.batch = batch
            gen.dists = self._dists(self._lane_names[s], gen.variant, gen.cores, batch)
            for r in gen.replicas:
                r.batch, r.dists = batch, gen.dists

    def _serving(self, s: int, live: bool = False) -> StageConfig:
        """What stage s serves: the generation of each lane that takes items, with its READY replicas (`live`:
        its loading ones too), one StageConfig or a SplitConfig of the parts at the shares they are routed."""
        lanes = [lane for lane in self._lanes[s] if self.active[lane] is not None and self._share[lane]]
        assert lanes, "every stage has a serving generation from the start"  # replicas >= 1 keeps it so
        total = sum(self._share[lane] for lane in lanes)
        parts = []
        for lane in lanes:
            g = self.active[lane]
            assert g is not None
            n = len(g.live()) if live else sum(1 for r in g.replicas if r.state == READY)
            share = self._share[lane] if abs(total - 1.0) <= 1e-9 else round(self._share[lane] / total, 12)
            parts.append((StageConfig(g.variant, g.batch, g.cores, n), share))
        return SplitConfig.of(parts)

    def in_effect(self) -> dict[str, StageConfig]:
        return {n: self._serving(s) for s, n in enumerate(self.names)}

    def cores_held(self) -> float:
        return self._cores

    def replicas_ready(self) -> dict[str, int]:
        return {
            n: sum(
                len(self.idle[lane])
                + sum(
                    1
                    for g in (self.active[lane], self.pending[lane])
                    if g
                    for r in g.replicas
                    if r.state == READY and r.busy
                )
                for lane in self._lanes[s]
            )
            for s, n in enumerate(self.names)
        }

    def ongoing(self) -> dict[str, int]:
        """Per stage, the items queued or in service now (Ray Serve's "ongoing requests" of a deployment: what a
        reactive autoscaler observes; the queue also holds items of requests dropped but not yet reached)."""
        return {
            n: sum(len(self.queues[lane]) + self.in_service[lane] for lane in self._lanes[s])
            for s, n in enumerate(self.names)
        }

    def observe(self) -> Observation:
        now = self._now
        new = self._done_log[self._obs_ptr :]
        self._obs_ptr = len(self._done_log)
        st = self.status
        comp = [i for i in new if st[i] == COMPLETED]
        lat = np.array([self.finish[i] - self._arr[i] for i in comp], dtype=float)
        late = int(np.sum(lat > self.sla_s))
        obs = Observation(
            now=now,
            since=self._obs_t,
            arrivals_per_s=self._arrivals_upto(int(now)),
            completed=len(comp),
            refused=sum(1 for i in new if st[i] == REFUSED),
            dropped=sum(1 for i in new if st[i] == DROPPED),
            failed=sum(1 for i in new if st[i] == FAILED),
            late=late,
            latencies_s=lat,
            inflight=self._ai - len(self._done_log),  # arrived, not yet answered
            in_effect=self.in_effect(),
            replicas_ready=self.replicas_ready(),
            cores_held=self._cores,
        )
        self._obs_t = now
        return obs

    def _arrivals_upto(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int64)
        m = min(n, self._per_second.size)
        out[:m] = self._per_second[:m]
        return out

    # ------------------------------------------------------------------ the event loop
    def _make_dispatch(self):
        queues, qtimes, idle, heap = self.queues, self.qtimes, self.idle, self._heap
        status, arrival, finish, done_log = self.status, self._arr, self.finish, self._done_log
        timer_set, seq = self._timer_set, self._seq
        hpush = heapq.heappush
        wait_s, drop_s = self.wait_s, self.drop_s
        blog = self.batch_log
        track = self._track_qt
        hstart = self.host.start if self.host is not None else None
        hop = float(self.settings.host_hop_s)
        call = float(self.settings.host_call_s)
        inline = {(s, v) for s, v in self.settings.host_inline}
        names = self._lane_names
        in_service = self.in_service

        def dispatch(s: int, now: float) -> None:
            q = queues[s]
            free = idle[s]
            while free and q:
                rep = free[-1]
                b = rep.batch
                qt = qtimes[s]
                if wait_s > 0 and len(q) < b and now < qt[0] + wait_s:  # the timer's own expression: no float gap
                    if not timer_set[s]:
                        timer_set[s] = True
                        hpush(heap, (qt[0] + wait_s, next(seq), _EV_TIMER, s, None, None))
                    return
                free.pop()
                batch: list[int] = []
                while q and len(batch) < b:
                    rid = q.popleft()
                    if track:
                        qt.popleft()
                    if status[rid]:
                        continue
                    if now - arrival[rid] > drop_s:
                        status[rid] = DROPPED
                        finish[rid] = now
                        done_log.append(rid)
                        continue
                    batch.append(rid)
                if not batch:
                    free.append(rep)
                    continue
                sh, sc, draw, _ = rep.dists[len(batch)]
                svc = sh + sc * draw()
                if blog is not None:
                    blog.append((now, s, rep.gen.variant, rep.state, id(rep), len(batch), svc))
                rep.busy = True
                in_service[s] += len(batch)
                if hstart is None:
                    hpush(heap, (now + svc, next(seq), _EV_DONE, s, rep, batch))
                else:  # shared host: svc is the work at full speed; the host schedules the completion
                    if (hop or call) and (names[s], rep.gen.variant) not in inline:
                        svc = svc + (call + hop * len(batch) if call else hop * len(batch))
                    hstart(now, svc, rep.cores, s, rep, batch)

        return dispatch

    def _enqueue(self, c: int, rid: int, n: int, t: float) -> bool:
        """`n` items of request `rid` reach stage c at `t`: each to the lane its router picks (a split stage)."""
        pick = self._router[c]
        if pick is None:
            return self._enqueue_lane(c, c, rid, n, t)
        return all(self._enqueue_lane(pick(), c, rid, 1, t) for _ in range(n))

    def _enqueue_lane(self, lane: int, c: int, rid: int, n: int, t: float) -> bool:
        if self.capacity[lane] == 0:
            self.status[rid] = FAILED
            self.finish[rid] = t
            self._done_log.append(rid)
            return False
        q = self.queues[lane]
        if n == 1:
            q.append(rid)
            if self._track_qt:
                self.qtimes[lane].append(t)
        else:
            q.extend([rid] * n)
            if self._track_qt:
                self.qtimes[lane].extend([t] * n)
        self.live[rid] += n
        for j in self._join_watch[c]:
            a = self._anc[j]
            a[rid] = a.get(rid, 0) + n
        return True

    def _admit(self, rid: int, t: float) -> None:
        """Request `rid` enters its source stages at `t` (after its host overhead, when there is one)."""
        sources = self._sources
        carried = [s for s, share in sources if share >= 1.0 or self._unext() < share] or [sources[0][0]]
        for s in carried:
            if not self._enqueue(s, rid, 1, t):
                break
        for s in carried:
            for lane in self._lanes[s]:
                if self.idle[lane]:
                    self._dispatch(lane, t)

    def wait_until(self, t_end: float) -> None:
        if t_end > self._now:
            self._run(t_end)
            self._now = t_end

    def _run(self, t_end: float) -> None:
        """Process every event and arrival at or before `t_end` (INF: until nothing is left)."""
        heap, arr, N = self._heap, self._arr, self._N
        hpop = heapq.heappop
        status, finish, live, done_log = self.status, self.finish, self.live, self._done_log
        queues, qtimes, idle, capacity = self.queues, self.qtimes, self.idle, self.capacity
        in_service = self.in_service
        track = self._track_qt
        acc_sum, acc_n, children, watch = self.acc_sum, self.acc_n, self._children, self._join_watch
        router, stage_of, kid_lanes, watch_lanes = self._router, self._stage_of, self._kid_lanes, self._watch_lanes
        anc, jarr = self._anc, self._jarr
        unext, dispatch, enqueue = self._unext, self._dispatch, self._enqueue
        sources = self._sources
        host = self.host
        overhead = self._overhead_s if host is not None else 0.0
        side = float(self.settings.host_side_s) if host is not None else 0.0
        admission = self._admission
        simple_src = (
            self._k == 1
            and len(sources) == 1
            and sources[0][1] >= 1.0
            and not watch[sources[0][0]]
            and not overhead
            and not side
            and not admission
        )
        src0 = sources[0][0]
        ai = self._ai
        next_arr = arr[ai] if ai < N else INF
        t = self._now
        while True:
            if heap and heap[0][0] <= next_arr:
                t = heap[0][0]
                if t > t_end:
                    break
                _, _, kind, s, rep, batch = hpop(heap)
                if kind == _EV_DONE:
                    in_service[s] -= len(batch)
                    acc = rep.acc
                    if acc != rep.gen.acc:  # its generation switched warm variant while this batch was served
                        rep.acc = rep.gen.acc
                    asum, an = acc_sum[stage_of[s]], acc_n[stage_of[s]]  # the stage's, whichever part served
                    kids, jw = children[s], watch[s]
                    for rid in batch:
                        if status[rid]:
                            continue
                        asum[rid] += acc
                        an[rid] += 1
                        for c, mi, mf, isjoin in kids:
                            n = mi + 1 if mf and unext() < mf else mi
                            if n == 0:
                                continue
                            if isjoin:
                                ja = jarr[c]
                                ja[rid] = ja.get(rid, 0) + n
                            elif capacity[c] and not watch[c] and n == 1 and router[c] is None:  # fast _enqueue
                                queues[c].append(rid)
                                if track:
                                    qtimes[c].append(t)
                                live[rid] += 1
                            elif not enqueue(c, rid, n, t):
                                break
                        if status[rid]:
                            continue
                        for j in jw:
                            a = anc[j]
                            left = a[rid] - 1
                            if left:
                                a[rid] = left
                            else:
                                del a[rid]
                                if jarr[j].pop(rid, 0) > 0:
                                    enqueue(j, rid, 1, t)
                        left = live[rid] - 1
                        live[rid] = left
                        if left == 0 and status[rid] == PENDING:
                            status[rid] = COMPLETED
                            finish[rid] = t
                            done_log.append(rid)
                    rep.busy = False
                    if rep.state == DRAINING:
                        self._retire(s, rep, t)
                        self._drained(s, rep, t)
                    else:
                        idle[s].append(rep)
                    dispatch(s, t)
                    for c in kid_lanes[s]:
                        if queues[c]:
                            dispatch(c, t)
                    for j in watch_lanes[s]:
                        if queues[j]:
                            dispatch(j, t)
                elif kind == _EV_READY:
                    if rep.state != LOADING:
                        continue  # cancelled while loading
                    rep.state = READY
                    gen = rep.gen
                    gen.loading -= 1
                    self.events.append(
                        {
                            "t": t,
                            "event": "ready",
                            "stage": self._lane_names[s],
                            "variant": gen.variant,
                            "replica": id(rep),
                        }
                    )
                    idle[s].append(rep)
                    if gen is self.pending[s] and gen.loading == 0:
                        self._promote(s, t)
                    dispatch(s, t)
                elif kind == _EV_TIMER:  # batch-wait timer
                    self._timer_set[s] = False
                    dispatch(s, t)
                else:  # shared host: its first job finishes (s is the event's epoch; superseded ones do nothing)
                    host.wake(t, s)  # type: ignore[union-attr]
            else:
                if next_arr > t_end or ai >= N:
                    break
                t = next_arr
                rid = ai
                ai += 1
                next_arr = arr[ai] if ai < N else INF
                if admission and not self._admits(rid, t):
                    continue
                if simple_src and capacity[src0]:
                    queues[src0].append(rid)
                    if track:
                        qtimes[src0].append(t)
                    live[rid] = 1
                    if idle[src0]:
                        dispatch(src0, t)
                    continue
                if side:  # CPU beside the request's path: it loads the host, the request does not wait for it
                    host.start(t, side, 1.0, -1, None, None)  # type: ignore[union-attr]
                if overhead:  # the request's host work (ingress, proxy) comes first: host.wake admits it
                    host.start(t, overhead, 1.0, -1, None, rid)  # type: ignore[union-attr]
                    continue
                self._admit(rid, t)
        self._ai = ai
        if t_end == INF:  # drained: the clock stops at the last event
            self._now = max(self._now, t)

    def _admits(self, rid: int, t: float) -> bool:
        """Admission at the ingress (`pipetune.admission`, the live rule): admit `rid` arriving at `t`, or mark
        it refused. Admitted requests past their deadline are dropped here, at the deadline, as live."""
        status, arr, finish, log = self.status, self._arr, self.finish, self._done_log
        admitted = self._admitted
        while admitted:
            old = admitted[0]
            if status[old] == PENDING:
                if t - arr[old] <= self.drop_s:
                    break
                status[old], finish[old] = DROPPED, arr[old] + self.drop_s
                log.append(old)
            admitted.popleft()
        window = self._adm_window
        for i in range(self._adm_read, len(log)):
            if status[log[i]] == COMPLETED:
                window.completed(finish[log[i]])
        self._adm_read = len(log)
        if self._adm_limits is None:
            configs = {n: self._serving(s, live=True) for s, n in enumerate(self.names)}
            self._adm_limits = (profile_admission(self.pipeline, self.profiles, configs), service_floor(configs))
        max_inflight, floor = self._adm_limits
        inflight = rid - len(log)  # requests 0..rid-1 arrived; every answered one is in the log
        oldest = arr[admitted[0]] if admitted else None
        if inflight >= window.limit(t, inflight, oldest, max_inflight, floor):
            status[rid], finish[rid] = REFUSED, t
            log.append(rid)
            self._adm_read += 1  # a refusal is no completion: nothing for the measured rate
            return False
        admitted.append(rid)
        return True

    def _drained(self, s: int, rep: _Replica, t: float) -> None:
        self.events.append({"t": t, "event": "drained", "stage": self._lane_names[s], "variant": rep.gen.variant})

    def close(self) -> None:
        """Stop arrivals (the trace has ended), let everything in flight finish, then settle the rest."""
        if self._closed:
            return
        # Drain: run the remaining arrivals and events; work left without capacity times out at the drop limit.
        self._run(INF)
        for rid in range(self._N):
            if self.status[rid] == PENDING:
                self.status[rid] = DROPPED
                self.finish[rid] = self._arr[rid] + self.drop_s
                self._done_log.append(rid)
        end = self._now
        for s in range(len(self.active)):  # release every replica of every lane: the run is over
            for g in (self.active[s], self.pending[s]):
                if g:
                    for r in list(g.replicas):
                        self._retire(s, r, end)
        self._closed = True

    def result(self, horizon_s: float | None = None) -> SimResult:
        """Per-request arrays and logs; call after `close()`."""
        if not self._closed:
            raise SimulatorError("call close() before result(): requests may still be in flight")
        S = len(self.names)
        status = np.array(self.status, dtype=np.int8)
        pas = np.ones(self._N)
        norm = np.zeros(self._N)
        served_stages = np.zeros(self._N)
        for s in range(S):
            n = np.array(self.acc_n[s], dtype=float)
            visited = n > 0
            mean = np.divide(np.array(self.acc_sum[s]), n, out=np.ones(self._N), where=visited)
            pas *= np.where(visited, mean, 1.0)
            lo, hi = self._acc_range[s]
            nrm = (mean - lo) / (hi - lo) if hi > lo else np.ones(self._N)
            norm += np.where(visited, nrm, 0.0)
            served_stages += visited
        norm = np.divide(norm, served_stages, out=np.zeros(self._N), where=served_stages > 0)
        pas[status != COMPLETED] = np.nan
        norm[status != COMPLETED] = np.nan
        return SimResult(
            arrival_s=np.array(self._arr),
            finish_s=np.array(self.finish),
            status=status,
            pas=pas,
            norm_acc=norm,
            cost_t=np.array(self.cost_t),
            cost_cores=np.array(self.cost_cores),
            events=self.events,
            sla_s=self.sla_s,
            horizon_s=float(horizon_s if horizon_s is not None else (self._arr[-1] if self._N else 0.0)),
        )
