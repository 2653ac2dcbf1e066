"""Per-stage option sets: every (variant, batch, cores, replicas) a stage may run, with its predicted latency.

A decision is a choice of one option per stage. Replicas follow in closed form from the other knobs: the fewest
that carry the stage's load (`n_min`), plus each extra replica that still lowers the stage's SLA-percentile
latency. Past the first n where the queueing quantile is zero (Erlang C <= 1 - p), more replicas only add cost,
so they are dominated and never listed. This is what keeps the model free of bilinear terms: latency and cost
are constants of an option, not products of decision variables.

Options are computed for all stages at once with numpy; the rate-independent part (`BaseOptions`) is cached
per (pipeline, profiles, restriction) since the adapter re-plans the same pipeline every few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipetune.latency import stage_latency_arrays

MAX_EXTRA_REPLICAS = 64  # safety bound on the listed replica alternatives above n_min


@dataclass(frozen=True)
class Restriction:
    """What a policy lets change. None means "anything the spec allows"."""

    variants: dict[str, tuple[str, ...]] | None = None
    batches: dict[str, tuple[int, ...]] | None = None
    cores: dict[str, tuple[int, ...]] | None = None
    replicas: dict[str, int] | None = None  # fixed replica count per stage


@dataclass
class BaseOptions:
    """Rate-independent facts of each (variant, batch, cores) of one stage."""

    stage: str
    variant_names: list[str]
    var_idx: np.ndarray
    acc: np.ndarray
    acc_coef: np.ndarray
    batch: np.ndarray
    cores: np.ndarray
    mean: np.ndarray
    p50: np.ndarray
    p99: np.ndarray
    thr: np.ndarray


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
    why_empty: str = field(default="")

    def __len__(self) -> int:
        return int(self.var_idx.size)

    def take(self, idx: np.ndarray) -> StageOptions:
        kw = {k: getattr(self, k)[idx] for k in _ARRAYS}
        return StageOptions(self.stage, self.load, self.variant_names, why_empty=self.why_empty, **kw)

    def describe(self, i: int) -> str:
        return (
            f"{self.variant_names[self.var_idx[i]]} b{self.batch[i]} c{self.cores[i]} x{self.replicas[i]}"
        )


_ARRAYS = ("var_idx", "acc", "acc_coef", "batch", "cores", "replicas", "cost", "lat_slo", "lat_mean", "capacity")


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


def build_base_options(pipeline, profiles, restriction: Restriction | None = None) -> list[BaseOptions]:
    r = restriction or Restriction()
    method = pipeline.objective.accuracy
    out = []
    for st in pipeline.stages:
        names = [v.name for v in st.variants]
        accs = [v.accuracy for v in st.variants]
        coefs = accuracy_coefficients(method, accs, len(pipeline.stages))
        allowed_v = set(r.variants[st.name]) if r.variants and st.name in r.variants else set(names)
        batches = r.batches[st.name] if r.batches and st.name in r.batches else pipeline.batch_sizes_for(st.name)
        cores = r.cores[st.name] if r.cores and st.name in r.cores else pipeline.cores_for(st.name)
        rows = []
        for vi, vn in enumerate(names):
            if vn not in allowed_v:
                continue
            vp = profiles.get(st.name, vn)
            for b in batches:
                for c in cores:
                    row = vp.row(b, c)
                    rows.append((vi, accs[vi], coefs[vi], b, c, row.latency_mean_s, row.latency_p50_s,
                                 row.latency_p99_s, row.throughput_rps))
        a = np.array(rows, dtype=float).reshape(-1, 9)
        out.append(
            BaseOptions(
                stage=st.name, variant_names=names, var_idx=a[:, 0].astype(np.int64), acc=a[:, 1],
                acc_coef=a[:, 2], batch=a[:, 3].astype(np.int64), cores=a[:, 4].astype(np.int64), mean=a[:, 5],
                p50=a[:, 6], p99=a[:, 7], thr=a[:, 8],
            )
        )
    return out


def expand_options(
    base: BaseOptions,
    load: float,
    *,
    pct: float,
    sla_s: float,
    headroom: float,
    max_replicas: int,
    fixed_replicas: int | None = None,
    max_wait: float | None = None,
) -> StageOptions:
    """Every option of a stage at `load` items/s whose latency can fit in the SLA (others can never be chosen)."""
    m = base.var_idx.size
    need = load * (1.0 + headroom) / base.thr
    if fixed_replicas is not None:
        n_min = np.full(m, fixed_replicas, np.int64)
    else:
        n_min = np.maximum(1, np.ceil(need - 1e-12)).astype(np.int64)
        n_min = np.where(load / (n_min * base.thr) >= 1.0, n_min + 1, n_min)  # strict stability

    def grid(sel: np.ndarray, k: int):
        n = n_min[sel, None] + np.arange(k)[None, :]  # candidate replica counts
        lat = stage_latency_arrays(
            mean_s=base.mean[sel, None], p50_s=base.p50[sel, None], p99_s=base.p99[sel, None],
            throughput=base.thr[sel, None], batch=base.batch[sel, None], replicas=n, rate=load, pct=pct,
            max_wait=max_wait,
        )
        valid = (n <= max_replicas) & (n * base.thr[sel, None] >= load * (1.0 + headroom) - 1e-9)
        # Keep n up to and including the first n whose queueing quantile is zero: beyond it latency is flat.
        zero = lat.queue_slo <= 0
        zero_before = np.concatenate([np.zeros((n.shape[0], 1), bool), np.cumsum(zero, axis=1)[:, :-1] > 0], 1)
        keep = valid & ~zero_before & (lat.slo <= sla_s * (1 + 1e-12))
        done = zero.any(axis=1) | (n[:, -1] >= max_replicas) | ~valid[:, 0]
        return n, lat, valid, keep, done

    # A short first pass; only the rows whose queue has not vanished yet get the long one.
    k0 = 1 if fixed_replicas is not None else 8
    n, lat, valid, keep, done = grid(np.arange(m), k0)
    more = np.nonzero(~done)[0]
    if more.size:
        n2, lat2, valid2, keep2, _ = grid(more, MAX_EXTRA_REPLICAS + 1)
        pad = MAX_EXTRA_REPLICAS + 1 - k0
        n = np.pad(n, ((0, 0), (0, pad)), constant_values=0)
        keep = np.pad(keep, ((0, 0), (0, pad)))
        valid = np.pad(valid, ((0, 0), (0, pad)))
        fields = [np.pad(x, ((0, 0), (0, pad)), constant_values=np.inf) for x in (lat.slo, lat.mean)]
        n[more], keep[more], valid[more] = n2, keep2, valid2
        fields[0][more], fields[1][more] = lat2.slo, lat2.mean
        lat_slo, lat_mean = fields
    else:
        lat_slo, lat_mean = lat.slo, lat.mean
    rows, cols = np.nonzero(keep)
    so = StageOptions(
        stage=base.stage,
        load=load,
        variant_names=base.variant_names,
        var_idx=base.var_idx[rows],
        acc=base.acc[rows],
        acc_coef=base.acc_coef[rows],
        batch=base.batch[rows],
        cores=base.cores[rows],
        replicas=n[rows, cols],
        cost=(base.cores[rows] * n[rows, cols]).astype(float),
        lat_slo=lat_slo[rows, cols],
        lat_mean=lat_mean[rows, cols],
        capacity=n[rows, cols] * base.thr[rows],
    )
    if len(so) == 0:
        so.why_empty = _why_empty(base, load, headroom, max_replicas, fixed_replicas, valid)
    return so


def _why_empty(base, load, headroom, max_replicas, fixed_replicas, valid) -> str:
    if not valid.any():
        n = fixed_replicas or max_replicas
        best = float((n * base.thr).max()) if base.thr.size else 0.0
        return f"capacity: needs {load * (1 + headroom):.4g} items/s, the most {n} replicas can serve is {best:.4g}"
    return "sla: no option of this stage alone fits the SLA at this load"


def pareto_prune(so: StageOptions, keep: np.ndarray | None = None) -> StageOptions:
    """Drop options another option beats or ties on every term (accuracy, cost, latency, batch).

    Exact for the MILP: swapping a dominated option for its dominator keeps every constraint satisfied
    (latency and cost only get smaller) and the objective no worse (pas is monotone in each factor).
    `keep` marks options that must survive (the current configuration, for the least-change tie-break).
    """
    if len(so) <= 1:
        return so
    # 1) within (variant, batch) groups accuracy and batch are equal: a 2-D (cost, latency) frontier.
    grp = so.var_idx * 4096 + so.batch
    order = np.lexsort((so.lat_slo, so.cost, grp))
    g, lat = grp[order], so.lat_slo[order]
    _, first = np.unique(g, return_index=True)
    gid = np.zeros(len(g), np.int64)
    gid[first[1:]] = 1
    gid = np.cumsum(gid)
    shifted = lat - gid * 1e6  # later groups sit far lower, so a running minimum restarts per group
    prev_min = np.concatenate([[np.inf], np.minimum.accumulate(shifted)[:-1]])
    front = shifted < prev_min - 1e-15
    survivors = order[front]
    if keep is not None:
        survivors = np.union1d(survivors, np.nonzero(keep)[0])
    s = so.take(survivors)
    k = None if keep is None else keep[survivors]
    # 2) across groups: full 4-D dominance on the (few) survivors.
    acc, cost, lat, bat = s.acc_coef, s.cost, s.lat_slo, s.batch
    ge = (
        (acc[:, None] >= acc[None, :])
        & (cost[:, None] <= cost[None, :])
        & (lat[:, None] <= lat[None, :])
        & (bat[:, None] <= bat[None, :])
    )
    strict = (
        (acc[:, None] > acc[None, :])
        | (cost[:, None] < cost[None, :])
        | (lat[:, None] < lat[None, :])
        | (bat[:, None] < bat[None, :])
    )
    idx = np.arange(len(acc))
    # i dominates j if ge and strict; among exact ties keep the lowest index.
    dom = ge & (strict | (idx[:, None] < idx[None, :]))
    np.fill_diagonal(dom, False)
    alive = ~dom.any(axis=0)
    if k is not None:
        alive |= k
    return s.take(np.nonzero(alive)[0])


def stage_loads(pipeline, rps: float) -> dict[str, float]:
    return {s: rps * f for s, f in pipeline.load_factors().items()}


def is_finite(x: float) -> bool:
    return math.isfinite(x)
