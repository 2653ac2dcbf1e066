"""A fast feasible starting point for the MILP (a MIP start), and exact latency-based option reduction.

Neither changes the optimum: the start only lets HiGHS prune from the first node, and the reduction removes
options that no feasible plan can contain.
"""

from __future__ import annotations

import weakref

import numpy as np

from pipetune.optimizer.options import StageOptions, resource_limits

_per_object: dict[tuple, tuple[tuple, object]] = {}


def cached_for(owner, what: str, compute):
    """`compute(owner)`, remembered while `owner` lives (`owner` may be a tuple of objects: the entry is kept while
    all of them live). The DAG's paths and orders are walked in Python and one decision asks for them many times;
    the adapter re-plans the same pipeline every few seconds. Entries hold only weak references to their owners
    and vanish with them, so a process that plans many pipelines (the benchmark, the tests) keeps a small heap
    (a dict of strong references had grown to 256 pipelines with their profiles, and the garbage collector's
    walks over them showed up in the timings)."""
    objs = owner if isinstance(owner, tuple) else (owner,)
    key = (tuple(id(o) for o in objs), what)
    hit = _per_object.get(key)
    if hit is not None and all(r() is o for r, o in zip(hit[0], objs)):
        return hit[1]
    value = compute(owner)

    table = _per_object  # held by the closure: at interpreter exit the module's globals may already be gone

    def forget(_ref: weakref.ref) -> None:
        # ids are unique among live objects, so the callback of a dead owner only ever removes its own entry
        table.pop(key, None)

    refs = tuple(weakref.ref(o, forget) for o in objs)
    _per_object[key] = (refs, value)
    return value


def _compute_path_matrix(pipeline) -> np.ndarray:
    names = pipeline.stage_names
    at = {n: i for i, n in enumerate(names)}
    paths = pipeline.paths()
    m = np.zeros((len(paths), len(names)), bool)
    for i, p in enumerate(paths):
        m[i, [at[n] for n in p]] = True
    m.flags.writeable = False
    return m


def _path_matrix(pipeline) -> np.ndarray:
    return cached_for(pipeline, "path_matrix", _compute_path_matrix)


def _path_lists(pipeline) -> tuple[np.ndarray, list[np.ndarray]]:
    """The path matrix as floats, and per stage the indices of the paths through it."""
    pm = _path_matrix(pipeline)
    return pm.astype(float), [np.flatnonzero(col) for col in pm.T]


def stage_slack(pipeline, options: list[StageOptions]) -> np.ndarray:
    """Per stage, the most SLA-percentile latency one of its options may have: the SLA less the fastest options
    of the other stages on its tightest path (inf for a stage on no path)."""
    pm, _ = cached_for(pipeline, "path_lists", _path_lists)
    fastest = np.array([float(so.lat_slo.min()) if len(so) else 0.0 for so in options])
    tightest = np.where(pm > 0, (pm @ fastest)[:, None], -np.inf).max(axis=0, initial=-np.inf)
    with np.errstate(invalid="ignore"):
        slack = pipeline.sla.seconds - (tightest - fastest)
    return np.where(np.isfinite(tightest), slack, np.inf) * (1 + 1e-12)


def objective_of(pipeline, options: list[StageOptions], choice: list[int]) -> float:
    obj = pipeline.objective
    if obj.accuracy == "pas":
        acc = float(np.prod([so.acc[i] for so, i in zip(options, choice)]))
    else:
        acc = float(sum(so.acc_coef[i] for so, i in zip(options, choice)))
    cost = sum(float(so.cost[i]) for so, i in zip(options, choice))
    batch = sum(float(so.batch[i]) for so, i in zip(options, choice))
    return obj.value(acc, cost, batch)


def linear_values(pipeline, options: list[StageOptions]) -> list[np.ndarray]:
    """Per stage, each option's value under the linear objective (accuracy as its coefficient)."""
    return [pipeline.objective.value(so.acc_coef, so.cost, so.batch) for so in options]


def local_search(
    pipeline,
    options: list[StageOptions],
    start: list[int] | None = None,
    values: list[np.ndarray] | None = None,
    sweeps: int = 3,
) -> list[int] | None:
    """A feasible plan with a high linear value sum(values[s][o]): start from `start` (default: the fastest
    option of every stage), then move one stage at a time to its best option that keeps every path within the
    SLA (and every resource limit: the core budget, the host CPU), until nothing improves. Default values: the pipeline's linear objective."""
    if any(len(so) == 0 for so in options):
        return None
    if values is None:
        values = linear_values(pipeline, options)
    pm, through = cached_for(pipeline, "path_lists", _path_lists)
    sla = pipeline.sla.seconds * (1 + 1e-12)
    limits = resource_limits(pipeline, options)  # the core budget, the host CPU budget (each if set)

    def used(choice: list[int]) -> list[np.ndarray]:
        return [np.array([u[i] for u, i in zip(use, choice)]) for use, _ in limits]

    def over(use_now: list[np.ndarray]) -> bool:
        return any(u.sum() > limit for u, (_, limit) in zip(use_now, limits))

    choice = list(start) if start is not None else [int(np.argmin(so.lat_slo)) for so in options]
    lat = np.array([so.lat_slo[i] for so, i in zip(options, choice)])
    use_now = used(choice)
    if over(use_now):  # the plan that uses least of each resource in turn, the first that fits them all
        for use, _ in limits:
            choice = [int(np.argmin(u)) for u in use]
            use_now = used(choice)
            if not over(use_now):
                break
        lat = np.array([so.lat_slo[i] for so, i in zip(options, choice)])
    path_lat = pm @ lat  # every path's latency, recomputed after each move
    if path_lat.max(initial=0.0) > sla or over(use_now):
        return None
    for _ in range(sweeps):
        improved = False
        for s, so in enumerate(options):
            t = through[s]
            # the most this stage may take: the SLA less the rest of its tightest path
            slack = sla - (float(path_lat[t].max()) - lat[s]) if t.size else np.inf
            ok = so.lat_slo <= slack
            for u, (use, limit) in zip(use_now, limits):
                ok &= use[s] <= limit - (u.sum() - u[s])
            val = np.where(ok, values[s], -np.inf)
            j = int(np.argmax(val))
            if val[j] > values[s][choice[s]] + 1e-12:
                choice[s], lat[s] = j, so.lat_slo[j]
                for u, (use, _) in zip(use_now, limits):
                    u[s] = use[s][j]
                path_lat = pm @ lat
                improved = True
        if not improved:
            break
    return choice


def best_by_enumeration(pipeline, options: list[StageOptions], values: list[np.ndarray]) -> list[int] | None:
    """The feasible plan of highest linear value among all combinations (for small remainders only)."""
    sizes = [len(so) for so in options]
    grid = np.indices(sizes).reshape(len(sizes), -1)
    lat = np.stack([so.lat_slo[grid[i]] for i, so in enumerate(options)])  # (stages, combos)
    ok = (_path_matrix(pipeline).astype(float) @ lat).max(axis=0) <= pipeline.sla.seconds * (1 + 1e-12)
    for use, limit in resource_limits(pipeline, options):
        ok &= sum(u[grid[i]] for i, u in enumerate(use)) <= limit + 1e-9
    if not ok.any():
        return None
    total = np.where(ok, sum(v[grid[i]] for i, v in enumerate(values)), -np.inf)
    return [int(x) for x in grid[:, int(np.argmax(total))]]
