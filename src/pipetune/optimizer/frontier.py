"""Exact finishing of a reduced MILP(v) by enumeration with dominance and bounds (no HiGHS branch and bound).

After the LP reduced-cost reduction (milp.reduce_by_lp) a MILP usually keeps 2-10 options per stage, still far
too many combinations to list flat at 25 stages, but HiGHS's branch and bound spent 0.1-5 s proving optimality
on these small models. This module enumerates the same remainder stage by stage (topological order) and keeps
only partial plans that can still be optimal. A partial plan is its value, the completion time T[s] of every
assigned stage that still has an unassigned successor on some path ("open" stages), and its use of each
limited resource (the core budget, the host CPU: options.resource_limits). Three exact rules drop partial plans; none can drop every optimal plan:

 1. Feasibility. T[s] = L[s] + max over path-predecessors T[p] is the longest path prefix ending at s, and every
    path meets the SLA iff T[s] <= SLA for all s (latencies are >= 0). Adding `tail[s]`, the longest sum of the
    *fastest* remaining options on any path suffix after s, gives a necessary condition T[s] + tail[s] <= SLA.
    With a budget (cores, host CPU: options.resource_limits): use + the least remaining use <= limit, per resource.
 2. Bound. Every feasible integer plan is LP-feasible, so by LP duality its value is at most
    U - sum_s pen[s, o_s], with U the LP optimum and pen >= 0 the reduced costs (the same bound the reduction
    applies per option, here summed over the assigned stages plus the least penalty of each unassigned stage).
    Also value <= partial value + sum of the best remaining values. A partial plan whose bound is below the
    value of a known feasible plan (minus a 1e-9 relative tolerance) cannot complete to an optimal plan.
 3. Dominance. If partial plan A has value >= B's, every open T <= B's and every resource use <= B's, then any completion of B
    is also a feasible completion of A with at least the same value, so B can go (of exact ties, one stays).
 4. Layer bound (optional, `tangents`; milp.LayerLP computes them). After position k the unassigned stages
    form an LP whose right-hand sides are the open completion times T; its optimum is concave in T, and the
    Lagrangian of one solve at a point T^ gives a linear bound c - mu @ T on everything a completion can add,
    valid for every T. A partial plan whose value plus the least of its position's bounds stays below the floor
    goes. Unlike rule 2 it charges a late partial plan for the fast options its successors will need.
Each rule only removes partial plans that some kept one matches or beats, so the best complete plan left is an
optimum of MILP(v). If the number of partial plans outgrows `max_states` the routine gives up (returns
`TooLarge`) and the caller solves the MILP with HiGHS instead, so the answer never depends on the cap.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipetune.optimizer.incumbent import cached_for
from pipetune.optimizer.options import StageOptions, pareto_pairwise, resource_limits

TooLarge = object()  # sentinel: the frontier outgrew max_states


class Tangents(Protocol):
    """Rule 4's bounds by position k: (c, mu), everything a completion adds <= min_j c[j] - mu[j] @ open times."""

    def __getitem__(self, k: int, /) -> tuple[np.ndarray, np.ndarray]: ...


PAIRWISE_DOMINANCE_AT_MOST = 1000  # multi-dimensional dominance is quadratic; above this only rules 1-2 apply
TANGENTS_ABOVE = 100  # rule 4 (an LP per position) only where the frontier holds more partial plans than this


def _structure(pipeline):
    return cached_for(pipeline, "frontier_structure", _compute_structure)


def frontier_width(pipeline) -> int:
    """The most completion times a partial plan carries at once in this pipeline's stage order (1 for a chain).
    The frontier's size grows with it: measured on the 25-stage benchmark DAGs (width 4-9), the enumeration
    without the layer bound (rule 4) either outgrew its cap or took as long as HiGHS branch and bound, so large
    remainders of DAGs go to the enumeration with it (milp.FRONTIER_MAX_WIDTH, FRONTIER_DIRECT_ABOVE)."""
    return cached_for(pipeline, "frontier_width", _compute_width)


def _compute_width(pipeline) -> int:
    *_, order, last_use = _structure(pipeline)
    return max((sum(1 for s in order[: k + 1] if last_use[s] > k) for k in range(len(order))), default=0)


def stage_order(pipeline) -> list[int]:
    """The order the enumeration assigns stages in (path-predecessors first)."""
    return _structure(pipeline)[3]


def path_edges(pipeline) -> np.ndarray:
    """Every (stage on a path, its immediate path-predecessor) pair as a row, (stage, -1) for a stage with none:
    the completion-time rows t[s] >= t[p] + L[s] of the layer LPs (milp.layer_tangents), the structure the
    enumeration's completion times follow."""
    return cached_for(pipeline, "frontier_edges", _compute_edges)


def _compute_edges(pipeline):
    _paths, preds, on_path, _order, _last = _structure(pipeline)
    rows = []
    for s in range(len(preds)):
        if on_path[s]:
            rows.extend([(s, p) for p in preds[s]] or [(s, -1)])
    return np.array(rows, np.int64).reshape(-1, 2)


def open_stages(pipeline) -> list[list[int]]:
    """Per position k of the order, the open stages once the k-th is assigned (on a path, with a path-successor
    still unassigned), in the order of a partial plan's completion-time columns."""
    return cached_for(pipeline, "frontier_open", _compute_open)


def _compute_open(pipeline):
    _paths, _preds, on_path, order, last_use = _structure(pipeline)
    return [[p for p in order[: k + 1] if on_path[p] and last_use[p] > k] for k in range(len(order))]


def _compute_structure(pipeline):
    """Immediate path-predecessors of each stage (from the explicit source-to-sink paths, like the oracle), the
    order stages are assigned in, and per stage the last position that reads its completion time (-1: none);
    stages on no path carry no latency constraint."""
    names = pipeline.stage_names
    at = {n: i for i, n in enumerate(names)}
    paths = [[at[n] for n in p] for p in pipeline.paths()]
    preds: list[set[int]] = [set() for _ in names]
    on_path = np.zeros(len(names), bool)
    for p in paths:
        for k, s in enumerate(p):
            on_path[s] = True
            if k:
                preds[s].add(p[k - 1])
    # Any order that puts path-predecessors first works; pick, greedily, the ready stage that leaves the fewest
    # open stages, since the frontier's dimension (and size) grows with the number of open completion times.
    succ: list[set[int]] = [set() for _ in names]
    for s, ps in enumerate(preds):
        for p_ in ps:
            succ[p_].add(s)
    done: set[int] = set()
    order: list[int] = []
    topo = [at[n] for n in pipeline.topological_order()]
    while len(order) < len(names):
        ready = [s for s in topo if s not in done and preds[s] <= done]

        def open_after(s: int) -> int:
            now = done | {s}
            return sum(1 for u in now if succ[u] - now)

        s = min(ready, key=open_after)
        order.append(s)
        done.add(s)
    pos = {s: k for k, s in enumerate(order)}
    last_use = [max((pos[c] for c in succ[s]), default=-1) for s in range(len(names))]
    return paths, [sorted(x) for x in preds], on_path, order, last_use


def _pareto_mask(
    vals: np.ndarray, times: np.ndarray, cost: np.ndarray | None, dist: np.ndarray | None = None
) -> np.ndarray:
    """Mask of states not dominated (value max, every time min, every resource use min: `cost` has one column
    per resource; distance min); of exact ties the first stays."""
    n = vals.size
    cols = (
        [-vals[:, None], times] + ([cost] if cost is not None else []) + ([dist[:, None]] if dist is not None else [])
    )
    keys = np.concatenate(cols, axis=1)
    if keys.shape[1] == 1:  # no resource left: the best value dominates all
        alive = np.zeros(n, bool)
        alive[int(np.argmax(vals))] = True
        return alive
    if keys.shape[1] == 2:  # one resource: sort by it, keep the strict running maxima of value
        order = np.lexsort((-vals, keys[:, 1]))
        v = vals[order]
        prev = np.concatenate([[-np.inf], np.maximum.accumulate(v)[:-1]])
        alive = np.zeros(n, bool)
        alive[order[v > prev]] = True
        return alive
    if n > PAIRWISE_DOMINANCE_AT_MOST:
        return np.ones(n, bool)
    return pareto_pairwise(keys)


def best_by_frontier(
    pipeline,
    options: list[StageOptions],
    values: list[np.ndarray],
    *,
    best_known: float,
    upper: float | None = None,
    penalty: list[np.ndarray] | None = None,
    max_states: int = 30_000,
    distance: list[np.ndarray] | None = None,
    tangents: Tangents | None = None,
    beam: bool = False,
):
    """The feasible plan of highest sum(values) (option index per stage), None if there is none, or
    `TooLarge`. `best_known` must be the value of a feasible plan (or -inf); `upper`/`penalty` are the LP
    bound and per-option reduced costs of rule 2 (optional).

    With `distance` (a change cost per option), the least-change plan among those worth at least
    `best_known` - 1e-9 relative (give the optimum): the distance is one more term of the dominance rule (a
    state no better in value, times, cost and distance completes no better), and rules 1-2 with the optimum as
    the floor keep only partial plans that can still reach it, which is what keeps this search small.

    `tangents` (milp.layer_tangents), per position k: (c, mu) with c of shape (J,) and mu (J, open stages at
    k, in `open_stages` order) such that every completion of a partial plan whose open completion times are T
    adds at most min_j c[j] - mu[j] @ T to its value (rule 4: a partial plan whose value plus that bound stays
    below the floor goes). `beam`: a heuristic, not a proof: past `max_states` keep the partial plans of the
    highest value plus bound instead of giving up; the plan returned is feasible (a floor for an exact run)
    but not necessarily optimal."""
    paths, preds, on_path, order, last_use = _structure(pipeline)
    S = len(options)
    sla = pipeline.sla.seconds * (1 + 1e-12)
    limits = resource_limits(pipeline, options)  # the core budget, the host CPU budget (each if set)
    use = [u for u, _ in limits]
    cap = np.array([limit for _, limit in limits])
    tol = 1e-9 * max(1.0, abs(best_known)) if np.isfinite(best_known) else 0.0
    floor = best_known - tol

    fastest = np.array([float(so.lat_slo.min()) for so in options])
    # tail[s]: the longest sum of fastest latencies strictly after s on any path through s
    tail = np.full(S, -np.inf)
    for p in paths:
        suffix = 0.0
        for s in reversed(p):
            tail[s] = max(tail[s], suffix)
            suffix += fastest[s]
    tail = np.where(np.isfinite(tail), tail, 0.0)

    best_rest = np.zeros(S + 1)  # sum of the best values of the stages from position k on
    least_pen = np.zeros(S + 1)
    least_cost = np.zeros((S + 1, len(limits)))
    for k in range(S - 1, -1, -1):
        s = order[k]
        best_rest[k] = best_rest[k + 1] + float(values[s].max())
        least_pen[k] = least_pen[k + 1] + (float(penalty[s].min()) if penalty is not None else 0.0)
        least_cost[k] = least_cost[k + 1] + np.array([float(u[s].min()) for u in use])

    vals = np.zeros(1)
    pen = np.zeros(1)
    cost = np.zeros((1, len(limits)))  # per state, the use of each resource so far
    dist = np.zeros(1)
    open_ids: list[int] = []
    times = np.zeros((1, 0))
    back: list[np.ndarray] = []  # per position: (parent state, option) of each state
    picks: list[np.ndarray] = []
    for k, s in enumerate(order):
        so, v = options[s], values[s]
        m = len(so)
        # every state extended by every option, as an (states, options) grid; only survivors are flattened
        nv = vals[:, None] + v[None, :]
        ok = nv + best_rest[k + 1] >= floor
        np_ = pen[:, None] + (penalty[s][None, :] if penalty is not None else 0.0)
        if upper is not None:  # LP duals carry simplex tolerances: this bound keeps 1e-7 more slack
            ok &= upper - np_ - least_pen[k + 1] >= floor - 1e-7
        if limits:
            nc = cost[:, None, :] + np.stack([u[s] for u in use], axis=1)[None, :, :]
            ok &= (nc + least_cost[k + 1] <= cap + 1e-9).all(axis=2)
        if on_path[s]:
            cols = [open_ids.index(p) for p in preds[s]]
            start = times[:, cols[0]] if len(cols) == 1 else times[:, cols].max(axis=1) if cols else np.zeros(vals.size)
            ts = start[:, None] + so.lat_slo[None, :]
            ok &= ts + tail[s] <= sla
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        parent = idx // m
        opt = idx - parent * m
        nv, np_ = nv.ravel()[idx], np.broadcast_to(np_, ok.shape).ravel()[idx]
        nc = nc.reshape(-1, len(limits))[idx] if limits else cost[parent]
        nd = dist[parent] + distance[s][opt] if distance is not None else dist[parent]
        keep_cols = [j for j, p in enumerate(open_ids) if last_use[p] > k]
        new_open = [open_ids[j] for j in keep_cols]
        grow = on_path[s] and last_use[s] > k
        nt = np.empty((idx.size, len(keep_cols) + grow))
        nt[:, : len(keep_cols)] = times[parent][:, keep_cols] if len(keep_cols) < len(open_ids) else times[parent]
        if grow:
            nt[:, -1] = ts.ravel()[idx]
            new_open.append(s)
        room = None
        if tangents is not None and nv.size > TANGENTS_ABOVE:
            c, mu = tangents[k]
            if c.size:
                room = nv + (c[None, :] - nt @ mu.T).min(axis=1)
                a = np.flatnonzero(room >= floor - 1e-7)  # 1e-7: the duals carry simplex tolerances
                if a.size == 0:
                    return None
                if a.size < nv.size:
                    parent, opt, nv, np_, nc, nt, nd = parent[a], opt[a], nv[a], np_[a], nc[a], nt[a], nd[a]
                    room = room[a]
        if room is None:
            room = nv
        alive = _pareto_mask(nv, nt, nc if limits else None, nd if distance is not None else None)
        if not alive.all():
            a = np.flatnonzero(alive)
            parent, opt, nv, np_, nc, nt, nd, room = parent[a], opt[a], nv[a], np_[a], nc[a], nt[a], nd[a], room[a]
        if nv.size > max_states:
            if not beam:
                return TooLarge
            a = np.argsort(-room, kind="stable")[:max_states]
            parent, opt, nv, np_, nc, nt, nd = parent[a], opt[a], nv[a], np_[a], nc[a], nt[a], nd[a]
        vals, pen, cost, times, dist, open_ids = nv, np_, nc, nt, nd, new_open
        back.append(parent)
        picks.append(opt)
    # every complete plan left is worth at least the floor (rule 2 with nothing left to add); the least
    # distance among them, of equal distances the highest value
    i = int(np.lexsort((-vals, dist))[0]) if distance is not None else int(np.argmax(vals))
    choice = [0] * S
    for k in range(S - 1, -1, -1):
        choice[order[k]] = int(picks[k][i])
        i = int(back[k][i])
    return choice
