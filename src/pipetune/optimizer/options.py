"""Per-stage option sets: every (variant, batch, cores, replicas) a stage may run, with its predicted latency.

A decision is a choice of one option per stage. Replicas follow in closed form from the other knobs: the fewest
that carry the stage's load (`n_min`), plus each extra replica that still lowers the stage's SLA-percentile
latency. Past the first n where the queueing quantile is zero (Erlang C <= 1 - p), more replicas only add cost,
so they are dominated and never listed. This is what keeps the model free of bilinear terms: latency and cost
are constants of an option, not products of decision variables.

Options are computed for all stages at once with numpy; the rate-independent part (`BaseTable`) is cached
per (pipeline, profiles, restriction) since the adapter re-plans the same pipeline every few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.latency import host_cpu_per_item, host_service, host_slowdown, latency_floor, stage_latency_arrays
from pipetune.profiles import stack_cells
from pipetune.runtime_profile import INLINE_LOAD_S, RuntimeProfile, runs_inline

MAX_EXTRA_REPLICAS = 64  # safety bound on the listed replica alternatives above n_min


@dataclass(frozen=True)
class Restriction:
    """What a policy lets change. None means "anything the spec allows"."""

    variants: dict[str, tuple[str, ...]] | None = None
    batches: dict[str, tuple[int, ...]] | None = None
    cores: dict[str, tuple[int, ...]] | None = None
    replicas: dict[str, int] | None = None  # fixed replica count per stage
    min_replicas: dict[str, int] | None = None  # the fewest replicas a stage may run (a spare: 2); fixed ones win
    measured_only: bool = False  # only (variant, batch, cores) cells the profile measured, none from the fit


_BASE_ARRAYS = ("var_idx", "acc", "acc_coef", "batch", "cores", "mean", "p50", "p99", "thr", "fitted")


@dataclass
class BaseTable:
    """Rate-independent facts of each (variant, batch, cores) of every stage, stage after stage in one set of
    arrays (rows cut[s]:cut[s+1] are stage s): the options of all stages are computed in one vectorised pass."""

    stages: list[str]
    variant_names: list[list[str]]
    cut: np.ndarray
    var_idx: np.ndarray
    acc: np.ndarray
    acc_coef: np.ndarray
    batch: np.ndarray
    cores: np.ndarray
    mean: np.ndarray
    p50: np.ndarray
    p99: np.ndarray
    thr: np.ndarray
    fitted: np.ndarray  # bool: the cell's numbers come from the profile's fitted law, not a measurement

    def __len__(self) -> int:
        return len(self.stages)

    def select(self, keep: np.ndarray) -> BaseTable:
        """The rows where `keep` is True (the stage cut moves with them)."""
        stage_of = np.repeat(np.arange(len(self.stages)), np.diff(self.cut))
        cut = np.concatenate([[0], np.cumsum(np.bincount(stage_of[keep], minlength=len(self.stages)))])
        return BaseTable(self.stages, self.variant_names, cut, **{f: getattr(self, f)[keep] for f in _BASE_ARRAYS})

    def stage(self, s: int) -> BaseTable:
        """The table of stage s alone."""
        rows = slice(int(self.cut[s]), int(self.cut[s + 1]))
        return BaseTable(
            [self.stages[s]],
            [self.variant_names[s]],
            np.array([0, rows.stop - rows.start]),
            **{f: getattr(self, f)[rows] for f in _BASE_ARRAYS},
        )


@dataclass
class MixParts:
    """The second part of each option of a stage that may split its load over two variants (caps.mix_variants
    = 2): the option's own fields describe its main part, which takes `share` of the stage's load; these arrays
    the other part (alt_var_idx -1: the option does not split, share 1)."""

    share: np.ndarray
    main_batch: np.ndarray  # the option's `batch` is the sum of both parts' (the objective's batch term)
    alt_var_idx: np.ndarray
    alt_batch: np.ndarray
    alt_cores: np.ndarray
    alt_replicas: np.ndarray
    main_lat_slo: np.ndarray  # each part's own SLA-percentile latency at its share of the load
    alt_lat_slo: np.ndarray
    # the top of the range of main-part shares the option stands for: `share` itself for a split at one share;
    # above it for an option of the relaxation over share ranges (optimizer/shares.py), [share, share_top]
    share_top: np.ndarray

    def take(self, idx: np.ndarray) -> MixParts:
        return MixParts(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    @classmethod
    def unsplit(cls, so: StageOptions) -> MixParts:
        n = len(so)
        zero = np.zeros(n, np.int64)
        return cls(
            share=np.ones(n),
            main_batch=so.batch.copy(),
            alt_var_idx=np.full(n, -1),
            alt_batch=zero,
            alt_cores=zero,
            alt_replicas=zero,
            main_lat_slo=so.lat_slo.copy(),
            alt_lat_slo=np.zeros(n),
            share_top=np.ones(n),
        )


@dataclass
class StageOptions:
    """All options of one stage at one load, one entry per (variant, batch, cores, replicas)."""

    stage: str
    load: float  # items/s arriving at the stage
    variant_names: list[str]
    var_idx: np.ndarray
    acc: np.ndarray
    acc_coef: np.ndarray
    batch: np.ndarray
    cores: np.ndarray
    replicas: np.ndarray
    cost: np.ndarray
    lat_slo: np.ndarray
    lat_mean: np.ndarray
    capacity: np.ndarray
    fitted: np.ndarray  # bool per option: it rests on a fitted (not measured) profile cell
    why_empty: str = field(default="")
    # With a runtime profile (else None): the host CPU (cores, at this load) each option keeps busy, and the
    # cores of host CPU the stages of a plan may use together at this rate (the same on every stage's set).
    host_cpu: np.ndarray | None = None
    host_budget: float | None = None
    mix: MixParts | None = None  # only where the stage may split its load (caps.mix_variants > 1)

    def __len__(self) -> int:
        return int(self.var_idx.size)

    def take(self, idx: np.ndarray) -> StageOptions:
        kw = {k: getattr(self, k)[idx] for k in _ARRAYS}
        host = None if self.host_cpu is None else self.host_cpu[idx]
        mix = None if self.mix is None else self.mix.take(idx)
        return StageOptions(
            self.stage,
            self.load,
            self.variant_names,
            why_empty=self.why_empty,
            host_cpu=host,
            host_budget=self.host_budget,
            mix=mix,
            **kw,
        )

    def describe(self, i: int) -> str:
        return f"{self.variant_names[self.var_idx[i]]} b{self.batch[i]} c{self.cores[i]} x{self.replicas[i]}"


_ARRAYS = (
    "var_idx",
    "acc",
    "acc_coef",
    "batch",
    "cores",
    "replicas",
    "cost",
    "lat_slo",
    "lat_mean",
    "capacity",
    "fitted",
)


def accuracy_coefficients(method: str, accs: list[float], n_stages: int) -> list[float]:
    """Each variant's contribution to the pipeline accuracy under `method` (pas multiplies raw accuracies)."""
    if method in ("pas", "sum"):
        return list(accs)
    if method == "mean":
        return [a / n_stages for a in accs]
    if method == "rank_sum":  # IPA v1: rank / (n - 1) within the stage, ties share the lower rank
        n = len(accs)
        if n == 1:
            return [1.0]
        return [sum(1 for b in accs if b < a) / (n - 1) for a in accs]
    raise ValueError(f"unknown accuracy method {method!r}")


def build_base_options(pipeline, profiles, restriction: Restriction | None = None) -> BaseTable:
    r = restriction or Restriction()
    method = pipeline.objective.accuracy
    names_all: list[list[str]] = []
    rows_var, rows_acc, rows_coef, grids, variants = [], [], [], [], []
    for st in pipeline.stages:
        names = [v.name for v in st.variants]
        coefs = accuracy_coefficients(method, [v.accuracy for v in st.variants], len(pipeline.stages))
        allowed = r.variants.get(st.name) if r.variants else None
        vis = [vi for vi, vn in enumerate(names) if allowed is None or vn in allowed]
        batches = r.batches[st.name] if r.batches and st.name in r.batches else pipeline.batch_sizes_for(st.name)
        cores = r.cores[st.name] if r.cores and st.name in r.cores else pipeline.cores_for(st.name)
        names_all.append(names)
        grids.append([(b, c) for b in batches for c in cores])  # batch-major within each variant
        rows_var += vis
        rows_acc += [st.variants[vi].accuracy for vi in vis]
        rows_coef += [coefs[vi] for vi in vis]
        variants.append([profiles.get(st.name, names[vi]) for vi in vis])
    per_variant = [len(g) for g, vs in zip(grids, variants) for _ in vs]  # cells of each variant row
    cells = (
        stack_cells([vp for vs in variants for vp in vs], grids[0]).T
        if all(g == grids[0] for g in grids)
        else np.concatenate([stack_cells(vs, g) for vs, g in zip(variants, grids)]).T
    )
    cut = np.cumsum([0] + [len(vs) * len(g) for vs, g in zip(variants, grids)])
    cell_b = [b for g, vs in zip(grids, variants) for _ in vs for b, _c in g]
    cell_c = [c for g, vs in zip(grids, variants) for _ in vs for _b, c in g]
    fitted = np.concatenate([vp.fitted(g) for g, vs in zip(grids, variants) for vp in vs] or [np.zeros(0, bool)])
    table = BaseTable(
        stages=pipeline.stage_names,
        variant_names=names_all,
        cut=cut,
        var_idx=np.repeat(np.asarray(rows_var, np.int64), per_variant),
        acc=np.repeat(np.asarray(rows_acc, float), per_variant),
        acc_coef=np.repeat(np.asarray(rows_coef, float), per_variant),
        batch=np.asarray(cell_b, np.int64),
        cores=np.asarray(cell_c, np.int64),
        mean=cells[0],
        p50=cells[1],
        p99=cells[2],
        thr=cells[3],
        fitted=fitted.astype(bool),
    )
    if not r.measured_only:
        return table
    table = table.select(~table.fitted)
    for si, st in enumerate(pipeline.stages):
        if table.cut[si + 1] == table.cut[si]:
            from pipetune.errors import PipetuneError

            raise PipetuneError(
                f"--measured-only: stage {st.name!r} has no measured (variant, batch, cores) cell among the batch "
                "sizes and core counts it may use; profile one (`pipetune profile`) or plan without --measured-only"
            )
    return table


@dataclass(frozen=True)
class HostCharge:
    """What the runtime adds to the options of a pipeline on a shared host (latency.py, "Shared host"), from a
    `RuntimeProfile` at one rate: every job stretched by the host's slowdown (`slowdown`: of a replica's batch
    given its own replica's demand; `path_slowdown`: of the request's path outside the stages); per base-table row
    the CPU of one remote call of its batch (`hop_s`, 0 where the stage runs inline); per stage the request's path
    outside the stages (`path_s`, on source stages: every path starts at one); and the cores of host CPU the
    stages may use."""

    host_cores: float
    utilisation_cap: float
    hop_s: np.ndarray
    path_s: np.ndarray
    budget: float

    def slowdown(self, own_cores: np.ndarray, job_cores: np.ndarray) -> np.ndarray:
        return np.asarray(host_slowdown(self.host_cores, self.utilisation_cap, own_cores, job_cores))

    @property
    def path_slowdown(self) -> float:
        return float(host_slowdown(self.host_cores, self.utilisation_cap))


def host_charge(pipeline, profiles, base: BaseTable, runtime: RuntimeProfile, rps: float) -> HostCharge:
    """The `HostCharge` of `runtime` for the rows of `base` at `rps` requests/s. The budget is the cores the plan
    may keep busy (utilisation_cap x host_cores) less what every request costs whatever the stages run
    ((request_cpu_s + side_cpu_s) x rps); it may be negative (then no plan holds at this rate)."""
    stage_of = np.repeat(np.arange(len(base)), np.diff(base.cut))
    inline = np.zeros(len(base.var_idx), bool)
    for si, st in enumerate(base.stages):
        rows = stage_of == si
        light = [runs_inline_here(pipeline, profiles, runtime, st, vn) for vn in base.variant_names[si]]
        inline[rows] = np.asarray(light, bool)[base.var_idx[rows]]
    hop = np.where(inline, 0.0, runtime.call_cpu_s + base.batch * runtime.item_cpu_s)
    sources = {s for s in base.stages if not pipeline.parents(s)}
    path = np.array([runtime.request_cpu_s if s in sources else 0.0 for s in base.stages])
    return HostCharge(
        host_cores=runtime.host_cores,
        utilisation_cap=runtime.utilisation_cap,
        hop_s=hop,
        path_s=path,
        budget=runtime.cpu_budget_cores - rps * runtime.per_request_cpu_s,
    )


def inline_stages(pipeline, profiles, runtime: RuntimeProfile | None) -> frozenset[str]:
    """The stages the runtime runs in its ingress process, one rule for the planner and the runtime: those named in
    the runtime profile's `inline_stages`, and, with `fusion`, every stage whose every variant is light by
    `runs_inline` (its batch-1 service time at the stage's smallest core count is below a remote call's CPU) and
    loads within INLINE_LOAD_S (the ingress holds every variant of an inline stage loaded, so switching its variant
    is a table change). A stage is inline whatever its variant, so a plan never moves it in or out of the ingress.
    Without a runtime profile nothing is inline."""
    if runtime is None:
        return frozenset()
    out = set(runtime.inline_stages) & set(pipeline.stage_names)
    if runtime.fusion and profiles is not None:
        for st in pipeline.stages:
            cores = pipeline.cores_for(st.name)[0]
            try:
                rows = [profiles.row(st.name, v.name, 1, cores) for v in st.variants]
            except (KeyError, PipetuneError):
                continue  # a stage without a profile is not judged light
            if all(runs_inline(r.latency_mean_s, runtime) and r.load_time_s <= INLINE_LOAD_S for r in rows):
                out.add(st.name)
    return frozenset(out)


def runs_inline_here(pipeline, profiles, runtime: RuntimeProfile, stage: str, variant: str) -> bool:
    """Whether the runtime runs `stage` (with any variant, `variant` included) in its ingress process: see
    `inline_stages`."""
    return stage in inline_stages(pipeline, profiles, runtime)


def host_cpu_per_request(pipeline, profiles, configs, runtime: RuntimeProfile) -> float:
    """CPU-seconds one request costs the host under `configs` (stage -> StageConfig): what it costs whatever the
    stages run (request + side) plus, per stage, its items per request x CPU per item (latency.host_cpu_per_item)."""
    factors = pipeline.load_factors()
    total = runtime.per_request_cpu_s
    for s, c in configs.items():
        row = profiles.row(s, c.variant, c.batch, c.cores)
        hop = 0.0 if runs_inline_here(pipeline, profiles, runtime, s, c.variant) else runtime.hop_cpu_s(c.batch)
        per_item = host_cpu_per_item(mean_s=row.latency_mean_s, batch=c.batch, cores=c.cores, hop_s=hop)
        total += factors.get(s, 0.0) * float(per_item)
    return total


def host_capacity_rps(pipeline, profiles, configs, runtime: RuntimeProfile | None) -> float:
    """The highest rate (requests/s) at which `configs` keep the host within its CPU budget
    (utilisation_cap x host_cores); inf without a runtime profile (the host is not counted)."""
    if runtime is None:
        return math.inf
    per_request = host_cpu_per_request(pipeline, profiles, configs, runtime)
    return math.inf if per_request <= 0 else runtime.cpu_budget_cores / per_request


def capacity_rps(pipeline, profiles, configs, runtime: RuntimeProfile | None = None) -> float:
    """The rate (requests/s) `configs` hold: the least of each stage's replicas x throughput / its items per
    request and, with a runtime profile, of the host's (`host_capacity_rps`); a stage's throughput on the shared
    host is the planner's (latency.host_service at the slowdown its replicas see at that rate). What admission
    should admit (capacity x SLA in flight)."""
    factors = pipeline.load_factors()
    cap = host_capacity_rps(pipeline, profiles, configs, runtime)
    held = []  # per stage: (items per request, its configuration, row, hop, host CPU per item)
    for s, c in configs.items():
        if factors.get(s, 0.0) <= 0:
            continue
        row = profiles.row(s, c.variant, c.batch, c.cores)
        if runtime is None:
            cap = min(cap, c.replicas * row.throughput_rps / factors[s])
            continue
        hop = 0.0 if runs_inline_here(pipeline, profiles, runtime, s, c.variant) else runtime.hop_cpu_s(c.batch)
        per_item = float(host_cpu_per_item(mean_s=row.latency_mean_s, batch=c.batch, cores=c.cores, hop_s=hop))
        held.append((factors[s], c, row, hop, per_item))
    if runtime is None or not held:
        return cap

    per_request = host_cpu_per_request(pipeline, profiles, configs, runtime)

    def holds(rps: float) -> bool:
        """Whether every stage's replicas carry `rps` at the slowdown they see there: the others' demand is what
        the configuration keeps busy at `rps` less the replica's own (below the cap, less than the planner's
        bound, which assumes the cap's)."""
        for f, c, row, hop, per_item in held:
            own = rps * f / c.replicas * per_item
            slow = host_slowdown(runtime.host_cores, rps * per_request / runtime.host_cores, own, c.cores)
            thr = float(
                host_service(
                    mean_s=row.latency_mean_s,
                    p50_s=row.latency_p50_s,
                    p99_s=row.latency_p99_s,
                    throughput=row.throughput_rps,
                    batch=c.batch,
                    hop_s=hop,
                    slowdown=slow,
                )[3]
            )
            if c.replicas * thr < rps * f:
                return False
        return True

    # the highest rate below the host's at which every stage holds, by bisection (to 1e-6 of the host's)
    hi = cap if math.isfinite(cap) else max(c.replicas * row.throughput_rps / f for f, c, row, *_ in held)
    if holds(hi):
        return hi
    lo = 0.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        if hi - lo <= 1e-6 * hi:
            break
    return lo


def carries(capacity: Any, load: Any, headroom: float) -> Any:
    """Whether a capacity (items/s) carries a load within `caps.headroom`: capacity >= load x (1 + headroom), to
    rounding (arrays elementwise). The one capacity rule of every option, a split's parts included."""
    return capacity >= load * (1.0 + headroom) - 1e-9


def expand_options(
    base: BaseTable,
    loads: list[float],
    *,
    pct: float,
    sla_s: float,
    headroom: float,
    max_replicas: int,
    fixed_replicas: list[int | None] | None = None,
    max_wait: float | None = None,
    arrival_dispersion: float = 1.0,
    host: HostCharge | None = None,
    formation_loads: list[float] | None = None,
    min_replicas: list[int] | None = None,
) -> list[StageOptions]:
    """Every option of every stage at its load (items/s) whose latency can fit in the SLA.

    All stages are computed in one vectorised pass (the per-call numpy overhead dominated when done per stage).
    `host`: the runtime's charge on a shared host (latencies, capacities and host CPU per option); None: not
    counted (the options are exactly what they were before runtime profiles existed).
    `formation_loads`: per stage the load batch formation is taken at, if not `loads` (a range of loads: each
    option's latency is then a lower bound over the range, `latency.stage_latency_arrays`).
    `min_replicas`: per stage, the fewest replicas an option may have (None: 1, the options as before).
    """
    fixed_replicas = fixed_replicas or [None] * len(base)
    stage_of = np.repeat(np.arange(len(base)), np.diff(base.cut))
    lam = np.asarray(loads, float)[stage_of]
    lam_f = lam if formation_loads is None else np.asarray(formation_loads, float)[stage_of]
    fixed = np.array([-1 if f is None else int(f) for f in fixed_replicas], np.int64)[stage_of]
    path = None
    cpu_item = None
    if host is not None:
        path = host.path_slowdown * host.path_s[stage_of]  # the request's path outside the stages, on source stages
        cpu_item = host_cpu_per_item(mean_s=base.mean, batch=base.batch, cores=base.cores, hop_s=host.hop_s)

    def served(sel: np.ndarray, n: np.ndarray):
        """(mean, p50, p99, throughput) of the rows `sel` with n replicas (n: one column per count), on the host:
        a replica's batches stretched by the slowdown it sees with its share of the stage's load."""
        if host is None or cpu_item is None:
            return base.mean[sel, None], base.p50[sel, None], base.p99[sel, None], base.thr[sel, None]
        own = lam[sel, None] / n * cpu_item[sel, None]
        slow = host.slowdown(own, base.cores[sel, None])
        return host_service(
            mean_s=base.mean[sel, None],
            p50_s=base.p50[sel, None],
            p99_s=base.p99[sel, None],
            throughput=base.thr[sel, None],
            batch=base.batch[sel, None],
            hop_s=host.hop_s[sel, None],
            slowdown=slow,
        )

    # Bounded by the caps whatever the load: a replica count above max_replicas is never an option, so n_min is
    # clipped to max_replicas + 1 ("too many") before it becomes an integer. Every grid below then spans at most
    # max_replicas + MAX_EXTRA_REPLICAS + 1 replicas (Erlang C's recursion runs that far, not to n_min).
    too_many = float(max_replicas + 1)
    every = np.arange(len(lam))

    def needed(n: np.ndarray) -> np.ndarray:
        """The fewest replicas that carry each row's load at the throughput each has with n replicas."""
        thr_n = served(every, n[:, None])[3][:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.minimum(np.ceil(lam * (1.0 + headroom) / thr_n - 1e-12), too_many)
        n_new = np.maximum(1, np.nan_to_num(need, nan=too_many)).astype(np.int64)
        n_new = np.where(lam / (n_new * thr_n) >= 1.0, n_new + 1, n_new)  # strict stability
        return np.minimum(n_new, max_replicas + 1)

    # A replica's throughput on the host falls as replicas are added (less of the load on each is more of the
    # host's demand left to others), so the fewest replicas that carry the load is the least fixed point of
    # `needed`, reached from below: from the count at full speed, each step only adds replicas.
    n_min = needed(np.ones(len(lam), np.int64))
    if host is not None:
        for _ in range(max_replicas + 1):
            n_next = np.maximum(n_min, needed(n_min))
            if np.array_equal(n_next, n_min):
                break
            n_min = n_next
    # each row's service at n_min: its throughput, and the latency floor below (more replicas only slow each down)
    _, p50, p99, thr = (x[:, 0] for x in served(every, n_min[:, None]))
    if min_replicas is not None:
        n_min = np.maximum(n_min, np.asarray(min_replicas, np.int64)[stage_of])
    n_min = np.where(fixed >= 0, np.minimum(fixed, max_replicas + 1), n_min)
    n_min = np.minimum(n_min, max_replicas + 1)

    def capacity(sel: np.ndarray, k: int):
        """Replica counts n_min .. n_min + k - 1 of the rows `sel`, their (mean, p50, p99, throughput) on the host,
        and which of them carry the load within caps."""
        n = n_min[sel, None] + np.arange(k)[None, :]
        at = served(sel, n)
        valid = (n <= max_replicas) & carries(n * at[3], lam[sel, None], headroom)
        valid &= (fixed[sel, None] < 0) | (np.arange(k)[None, :] == 0)  # fixed replicas: only n = fixed
        return n, at, valid

    def grid(sel: np.ndarray, k: int):
        n, (mean_n, p50_n, p99_n, thr_n), valid = capacity(sel, k)
        lat = stage_latency_arrays(
            mean_s=mean_n,
            p50_s=p50_n,
            p99_s=p99_n,
            throughput=thr_n,
            batch=base.batch[sel, None],
            replicas=n,
            rate=lam[sel, None],
            pct=pct,
            max_wait=max_wait,
            arrival_dispersion=arrival_dispersion,
            formation_rate=lam_f[sel, None],
        )
        # Keep n up to and including the first n whose queueing quantile is zero: beyond it latency is flat.
        zero = lat.queue_slo <= 0
        zero_before = np.concatenate([np.zeros((n.shape[0], 1), bool), np.cumsum(zero, axis=1)[:, :-1] > 0], 1)
        slo, mean_lat = lat.slo, lat.mean
        if path is not None:
            slo, mean_lat = slo + path[sel, None], mean_lat + path[sel, None]
        keep = valid & ~zero_before & (slo <= sla_s * (1 + 1e-12))
        done = zero.any(axis=1) | (n[:, -1] >= max_replicas) | ~valid[:, 0] | (fixed[sel] >= 0)
        return n, slo, mean_lat, n * thr_n, keep, done

    # Rows whose batch formation and service alone exceed the SLA fit at no replica count: they get no replica
    # grid (its queueing term is most of the work; about half the rows of the benchmark's instances).
    floor = latency_floor(p50_s=p50, p99_s=p99, batch=base.batch, rate=lam_f, pct=pct, max_wait=max_wait)
    if path is not None:
        floor = floor + path
    # Rows that need more than max_replicas replicas fit at no allowed count either (bounded work at any load).
    live = np.flatnonzero((floor <= sla_s * (1 + 1e-12)) & (n_min <= max_replicas))
    # A short first pass; only the rows whose queue has not vanished yet get the long one.
    k0, k1 = 8, MAX_EXTRA_REPLICAS + 1
    n, lat_slo, lat_mean, carried, keep, done = grid(live, k0)
    more = np.flatnonzero(~done)
    if more.size:

        def widen(x, fill):
            out = np.full((live.size, k1), fill, dtype=x.dtype)
            out[:, :k0] = x
            return out

        n, keep = widen(n, 0), widen(keep, False)
        lat_slo, lat_mean, carried = widen(lat_slo, np.inf), widen(lat_mean, np.inf), widen(carried, 0.0)
        n[more], lat_slo[more], lat_mean[more], carried[more], keep[more], _ = grid(live[more], k1)
    local, cols = np.nonzero(keep)
    rows = live[local]
    reps = n[local, cols]
    got = {f: getattr(base, f)[rows] for f in ("var_idx", "acc", "acc_coef", "batch", "cores", "fitted")}
    cost = (got["cores"] * reps).astype(float)
    slo, opt_mean, capacity_rps = lat_slo[local, cols], lat_mean[local, cols], carried[local, cols]
    host_cpu = None
    if cpu_item is not None:  # cores of host CPU kept busy at this load: load x CPU per item
        host_cpu = lam[rows] * cpu_item[rows]
    cut = np.searchsorted(stage_of[rows], np.arange(len(base) + 1))
    out = []
    for si in range(len(base)):
        sl = slice(cut[si], cut[si + 1])  # each stage's options: views of the arrays of all stages
        so = StageOptions(
            stage=base.stages[si],
            load=float(loads[si]),
            variant_names=base.variant_names[si],
            **{f: v[sl] for f, v in got.items()},
            replicas=reps[sl],
            cost=cost[sl],
            lat_slo=slo[sl],
            lat_mean=opt_mean[sl],
            capacity=capacity_rps[sl],
            host_cpu=None if host_cpu is None else host_cpu[sl],
            host_budget=None if host is None else float(host.budget),
        )
        if len(so) == 0:
            mine = np.flatnonzero(stage_of == si)
            so.why_empty = _why_empty(
                thr[mine], float(loads[si]), headroom, max_replicas, fixed_replicas[si], capacity(mine, k0)[2]
            )
        out.append(so)
    return out


def _why_empty(thr, load, headroom, max_replicas, fixed_replicas, valid) -> str:
    if not valid.any():
        n = fixed_replicas or max_replicas
        best = float((n * thr).max()) if thr.size else 0.0
        return f"capacity: needs {load * (1 + headroom):.4g} items/s, the most {n} replicas can serve is {best:.4g}"
    return "sla: no option of this stage alone fits the SLA at this load"


def pareto_prune_stages(
    options: list[StageOptions],
    objective,
    budget: bool = False,
    keeps: list[np.ndarray | None] | None = None,
    max_latency: np.ndarray | None = None,
) -> list[StageOptions]:
    """Per stage, drop options that another option of the same stage beats or ties on every term that matters.

    Which terms matter depends on the objective, and using only those is what keeps the MILP small:
      * sum / mean / rank_sum, no core budget: (value = alpha*acc - beta*cost - gamma*batch, latency);
      * pas, no core budget: (accuracy, penalty = beta*cost + gamma*batch, latency);
      * with a core budget, cost is one more term; with a runtime profile, so is each option's host CPU.
    Exact: swapping a dominated option for its dominator keeps every constraint satisfied (latency and cost
    only get smaller) and the objective no worse (pas is monotone in each factor, all factors >= 0).
    `keeps[s]` marks options of stage s that must survive (the current configuration, for the least-change
    tie-break). `max_latency[s]`, if given, also drops the options of stage s that are slower (kept or not).
    All stages are pruned in one vectorised pass (per-stage numpy calls cost more than the work).
    """
    keeps = keeps or [None] * len(options)
    sizes = np.array([len(so) for so in options])
    stage = np.repeat(np.arange(len(options)), sizes)
    cat = {
        f: np.concatenate([getattr(so, f) for so in options]) for f in ("acc", "acc_coef", "cost", "batch", "lat_slo")
    }
    penalty = objective.beta * cat["cost"] + objective.gamma * cat["batch"]
    host = bool(options) and options[0].host_cpu is not None
    if budget or host:
        cut = np.concatenate([[0], np.cumsum(sizes)])
        terms = [-cat["acc_coef"], penalty, cat["lat_slo"]] + ([cat["cost"]] if budget else [])
        if host:  # host CPU is one more shared resource: an option that uses less of it is not dominated
            terms.append(np.concatenate([so.host_cpu for so in options]))  # type: ignore[misc]
        alive = np.concatenate(
            [
                pareto_pairwise(np.stack([t[a:b] for t in terms], axis=1)) if b - a > 1 else np.ones(b - a, bool)
                for a, b in zip(cut[:-1], cut[1:])
            ]
        )
    elif objective.accuracy == "pas":
        alive = _pareto_3d(stage, cat["acc"], penalty, cat["lat_slo"])
    else:
        alive = _pareto_2d(stage, cat["lat_slo"], objective.alpha * cat["acc_coef"] - penalty)
    out: list[StageOptions] = []
    start = 0
    for so, k, n in zip(options, keeps, sizes.tolist()):
        mine = alive[start : start + n]
        start += n
        if k is not None:
            mine = mine | k
        if max_latency is not None:
            mine = mine & (so.lat_slo <= max_latency[len(out)])
        out.append(so if mine.all() else so.take(np.nonzero(mine)[0]))
    return out


def _dense_rank(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Integer ranks with x's exact order and ties (0 = smallest), and how many distinct values."""
    u, inv = np.unique(x, return_inverse=True)
    return inv.reshape(x.shape).astype(np.int64), int(u.size)


def _pareto_2d(stage: np.ndarray, lat: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Mask of points not dominated within their stage in (lat min, val max); of exact duplicates one survives.
    Sorted by (stage, lat, -val), a point survives iff its value beats the running maximum of its stage so far.
    Values are replaced by their integer ranks shifted up by stage, so one running maximum over all stages
    restarts at each stage (exactly: integers, and ranks keep every tie)."""
    if lat.size == 0:
        return np.zeros(0, bool)
    order = np.lexsort((-val, lat, stage))
    r, n = _dense_rank(val[order])
    x = r + stage[order] * (n + 1)
    prev = np.concatenate([[-1], np.maximum.accumulate(x)[:-1]])
    alive = np.zeros(lat.size, bool)
    alive[order[x > prev]] = True
    return alive


def _pareto_3d(stage: np.ndarray, acc: np.ndarray, pen: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Mask of points not dominated within their stage in (acc max, pen min, lat min); of exact duplicates one
    survives. Accuracy takes few values per stage (one per variant):
     1. within each (stage, accuracy) group, the 2-D frontier in (lat, pen) (as `_pareto_2d`);
     2. a survivor of level t (t-th highest accuracy of its stage) is dominated iff a survivor of a higher level
        has lat <= and pen <= its own: one sweep per level, over all stages at once (levels are few)."""
    if acc.size == 0:
        return np.zeros(0, bool)
    n_stages = int(stage.max()) + 1
    pr, n_pen = _dense_rank(pen)
    # 1. group frontiers: sort by (stage, acc desc, lat, pen); a running minimum of pen ranks restarting per group
    order = np.lexsort((pr, lat, -acc, stage))
    s_o, a_o = stage[order], acc[order]
    new_group = np.concatenate([[True], (s_o[1:] != s_o[:-1]) | (a_o[1:] != a_o[:-1])])
    gid = np.cumsum(new_group) - 1
    x = pr[order] - gid * (n_pen + 1)  # later groups lie wholly below earlier ones: the minimum restarts
    prev = np.concatenate([[n_pen + 1], np.minimum.accumulate(x)[:-1]])
    keep = order[x < prev]
    # level of each survivor within its stage: 0 for the most accurate group
    new_stage = np.concatenate([[True], s_o[1:] != s_o[:-1]])
    level_o = gid - (np.maximum.accumulate(np.where(new_stage, gid, 0)))
    level = np.empty(acc.size, np.int64)
    level[order] = level_o
    # 2. across levels, in (stage, lat, level) order: dominators of equal latency come first
    k = keep[np.lexsort((level[keep], lat[keep], stage[keep]))]
    ks, kl, kp = stage[k], level[k], pr[k]
    off = (n_stages - 1 - ks) * (n_pen + 2)  # earlier stages lie wholly above later ones: the minimum restarts
    dominated = np.zeros(k.size, bool)
    for t in range(1, int(kl.max()) + 1 if kl.size else 1):
        x = np.where(kl < t, kp, n_pen + 1) + off
        m = np.minimum.accumulate(x)
        dominated |= (kl == t) & (m <= kp + off)
    alive = np.zeros(acc.size, bool)
    alive[k[~dominated]] = True
    return alive


def pareto_pairwise(keys: np.ndarray) -> np.ndarray:
    """Mask of rows not dominated when every column is minimised; of exact duplicates the first stays.
    Pairwise (for small sets): one (n, n) comparison per column. (One (n, n, k) comparison reduced over its short
    last axis was up to 10x slower, depending on the memory order of `keys`.)"""
    n = keys.shape[0]
    le = np.ones((n, n), bool)  # le[i, j]: i is no worse than j in every column
    lt = np.triu(np.ones((n, n), bool), 1)  # i is better than j somewhere, or an exact tie listed first (i < j)
    for col in np.asarray(keys, float).T:
        le &= col[:, None] <= col[None, :]
        lt |= col[:, None] < col[None, :]
    dom = le & lt
    np.fill_diagonal(dom, False)
    return ~np.any(dom, axis=0)


def resource_limits(pipeline, options: list[StageOptions]) -> list[tuple[list[np.ndarray], float]]:
    """The shared resources a plan's options use together, as (per stage, each option's use; the limit): the
    core budget over the cores held (caps.max_total_cores), and, with a runtime profile, the host CPU budget over
    each option's host CPU at this load. The solver, its enumerations and the oracle keep each sum <= limit."""
    out: list[tuple[list[np.ndarray], float]] = []
    if pipeline.caps.max_total_cores is not None:
        out.append(([so.cost for so in options], float(pipeline.caps.max_total_cores)))
    if options and options[0].host_budget is not None:
        out.append(([so.host_cpu for so in options], float(options[0].host_budget)))  # type: ignore[misc]
    return out


def stage_loads(pipeline, rps: float) -> dict[str, float]:
    return {s: rps * f for s, f in pipeline.load_factors().items()}


MIX_SHARE_STEPS = 20  # a split stage's share of the load on its main part is a multiple of 1/MIX_SHARE_STEPS


def with_mixed_options(
    singles: list[StageOptions],
    parts_at: dict[int, list[StageOptions]],
    objective,
    budget: bool = False,
) -> list[StageOptions]:
    """Each stage's options, `singles` (one variant), plus every split of its load over two variants that can
    be optimal.

    `parts_at[j]`, j = 1 .. N-1: the single-variant options of every stage at j/N of its load (what a part that
    takes that share may run: its replicas, integers, carry that share; its latency is the part's own at that
    load). A split option pairs a part of variant a at share j/N with a part of a higher-indexed variant b at
    (N-j)/N: its accuracy (and accuracy coefficient) is the share-weighted expectation, its cost and batch the
    sum of both parts', its SLA-percentile latency the larger of the two (the SLA must hold along every path
    through either variant), its mean latency and capacity the share-weighted mean and the sum.

    Only splits that can be optimal are listed (exact): a part that another part of its (stage, share, variant)
    beats on latency and penalty (beta*cost + gamma*batch), and with a core budget (`budget`) on cores too, is
    dropped, since swapping it for its dominator gives a split no worse anywhere; and of the splits of one
    (share, a, b) (all of equal accuracy) only those whose slower part is paired with a part of the other
    variant that is no slower and, among those, least in penalty (`_split_pairs`) or, with a budget, on the
    penalty/cores frontier (`_split_pairs_budget`). So without a budget a stage has at most (its parts) x
    (variants) splits per share; with one, at most (its parts) x (the other variant's parts), usually far fewer
    (penalty and cores rise together): bounded work either way."""
    steps = len(parts_at) + 1
    fronts = {j: [undominated_parts(so, objective, budget) for so in parts_at[j]] for j in parts_at}
    out = []
    for si, so in enumerate(singles):
        splits = [
            split_options(so, fronts[j][si], fronts[steps - j][si], j / steps, j / steps, objective, budget)
            for j in range(1, steps)
        ]
        out.append(stack_splits(so, splits))
    return out


def split_options(
    single: StageOptions,
    a_parts: StageOptions,
    b_parts: StageOptions,
    share: float,
    share_top: float,
    objective,
    budget: bool = False,
) -> tuple[StageOptions, MixParts] | None:
    """The splits of one stage (`single`: its one-variant options, for its name and load) that pair a part of
    `a_parts` (the main part, taking `share` of the load) with a part of a higher-indexed variant in `b_parts`
    (taking the rest), both undominated per variant (`undominated_parts`); None when no pair is listed (see
    `with_mixed_options` for which pairs are and why that is exact).

    `share_top` > `share`: the split stands for every main share in [share, share_top] (the relaxation over share
    ranges, optimizer/shares.py): `a_parts` are then the options over that range of the main part's load and
    `b_parts` over [1 - share_top, 1 - share] of it (capacity at the range's bottom, latency a lower bound over
    it), and the accuracy is the better of the range's two ends, so every split with a share in the range is
    matched or beaten by a listed one."""
    if len(a_parts) == 0 or len(b_parts) == 0:
        return None
    ia, ib = _split_pairs_budget(a_parts, b_parts, objective) if budget else _split_pairs(a_parts, b_parts)
    if ia.size == 0:
        return None
    a, b = a_parts.take(ia), b_parts.take(ib)
    f, f_hi = share, share_top
    block = StageOptions(
        stage=single.stage,
        load=single.load,
        variant_names=single.variant_names,
        var_idx=a.var_idx,
        acc=np.maximum(f * a.acc + (1 - f) * b.acc, f_hi * a.acc + (1 - f_hi) * b.acc),
        acc_coef=np.maximum(f * a.acc_coef + (1 - f) * b.acc_coef, f_hi * a.acc_coef + (1 - f_hi) * b.acc_coef),
        batch=a.batch + b.batch,
        cores=a.cores,
        replicas=a.replicas,
        cost=a.cost + b.cost,
        lat_slo=np.maximum(a.lat_slo, b.lat_slo),
        lat_mean=f * a.lat_mean + (1 - f) * b.lat_mean,
        capacity=a.capacity + b.capacity,
        fitted=a.fitted | b.fitted,
    )
    parts = MixParts(
        share=np.full(ia.size, f),
        main_batch=a.batch,
        alt_var_idx=b.var_idx,
        alt_batch=b.batch,
        alt_cores=b.cores,
        alt_replicas=b.replicas,
        main_lat_slo=a.lat_slo,
        alt_lat_slo=b.lat_slo,
        share_top=np.full(ia.size, f_hi),
    )
    return block, parts


def stack_splits(single: StageOptions, splits: list[tuple[StageOptions, MixParts] | None]) -> StageOptions:
    """One stage's option set: its one-variant options `single` followed by the listed splits."""
    blocks = [single] + [b for b, _ in filter(None, splits)]
    mixes = [MixParts.unsplit(single)] + [m for _, m in filter(None, splits)]
    arrays: dict[str, Any] = {k: np.concatenate([getattr(x, k) for x in blocks]) for k in _ARRAYS}
    return StageOptions(
        stage=single.stage,
        load=single.load,
        variant_names=single.variant_names,
        why_empty=single.why_empty,
        mix=MixParts(**{k: np.concatenate([getattr(m, k) for m in mixes]) for k in MixParts.__dataclass_fields__}),
        **arrays,
    )


def undominated_parts(so: StageOptions, objective, budget: bool = False) -> StageOptions:
    """The parts of each variant that no other part of the same variant beats or ties on latency and penalty
    (beta*cost + gamma*batch), and with a core budget on cores too, sorted by (variant, latency)."""
    if len(so) == 0:
        return so
    pen = objective.beta * so.cost + objective.gamma * so.batch
    if budget:  # fewest cores is the most "accuracy" of _pareto_3d: (cores min, penalty min, latency min)
        idx = np.flatnonzero(_pareto_3d(so.var_idx, -so.cost.astype(float), pen, so.lat_slo))
    else:
        idx = np.flatnonzero(_pareto_2d(so.var_idx, so.lat_slo, -pen))
    return so.take(idx[np.lexsort((so.lat_slo[idx], so.var_idx[idx]))])


def _split_pairs(a: StageOptions, b: StageOptions) -> tuple[np.ndarray, np.ndarray]:
    """Which (part of a, part of b) pairs, a's variant below b's, to list as splits. `a` and `b` are per-variant
    frontiers sorted by (variant, latency), so within a variant the penalty falls as the latency rises, and the
    least-penalty part no slower than L is the last one at or below L. A pair is then no better than the pair of
    its slower part with that partner (same accuracy, latency and no more penalty), so only those are listed:
    per part, one partner per other variant."""
    _, rank = np.unique(np.concatenate([a.lat_slo, b.lat_slo]), return_inverse=True)
    width = int(rank.max()) + 2
    ra, rb = rank[: len(a)], rank[len(a) :]
    key_a, key_b = a.var_idx * width + ra, b.var_idx * width + rb  # ascending: sorted by (variant, latency)

    def partners(slow: StageOptions, r_slow, fast: StageOptions, key_fast, above: bool):
        """For each part of `slow` and each variant of `fast` on the right side of it, the partner (or none)."""
        vs = np.unique(fast.var_idx)
        i = np.repeat(np.arange(len(slow)), vs.size)
        v = np.tile(vs, len(slow))
        i, v = (
            (i[v > slow.var_idx[i]], v[v > slow.var_idx[i]])
            if above
            else (i[v < slow.var_idx[i]], v[v < slow.var_idx[i]])
        )
        k = np.searchsorted(key_fast, v * width + r_slow[i], side="right") - 1
        ok = (k >= 0) & (fast.var_idx[np.maximum(k, 0)] == v)
        return i[ok], k[ok]

    i1, k1 = partners(a, ra, b, key_b, above=True)  # a's part is the slower one
    k2, i2 = partners(b, rb, a, key_a, above=False)  # b's part is the slower one
    return np.concatenate([i1, i2]), np.concatenate([k1, k2])


def _split_pairs_budget(a: StageOptions, b: StageOptions, objective) -> tuple[np.ndarray, np.ndarray]:
    """`_split_pairs` under a core budget: cores are a term of their own, so a slower part keeps every partner
    of each other variant (on the right side of it) that is no slower and on the penalty/cores frontier of
    those: a pair is no better than the pair of its slower part with a partner no slower that beats or ties it
    on both (same accuracy and latency, no more penalty, no more cores)."""

    def partners(slow: StageOptions, fast: StageOptions, above: bool) -> tuple[list[int], list[int]]:
        pen = objective.beta * fast.cost + objective.gamma * fast.batch
        own: list[int] = []
        other: list[int] = []
        for i in range(len(slow)):
            v0 = slow.var_idx[i]
            side = fast.var_idx > v0 if above else fast.var_idx < v0
            near = side & (fast.lat_slo <= slow.lat_slo[i])
            for v in np.unique(fast.var_idx[near]):
                k = np.flatnonzero(near & (fast.var_idx == v))
                best = k[pareto_pairwise(np.stack([pen[k], fast.cost[k].astype(float)], axis=1))]
                own += [i] * best.size
                other += best.tolist()
        return own, other

    ia, ib = partners(a, b, above=True)  # a's part is the slower one
    kb, ka = partners(b, a, above=False)  # b's part is the slower one
    return np.asarray(ia + ka, np.int64), np.asarray(ib + kb, np.int64)
