"""Brute-force oracle: enumerate every combination of stage options and keep the best.

Independent of the MILP on purpose: it reads the raw (unpruned) option sets, computes the end-to-end latency as
the maximum over explicit source-to-sink paths and the accuracy straight from its definition, and shares no code
with milp.py. Tests and `pipetune bench optimizer` compare the two.
"""

from __future__ import annotations

import math

import numpy as np

from pipetune.optimizer.options import StageOptions

MAX_COMBINATIONS = 2_000_000


def combinations(options: list[StageOptions]) -> int:
    return math.prod(len(so) for so in options)


def brute_force(pipeline, options: list[StageOptions]) -> tuple[float, list[int]] | None:
    """(best objective, option index per stage), or None if no combination is feasible."""
    n = combinations(options)
    if n == 0:
        return None
    if n > MAX_COMBINATIONS:
        raise ValueError(f"{n} combinations is too many for brute force (limit {MAX_COMBINATIONS})")
    sizes = [len(so) for so in options]
    grids = np.indices(sizes).reshape(len(sizes), -1)  # (S, n): option index per stage per combination
    obj = pipeline.objective
    names = pipeline.stage_names
    at = {s: i for i, s in enumerate(names)}

    lat = [so.lat_slo[grids[i]] for i, so in enumerate(options)]
    e2e = np.zeros(n)
    for path in pipeline.paths():
        e2e = np.maximum(e2e, sum(lat[at[s]] for s in path))
    feasible = e2e <= pipeline.sla.seconds * (1 + 1e-9)

    cost = sum(so.cost[grids[i]] for i, so in enumerate(options))
    if pipeline.caps.max_total_cores is not None:
        feasible &= cost <= pipeline.caps.max_total_cores + 1e-9
    if options and options[0].host_budget is not None:  # a runtime profile: the host CPU the stages use together
        host = sum(so.host_cpu[grids[i]] for i, so in enumerate(options))  # type: ignore[index]
        feasible &= host <= options[0].host_budget + 1e-9
    batch = sum(so.batch[grids[i]].astype(float) for i, so in enumerate(options))
    if obj.accuracy == "pas":
        acc = np.prod([so.acc[grids[i]] for i, so in enumerate(options)], axis=0)
    else:
        acc = sum(so.acc_coef[grids[i]] for i, so in enumerate(options))
    value = obj.alpha * acc - obj.beta * cost - obj.gamma * batch
    if not feasible.any():
        return None
    value = np.where(feasible, value, -np.inf)
    best = int(np.argmax(value))
    return float(value[best]), [int(g) for g in grids[:, best]]


def mixed_options_by_definition(
    pipeline, singles: list[StageOptions], parts_at: dict[int, list[StageOptions]]
) -> list[StageOptions]:
    """Every option of every stage when a stage may split its load over two variants, listed one by one from the
    definition (no dominance, no vectorised pairing): the one-variant options `singles`, and for every share
    j/N (`parts_at[j]`: the one-variant options at j/N of the load, N = len(parts_at) + 1) every pair of a part
    of one variant at j/N with a part of a higher-indexed variant at (N-j)/N. A split's accuracy is the
    share-weighted expectation, its cost and batch the sums, its latency the larger of the two parts'."""
    n = len(parts_at) + 1
    out = []
    for si, so in enumerate(singles):
        rows = [(so.acc[i], so.acc_coef[i], so.cost[i], so.batch[i], so.lat_slo[i]) for i in range(len(so))]
        for j in range(1, n):
            f = j / n
            a, b = parts_at[j][si], parts_at[n - j][si]
            for i in range(len(a)):
                for k in range(len(b)):
                    if a.var_idx[i] < b.var_idx[k]:
                        rows.append(
                            (
                                f * a.acc[i] + (1 - f) * b.acc[k],
                                f * a.acc_coef[i] + (1 - f) * b.acc_coef[k],
                                a.cost[i] + b.cost[k],
                                a.batch[i] + b.batch[k],
                                max(a.lat_slo[i], b.lat_slo[k]),
                            )
                        )
        cols = np.array(rows, float).reshape(-1, 5).T
        m = cols.shape[1]
        zeros = np.zeros(m, np.int64)
        out.append(
            StageOptions(
                stage=so.stage,
                load=so.load,
                variant_names=so.variant_names,
                var_idx=zeros,
                acc=cols[0],
                acc_coef=cols[1],
                batch=cols[3],
                cores=zeros,
                replicas=zeros,
                cost=cols[2],
                lat_slo=cols[4],
                lat_mean=cols[4],
                capacity=np.zeros(m),
                fitted=np.zeros(m, bool),
            )
        )
    return out
