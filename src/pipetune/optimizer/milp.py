"""The exact decision: a mixed-integer linear program solved by HiGHS.

Variables
  y[s,o] in {0,1}   stage s runs option o (a (variant, batch, cores, replicas) tuple; see options.py)
  t[s]   in [0,SLA] completion time of stage s along the slowest path that reaches it
  w[k,v] >= 0       (pas only) running product of stage accuracies, see below
Constraints
  sum_o y[s,o] = 1                                   one option per stage
  t[s] >= t[p] + sum_o L[s,o] y[s,o]  for edges p->s  longest path (sources: t[s] >= L_s)
  sum cost[s,o] y[s,o] <= budget                     total cores, if capped
Objective (maximise)
  alpha * A  -  beta * sum cost y  -  gamma * sum batch y

A is linear in y for sum / mean / rank_sum. For pas (product of stage accuracies) it is made linear *exactly*:
order the stages with more than one variant s_1..s_K; P_1 = sum_v a[1,v] x[1,v] with x[s,v] = sum_{o of v} y[s,o];
for k >= 2 introduce w[k,v] = P_{k-1} * x[k,v] through
  w[k,v] <= U_{k-1} x[k,v]      (U_{k-1} = product of the best accuracies so far, a valid bound on P_{k-1})
  sum_v w[k,v] <= P_{k-1}
and P_k = sum_v a[k,v] w[k,v]. Because x is binary and the objective pushes P_K up (alpha >= 0), every optimum
has w[k,v] = P_{k-1} x[k,v] exactly: the product of a binary and a bounded continuous variable needs no
approximation. Stages with a single variant contribute a constant factor. No term multiplies two decision
variables, so there is nothing bilinear (IPA's Gurobi model multiplies replicas by batch-dependent latency).
"""

from __future__ import annotations

from dataclasses import dataclass

import highspy
import numpy as np

from pipetune.optimizer.options import StageOptions

INF = highspy.kHighsInf


@dataclass
class Solution:
    choice: list[int]  # option index per stage (pipeline stage order)
    objective: float
    status: str


class _Builder:
    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.integer: list[bool] = []
        self.rows: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    def add_cols(self, n: int, cost, lo, hi, integer: bool) -> np.ndarray:
        start = len(self.cost)
        self.cost.extend(np.broadcast_to(np.asarray(cost, float), (n,)).tolist())
        self.lo.extend(np.broadcast_to(np.asarray(lo, float), (n,)).tolist())
        self.hi.extend(np.broadcast_to(np.asarray(hi, float), (n,)).tolist())
        self.integer.extend([integer] * n)
        return np.arange(start, start + n)

    def add_row(self, idx, val, lo: float, hi: float) -> None:
        self.rows.append((np.asarray(idx, np.int64), np.asarray(val, float), lo, hi))

    def lp(self) -> highspy.HighsLp:
        lp = highspy.HighsLp()
        ncol, nrow = len(self.cost), len(self.rows)
        lp.num_col_, lp.num_row_ = ncol, nrow
        lp.col_cost_ = np.array(self.cost)
        lp.col_lower_ = np.array(self.lo)
        lp.col_upper_ = np.array(self.hi)
        lp.row_lower_ = np.array([r[2] for r in self.rows])
        lp.row_upper_ = np.array([r[3] for r in self.rows])
        # Row-wise entries, converted to the column-wise (CSC) form HiGHS expects.
        ri = np.concatenate([np.full(r[0].size, i, np.int64) for i, r in enumerate(self.rows)])
        ci = np.concatenate([r[0] for r in self.rows])
        v = np.concatenate([r[1] for r in self.rows])
        order = np.lexsort((ri, ci))
        ri, ci, v = ri[order], ci[order], v[order]
        starts = np.searchsorted(ci, np.arange(ncol + 1))
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = ncol
        lp.a_matrix_.num_row_ = nrow
        lp.a_matrix_.start_ = starts.astype(np.int32)
        lp.a_matrix_.index_ = ri.astype(np.int32)
        lp.a_matrix_.value_ = v
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in self.integer
        ]
        return lp


def solve(
    pipeline,
    options: list[StageOptions],
    *,
    distance: list[np.ndarray] | None = None,
    time_limit_s: float = 30.0,
) -> Solution | None:
    """Maximise the objective over one option per stage; None if infeasible.

    With `distance` (a per-option change cost against the current configuration), a second solve picks, among
    the optimal plans, the one with the least change.
    """
    obj = pipeline.objective
    names = pipeline.stage_names
    sla = pipeline.sla.seconds
    budget = pipeline.caps.max_total_cores
    bld = _Builder()
    y: list[np.ndarray] = []
    for so in options:
        y.append(bld.add_cols(len(so), 0.0, 0.0, 1.0, True))
    t = bld.add_cols(len(names), 0.0, 0.0, sla, False)
    pos = {n: i for i, n in enumerate(names)}

    # objective, as a sparse vector to minimise (the negated maximisation)
    obj_idx: list[np.ndarray] = []
    obj_val: list[np.ndarray] = []
    for so, ys in zip(options, y):
        obj_idx.append(ys)
        obj_val.append(obj.beta * so.cost + obj.gamma * so.batch)
    if obj.accuracy == "pas":
        acc_idx, acc_val = _pas_product(bld, options, y)
    else:
        acc_idx = np.concatenate(y)
        acc_val = np.concatenate([so.acc_coef for so in options])
    obj_idx.append(acc_idx)
    obj_val.append(-obj.alpha * acc_val)
    oi, ov = np.concatenate(obj_idx), np.concatenate(obj_val)

    for so, ys in zip(options, y):
        bld.add_row(ys, np.ones(len(so)), 1.0, 1.0)
    for st, so, ys in zip(names, options, y):
        ins = pipeline.parents(st)
        if not ins:
            bld.add_row(np.concatenate([[t[pos[st]]], ys]), np.concatenate([[1.0], -so.lat_slo]), 0.0, INF)
        for e in ins:
            bld.add_row(
                np.concatenate([[t[pos[st]], t[pos[e.src]]], ys]),
                np.concatenate([[1.0, -1.0], -so.lat_slo]),
                0.0,
                INF,
            )
    if budget is not None:
        bld.add_row(np.concatenate(y), np.concatenate([so.cost for so in options]), -INF, float(budget))

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    # The feasibility-jump heuristic costs ~5 ms per call and never helps these small models (measured).
    h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 1e-10)
    h.setOptionValue("time_limit", float(time_limit_s))
    # Accumulate duplicate indices (a column may appear twice in the objective lists).
    costs = np.zeros(len(bld.cost))
    np.add.at(costs, oi, ov)
    bld.cost = costs.tolist()
    h.passModel(bld.lp())
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    if status != "Optimal":
        return None
    best = -h.getInfo().objective_function_value
    sol = np.array(h.getSolution().col_value)

    if distance is not None:
        # Lexicographic second stage: stay within the optimum, minimise the change.
        tol = 1e-9 * max(1.0, abs(best))
        h.addRow(-INF, -best + tol, int(oi.size), oi.astype(np.int32), ov)
        dcost = np.zeros(len(bld.cost))
        for ys, d in zip(y, distance):
            dcost[ys] = d
        h.changeColsCost(len(dcost), np.arange(len(dcost), dtype=np.int32), dcost)
        h.run()
        if h.modelStatusToString(h.getModelStatus()) == "Optimal":
            sol = np.array(h.getSolution().col_value)
    choice = [int(np.argmax(sol[ys])) for ys in y]
    return Solution(choice=choice, objective=best, status=status)


def _pas_product(bld: _Builder, options: list[StageOptions], y: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Add the exact product linearisation; return the sparse expression of the pipeline accuracy."""
    const = 1.0
    chain: list[tuple[StageOptions, np.ndarray]] = []
    for so, ys in zip(options, y):
        variants = np.unique(so.var_idx)
        if variants.size == 1:
            const *= float(so.acc[0])
        else:
            chain.append((so, ys))
    if not chain:
        # Accuracy is a constant: express it through any one-per-stage row (sum y = 1) of the first stage.
        so, ys = options[0], y[0]
        return ys, np.full(len(so), const)
    so, ys = chain[0]
    p_idx, p_val = ys, so.acc * const  # P_1 (constants folded in)
    bound = float(so.acc.max()) * const
    for so, ys in chain[1:]:
        variants = np.unique(so.var_idx)
        w = bld.add_cols(variants.size, 0.0, 0.0, bound, False)
        a_v = np.empty(variants.size)
        for j, v in enumerate(variants):
            members = ys[so.var_idx == v]
            a_v[j] = float(so.acc[so.var_idx == v][0])
            # w_v - U x_v <= 0
            bld.add_row(np.concatenate([[w[j]], members]), np.concatenate([[1.0], np.full(members.size, -bound)]),
                        -INF, 0.0)
        # sum_v w_v - P_{k-1} <= 0
        bld.add_row(np.concatenate([w, p_idx]), np.concatenate([np.ones(w.size), -p_val]), -INF, 0.0)
        p_idx, p_val = w, a_v
        bound *= float(a_v.max())
    return p_idx, p_val
