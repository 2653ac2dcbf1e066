"""The exact decision: mixed-integer linear programs solved by HiGHS.

The linear model, `MILP(v)`, for a value v[s,o] per option
  variables    y[s,o] in {0,1}   stage s runs option o (a (variant, batch, cores, replicas); see options.py)
  maximise     sum v[s,o] y[s,o]
  subject to   sum_o y[s,o] = 1                               one option per stage
               sum_{s in path} sum_o L[s,o] y[s,o] <= SLA     every source-to-sink path (a DAG with many paths
                                                              uses completion-time variables t[s] instead)
               sum cost[s,o] y[s,o] <= budget                 total cores, if capped
Latency L and cost are constants of an option (replicas follow in closed form from the other knobs), so nothing
is bilinear (IPA's Gurobi model multiplies replicas by batch-dependent terms and needs NonConvex=2).

Linear accuracy methods (sum, mean, rank_sum): one MILP with v = alpha*acc - beta*cost - gamma*batch.

Product accuracy (pas) is handled exactly by a short parametric search over *linear* MILPs. Write
z = sum log(acc) (linear in y) and C = beta*cost + gamma*batch, so the objective is g = alpha*e^z - C.
 1. The optimum is a *supported* point of the (z, C) trade-off: any plan between two supported plans has a cost
    at least their interpolation, and alpha*e^z - (interpolated C) is convex along the segment, so it is no
    better than one of the two ends.
 2. At the optimum (z*, C*), the plan maximises the linear value lambda*z - C with lambda = alpha*e^{z*}
    (because alpha*e^z lies above its tangent), i.e. it is found by MILP(lambda*z - C).
 3. Phi(lambda) = max (lambda*z - C) is convex and piecewise linear, and max g = sup_lambda Phi(lambda) - h(lambda)
    with h the convex conjugate of alpha*e^z. Over an interval [a, b] of lambda, Phi is at most the chord of
    its end values, which bounds every plan whose lambda lies inside; intervals whose bound cannot beat the best
    plan found are closed, the others are split: first where that bound is attained (exact Phi there cuts the
    bound most), and, when that finds no plan above the end lines, where the two end plans' lines cross
    (Eisner-Severance). On the pas instances of three benchmark draws (15 at 9x9, 17 at 25x9) this takes 54 and
    79 MILPs instead of 67 and 117 with crossings only.
Every step is an exact MILP and the bound is valid, so the result is the optimum, with no approximation of the
product. In practice 1-8 MILPs are solved (3.4 on average at 9x9, 3.8 at 25x9).

More exact cuts keep the number of MILPs small: the search starts at the most accurate end (lambda_b) with only
its LP (an upper bound of Phi there) and the LP's rounded plan, and solves that MILP only if an interval next to
it stays open; it raises the low end to (best g known) + (least penalty), below which no plan beats the best
known one; and before paying for the exact finishing at a split point lambda_x, the LP optimum there is used in
the chord bounds of both halves, which often closes them. (The chord bound needs only upper bounds of Phi at the
ends; the lines of exact end plans are needed only to find crossings and flat sides.) On the pas instances of
three benchmark draws, the lazy end took the MILPs from 54 to 51 at 9x9 and from 79 to 64 at 25x9.

Each MILP is shrunk first, exactly, by LP reduced costs against a good feasible plan (`reduce_by_lp`). What
survives is finished by flat enumeration when at most ENUMERATE_AT_MOST combinations are left, else by the
dominance-and-bound enumeration of frontier.py (exact; argument there), and only when that outgrows
FRONTIER_MAX_STATES partial plans by HiGHS branch and bound. DAGs wider than FRONTIER_MAX_WIDTH open completion
times with more than FRONTIER_DIRECT_ABOVE combinations left go to HiGHS directly: there the enumeration's bounds
are too weak to keep it small. HiGHS solves
every LP relaxation, and is the solver of record for the MILPs it gets; the enumerations are exact finishers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np

from pipetune.errors import SolverError
from pipetune.optimizer.frontier import TooLarge, best_by_frontier, frontier_width
from pipetune.optimizer.incumbent import (
    best_by_enumeration,
    cached_for,
    linear_values,
    local_search,
    objective_of,
)
from pipetune.optimizer.options import StageOptions

INF = highspy.kHighsInf
MAX_PATH_ROWS = 16  # above this many source-to-sink paths, completion-time variables (fewer nonzeros; 0.89x
# geo-mean decision time against 64 on 80 random 25x9 instances)
ENUMERATE_AT_MOST = 1000  # combinations left after the LP reduction that are listed flat (above: frontier.py)
FRONTIER_MAX_STATES = 30_000  # partial plans the exact enumeration may hold before HiGHS branches instead
FRONTIER_MAX_WIDTH = 4  # wider DAGs (more open completion times at once) with more than
FRONTIER_DIRECT_ABOVE = 1e9  # this many combinations left go to HiGHS directly (frontier_width)
LOG_ZERO = -700.0  # log of a zero accuracy (e^-700 == 0.0 in floating point)


@dataclass
class Solution:
    choice: list[int]  # option index per stage (pipeline stage order), into `options`
    objective: float
    status: str
    options: list[StageOptions]  # the (possibly reduced) option sets `choice` indexes
    milps: int = 1  # how many MILPs were solved


class _Builder:
    """Columns and rows of a model as numpy blocks (per-element Python lists cost more than the solve)."""

    def __init__(self) -> None:
        self.ncol = 0
        self.cost: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.rows: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    def add_cols(self, n: int, cost, lo, hi, integer: bool) -> np.ndarray:
        start = self.ncol
        self.cost.append(np.broadcast_to(np.asarray(cost, float), (n,)))
        self.lo.append(np.broadcast_to(np.asarray(lo, float), (n,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, float), (n,)))
        self.integer.append(np.full(n, integer))
        self.ncol += n
        return np.arange(start, start + n)

    def add_row(self, idx, val, lo: float, hi: float) -> None:
        self.rows.append((np.asarray(idx, np.int64), np.asarray(val, float), lo, hi))

    def lp(self, relax: bool = False) -> highspy.HighsLp:
        lp = highspy.HighsLp()
        ncol, nrow = self.ncol, len(self.rows)
        lp.num_col_, lp.num_row_ = ncol, nrow
        lp.col_cost_ = np.concatenate(self.cost)
        lp.col_lower_ = np.concatenate(self.lo)
        lp.col_upper_ = np.concatenate(self.hi)
        lp.row_lower_ = np.array([r[2] for r in self.rows], float)
        lp.row_upper_ = np.array([r[3] for r in self.rows], float)
        # Row-wise entries, converted to the column-wise (CSC) form HiGHS expects.
        ri = np.repeat(np.arange(nrow), [r[0].size for r in self.rows])
        ci = np.concatenate([r[0] for r in self.rows])
        v = np.concatenate([r[1] for r in self.rows])
        order = np.argsort(ci, kind="stable")  # rows were added in order, so row order within a column holds
        ri, ci, v = ri[order], ci[order], v[order]
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = ncol
        lp.a_matrix_.num_row_ = nrow
        lp.a_matrix_.start_ = np.searchsorted(ci, np.arange(ncol + 1)).astype(np.int32)
        lp.a_matrix_.index_ = ri.astype(np.int32)
        lp.a_matrix_.value_ = v
        if not relax:
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                for i in np.concatenate(self.integer).tolist()
            ]
        return lp


@dataclass
class _Model:
    builder: _Builder
    y: list[np.ndarray]  # column indices of each stage's options
    cut: np.ndarray  # the option columns come first, stage after stage: stage s owns columns cut[s]:cut[s+1]


def _build(pipeline, options: list[StageOptions], values: list[np.ndarray]) -> _Model:
    """MILP(v): maximise sum v y (stored negated: HiGHS minimises) under the SLA and budget rows."""
    names = pipeline.stage_names
    sla = pipeline.sla.seconds
    budget = pipeline.caps.max_total_cores
    bld = _Builder()
    cut = np.cumsum([0] + [len(so) for so in options])
    cols = bld.add_cols(int(cut[-1]), -np.concatenate(values), 0.0, 1.0, True)  # all options, stage after stage
    y = [cols[a:b] for a, b in zip(cut[:-1], cut[1:])]
    pos = {n: i for i, n in enumerate(names)}
    for so, ys in zip(options, y):
        bld.add_row(ys, np.ones(len(so)), 1.0, 1.0)
    paths = cached_for(pipeline, "paths", lambda p: p.paths())
    if len(paths) <= MAX_PATH_ROWS:
        for path in paths:
            bld.add_row(
                np.concatenate([y[pos[n]] for n in path]),
                np.concatenate([options[pos[n]].lat_slo for n in path]),
                -INF,
                sla,
            )
    else:
        t = bld.add_cols(len(names), 0.0, 0.0, sla, False)
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
    return _Model(bld, y, cut)


# What each HiGHS model status means for a plan: "optimal", "infeasible", or why there is no answer and the fix
# (a SolverError). Keyed by name, so that a status a newer highspy adds, or one an older one lacks, is no error
# here; a status not listed is a SolverError too (test_trust_solver_status checks every member is listed).
_BUG = "a bug in pipetune's model or in HiGHS; report it with the pipeline (PIPETUNE_TRACEBACK=1 shows where)"
_STATUS: dict[str, tuple[str, str]] = {
    "kOptimal": ("optimal", ""),
    "kInfeasible": ("infeasible", ""),
    # every column is bounded (0 <= y <= 1, 0 <= t <= SLA), so the model cannot be unbounded: infeasible
    "kUnboundedOrInfeasible": ("infeasible", ""),
    "kUnbounded": ("error", "every column is bounded, so this is " + _BUG),
    "kTimeLimit": ("error", "the time limit ran out; raise time_limit_s (of plan_pipeline or solve; default 30 s)"),
    "kIterationLimit": ("error", "an iteration limit ran out; pipetune sets none, so look for one set on HiGHS"),
    "kSolutionLimit": ("error", "a solution or node limit ran out; pipetune sets none, so look for one set on HiGHS"),
    "kObjectiveBound": ("error", "an objective bound stopped the solve; pipetune sets none, so this is " + _BUG),
    "kObjectiveTarget": ("error", "an objective target stopped the solve; pipetune sets none, so this is " + _BUG),
    "kInterrupt": ("error", "the solve was interrupted; run it again"),
    "kHighsInterrupt": ("error", "the solve was interrupted; run it again"),
    "kMemoryLimit": ("error", "HiGHS ran out of memory; free memory or offer fewer variants, batch sizes or cores"),
    "kLoadError": ("error", _BUG),
    "kModelError": ("error", _BUG),
    "kPresolveError": ("error", _BUG),
    "kSolveError": ("error", _BUG),
    "kPostsolveError": ("error", _BUG),
    "kModelEmpty": ("error", "pipetune never builds an empty model, so this is " + _BUG),
    "kNotset": ("error", "the solve did not run, so this is " + _BUG),
    "kUnknown": ("error", "HiGHS could not decide; " + _BUG),
}


def _outcome(h: highspy.Highs, phase: str, pipeline=None) -> str:
    """The outcome of the run `h` just finished, "optimal" or "infeasible"; any other status (a limit, an
    interrupt, a solver error) raises SolverError: a solve without an answer is never reported as infeasible."""
    status = h.getModelStatus()
    name = getattr(status, "name", str(status))
    outcome, fix = _STATUS.get(name, ("error", "a status pipetune does not know; " + _BUG))
    if outcome != "error":
        return outcome
    of = f" of pipeline {pipeline.name!r}" if pipeline is not None and hasattr(pipeline, "name") else ""
    raise SolverError(
        f"HiGHS stopped the {phase}{of} without an answer (status {name}: {h.modelStatusToString(status)}): {fix}",
        status=name,
        phase=phase,
    )


# The first highspy whose HiGHS has every option `_highs` sets (the mip_heuristic_run_* switches came in HiGHS
# 1.11.0); pyproject.toml requires it.
HIGHSPY_MIN = "1.11"


def _set(h: highspy.Highs, option: str, value) -> None:
    """Set a HiGHS option; one HiGHS does not know (an older highspy) or rejects is an error, never ignored."""
    if h.setOptionValue(option, value) == highspy.HighsStatus.kError:
        version = f"{h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"
        raise SolverError(
            f"HiGHS {version} rejects option {option}={value!r}; pipetune needs highspy>={HIGHSPY_MIN} "
            f"(pip install 'highspy>={HIGHSPY_MIN}')",
            status="kError",
            phase="setup",
        )


def _pass_model(h: highspy.Highs, lp: highspy.HighsLp, phase: str) -> None:
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS rejected the {phase} model: {_BUG}", status="kError", phase=phase)


_banner_shown = False


def _new_highs() -> highspy.Highs:
    """A Highs object; the first one in a process prints a banner on C stdout, which would corrupt JSON
    output, so that one is made with file descriptor 1 pointed at /dev/null."""
    global _banner_shown
    if _banner_shown:
        return highspy.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        _banner_shown = True
    return h


def _highs(time_limit_s: float) -> highspy.Highs:
    h = _new_highs()
    _set(h, "output_flag", False)
    _set(h, "threads", 1)
    # Measured on these models: feasibility jump and the sub-MIP heuristics (RINS/RENS) took most of the
    # time and found nothing the MIP start does not already give.
    _set(h, "mip_heuristic_run_feasibility_jump", False)
    _set(h, "mip_heuristic_run_rins", False)
    _set(h, "mip_heuristic_run_rens", False)
    # Measured on the 25x9 benchmark models that reach branch and bound (29 models, CPU time, best of 3):
    # no restart after root fixings and strong branching trusted after 4 (not 8) pseudo-cost samples took the
    # geometric-mean solve time to 0.69x of the defaults. Both only steer the search; the optimum is the same.
    _set(h, "mip_allow_restart", False)
    _set(h, "mip_pscost_minreliable", 4)
    _set(h, "mip_rel_gap", 0.0)
    _set(h, "mip_abs_gap", 1e-10)
    # Rows hold to 1e-9, not HiGHS's default 1e-6: a path could exceed the SLA by a microsecond, and the least-change
    # MILP's value row took plans one batch unit (gamma = 1e-6) below the optimum. No measurable cost on the 25x9
    # models that branch (geometric mean 0.99x).
    _set(h, "mip_feasibility_tolerance", 1e-9)
    _set(h, "primal_feasibility_tolerance", 1e-9)
    _set(h, "time_limit", float(time_limit_s))
    return h


def _value_of(values: list[np.ndarray], choice: list[int]) -> float:
    return float(sum(v[c] for v, c in zip(values, choice)))


def _local_improve(pipeline, options, values, start: list[int]) -> list[int]:
    return local_search(pipeline, options, start=start, values=values) or start


@dataclass
class _Reduction:
    options: list[StageOptions]
    values: list[np.ndarray]
    start: list[int] | None  # a feasible plan (indices into the reduced sets), None if none was found
    kept: list[np.ndarray]  # indices of the kept options per stage, into the unreduced sets
    upper: float  # LP optimum: a bound on every feasible plan's value
    penalty: list[np.ndarray]  # reduced cost (>= 0) of each kept option
    start_value: float


class _Relaxation:
    """The LP relaxation of MILP(v) over fixed option sets, built once; each `run(values)` only changes the
    objective, so HiGHS restarts from the previous optimal basis (the parametric search solves it per lambda)."""

    def __init__(self, pipeline, options: list[StageOptions], time_limit_s: float = 30.0) -> None:
        self.pipeline = pipeline
        self.m = _build(pipeline, options, [np.zeros(len(so)) for so in options])
        self.h = _highs(time_limit_s)
        # No presolve for these LPs (a few hundred columns): median 3.3 -> 1.6 ms on the 25x9 benchmark's first
        # relaxations; the later runs start from the previous basis anyway.
        _set(self.h, "presolve", "off")
        _pass_model(self.h, self.m.builder.lp(relax=True), "LP relaxation")
        self.cut = self.m.cut
        self.cols = np.arange(self.cut[-1], dtype=np.int32)
        self.stage_of = np.repeat(np.arange(len(options)), np.diff(self.cut))
        self.lat = np.concatenate([so.lat_slo for so in options])

    def run(self, values: list[np.ndarray]) -> highspy.Highs | None:
        """The solved LP, or None if it is infeasible (then so is every plan); a limit raises SolverError."""
        self.h.changeColsCost(int(self.cols.size), self.cols, -np.concatenate(values))
        self.h.run()
        return self.h if _outcome(self.h, "LP relaxation", self.pipeline) == "optimal" else None


def _reduce(
    pipeline,
    options: list[StageOptions],
    values: list[np.ndarray],
    relaxation: _Relaxation | None = None,
    time_limit_s: float = 30.0,
) -> _Reduction | None:
    """The reduction of `reduce_by_lp`, or None when the LP relaxation is infeasible (so is every plan)."""
    relaxation = relaxation or _Relaxation(pipeline, options, time_limit_s)
    h = relaxation.run(values)
    if h is None:
        return None
    upper = -h.getInfo().objective_function_value
    sol = h.getSolution()
    n = relaxation.cols.size
    x = np.asarray(sol.col_value)[:n]
    d = np.maximum(np.asarray(sol.col_dual)[:n], 0.0)  # minimisation reduced costs: >= 0 at a lower bound
    # start: per stage the fastest option in the LP support (or the fastest option, if the support is empty)
    cut, stage_of = relaxation.cut, relaxation.stage_of
    in_support = x > 1e-9
    has = np.zeros(len(options), bool)
    has[stage_of[in_support]] = True
    key = np.where(in_support | ~has[stage_of], relaxation.lat, np.inf)
    first = np.lexsort((key, stage_of))[cut[:-1]]  # per stage, the least key (first index among ties)
    start = (first - cut[:-1]).tolist()
    if pipeline.caps.max_total_cores is not None:
        start = local_search(pipeline, options, values=values)  # the LP support may break the budget
        if start is None:
            return _Reduction(
                options, values, None, [np.arange(len(so)) for so in options], upper, np.split(d, cut[1:-1]), -math.inf
            )
    else:
        start = _local_improve(pipeline, options, values, start)
    best = _value_of(values, start)
    tol = 1e-9 * max(1.0, abs(best))
    keep = upper - d >= best - tol
    keep[cut[:-1] + np.asarray(start)] = True
    kept, red_o, red_v, red_start, red_pen = [], [], [], [], []
    for k, (so, v, c) in enumerate(zip(options, values, start)):
        idx = np.flatnonzero(keep[cut[k] : cut[k + 1]])
        kept.append(idx)
        red_o.append(so.take(idx) if idx.size < len(so) else so)
        red_v.append(v[idx])
        red_pen.append(d[cut[k] : cut[k + 1]][idx])
        red_start.append(int(np.searchsorted(idx, c)))
    return _Reduction(red_o, red_v, red_start, kept, upper, red_pen, best)


def reduce_by_lp(pipeline, options: list[StageOptions], values: list[np.ndarray]):
    """Exact reduction by LP reduced costs, for MILP(values).

    Solve the LP relaxation (an upper bound U) and build a good feasible plan from it (the fastest option in each
    stage's LP support keeps every latency row satisfied, then a local search improves it; value V). An option
    whose reduced cost d gives U - d < V cannot be in any optimal plan: drop it. Returns (options, values,
    start plan, kept indices per stage), or None when the LP is infeasible.
    """
    r = _reduce(pipeline, options, values)
    return None if r is None else (r.options, r.values, r.start, r.kept)


def solve_linear(
    pipeline, options: list[StageOptions], values: list[np.ndarray], *, time_limit_s: float = 30.0
) -> tuple[list[int], float] | None:
    """Exact MILP(values): (option index per stage into `options`, optimal value), or None if infeasible."""
    red = _reduce(pipeline, options, values, time_limit_s=time_limit_s)
    if red is None:
        return None
    return _finish(pipeline, values, red, time_limit_s)


def _finish(pipeline, values: list[np.ndarray], red: _Reduction, time_limit_s: float):
    """The exact optimum of MILP(values) over the options that survived the reduction `red`."""
    r_opts, r_vals, start, kept = red.options, red.values, red.start, red.kept
    combos = math.prod(len(so) for so in r_opts)
    if combos <= ENUMERATE_AT_MOST:
        # Few combinations survive the exact reduction: finishing by complete enumeration is exact and
        # cheaper than another HiGHS run (which costs a few ms even on a trivial model).
        local = best_by_enumeration(pipeline, r_opts, r_vals)
    elif combos > FRONTIER_DIRECT_ABOVE and frontier_width(pipeline) > FRONTIER_MAX_WIDTH:
        local = _branch(pipeline, r_opts, r_vals, start, time_limit_s)
    else:
        # Larger remainders of chains and narrow DAGs: enumeration with exact dominance and LP bounds
        # (frontier.py), which gives up (TooLarge) rather than grow past FRONTIER_MAX_STATES partial plans;
        # then HiGHS branches.
        local = best_by_frontier(
            pipeline,
            r_opts,
            r_vals,
            best_known=red.start_value,
            upper=red.upper,
            penalty=red.penalty,
            max_states=FRONTIER_MAX_STATES,
        )
        if local is TooLarge:
            local = _branch(pipeline, r_opts, r_vals, start, time_limit_s)
    if local is None:
        return None
    choice = [int(k[c]) for k, c in zip(kept, local)]
    return choice, _value_of(values, choice)


def _branch(pipeline, r_opts, r_vals, start, time_limit_s: float) -> list[int] | None:
    """MILP(values) on the reduced sets by HiGHS branch and bound, with the feasible plan as a MIP start."""
    m = _build(pipeline, r_opts, r_vals)
    h = _highs(time_limit_s)
    _pass_model(h, m.builder.lp(), "branch and bound")
    if start is not None:
        idx = np.concatenate(m.y).astype(np.int32)
        val = np.concatenate([(np.arange(len(so)) == c).astype(float) for so, c in zip(r_opts, start)])
        h.setSolution(int(idx.size), idx, val)  # a MIP start; HiGHS completes any continuous columns
    h.run()
    if _outcome(h, "branch and bound", pipeline) == "infeasible":
        return None
    sol = np.array(h.getSolution().col_value)
    return [int(np.argmax(sol[ys])) for ys in m.y]


def least_change(
    pipeline,
    options,
    values,
    optimum: float,
    distance: list[np.ndarray],
    *,
    time_limit_s: float = 30.0,
    reduction: _Reduction | None = None,
    known: list[int] | None = None,
) -> list[int] | None:
    """Among plans with value >= optimum (up to 1e-9 relative), the one with the least `distance`.

    Exact reduction first: a plan of value >= optimum - tol can only use options whose LP reduced-cost bound
    U - d reaches optimum - tol (the argument of `reduce_by_lp`, with the optimum as the known value), which
    leaves few options; small remainders are then listed flat, larger ones go to HiGHS, with `known` (a plan
    worth the optimum, e.g. the one just found) as its MIP start.
    """
    tol = 1e-9 * max(1.0, abs(optimum))
    # `reduction`: the one already made for `values`
    red = reduction or _reduce(pipeline, options, values, time_limit_s=time_limit_s)
    if red is None:
        return None
    kept, sub_o, sub_v, sub_d = [], [], [], []
    for k, so_r, v_r, pen in zip(red.kept, red.options, red.values, red.penalty):
        keep = np.nonzero(red.upper - pen >= optimum - tol - 1e-7)[0]  # 1e-7: simplex tolerances on duals
        if keep.size == 0:  # cannot happen for a true optimum; keep everything rather than guess
            keep = np.arange(len(so_r))
        kept.append(k[keep])
        sub_o.append(so_r.take(keep))
        sub_v.append(v_r[keep])
    sub_d = [d[k] for d, k in zip(distance, kept)]
    if math.prod(len(so) for so in sub_o) <= ENUMERATE_AT_MOST * 20:
        local = _least_change_by_enumeration(pipeline, sub_o, sub_v, optimum - tol, sub_d)
    else:
        m = _build(pipeline, sub_o, [-d for d in sub_d])  # maximise -distance
        m.builder.add_row(np.concatenate(m.y), np.concatenate(sub_v), optimum - tol, INF)
        h = _highs(time_limit_s)
        _pass_model(h, m.builder.lp(), "least-change MILP")
        at = [np.flatnonzero(k == c) for k, c in zip(kept, known)] if known is not None else []
        if at and all(i.size for i in at):  # a MIP start: the known optimal plan, if the reduction kept it
            idx = np.concatenate(m.y).astype(np.int32)
            h.setSolution(
                int(idx.size),
                idx,
                np.concatenate([(np.arange(len(so)) == i[0]).astype(float) for so, i in zip(sub_o, at)]),
            )
        h.run()
        # infeasible only by tolerances (the optimum itself reaches the value row): keep the optimum
        if _outcome(h, "least-change MILP", pipeline) == "infeasible":
            return None
        sol = np.array(h.getSolution().col_value)
        local = [int(np.argmax(sol[ys])) for ys in m.y]
    if local is None:
        return None
    return [int(k[c]) for k, c in zip(kept, local)]


def _least_change_by_enumeration(pipeline, options, values, floor: float, distance) -> list[int] | None:
    from pipetune.optimizer.incumbent import _path_matrix

    sizes = [len(so) for so in options]
    grid = np.indices(sizes).reshape(len(sizes), -1)
    lat = np.stack([so.lat_slo[grid[i]] for i, so in enumerate(options)])
    ok = (_path_matrix(pipeline).astype(float) @ lat).max(axis=0) <= pipeline.sla.seconds * (1 + 1e-12)
    if pipeline.caps.max_total_cores is not None:
        ok &= sum(so.cost[grid[i]] for i, so in enumerate(options)) <= pipeline.caps.max_total_cores + 1e-9
    ok &= sum(v[grid[i]] for i, v in enumerate(values)) >= floor
    if not ok.any():
        return None
    total = np.where(ok, sum(d[grid[i]] for i, d in enumerate(distance)), np.inf)
    return [int(x) for x in grid[:, int(np.argmin(total))]]


def _pas_parts(pipeline, options):
    obj = pipeline.objective
    z = [np.where(so.acc > 0, np.log(np.maximum(so.acc, 1e-300)), LOG_ZERO) for so in options]
    c = [obj.beta * so.cost + obj.gamma * so.batch for so in options]
    return z, c


def _solve_pas(pipeline, options: list[StageOptions], time_limit_s: float):
    """Parametric search over lambda (module docstring). Returns (choice, objective, milps) or None."""
    alpha = pipeline.objective.alpha
    z, c = _pas_parts(pipeline, options)

    def point(choice):
        zz = float(sum(a[i] for a, i in zip(z, choice)))
        cc = float(sum(a[i] for a, i in zip(c, choice)))
        return zz, cc

    def g(zz, cc):
        return alpha * math.exp(zz) - cc

    relaxation = _Relaxation(pipeline, options, time_limit_s)

    def values_at(lam):
        return [lam * a - b for a, b in zip(z, c)]

    def finish(lam, red):
        nonlocal milps
        milps += 1
        r = None if red is None else _finish(pipeline, values_at(lam), red, time_limit_s)
        return None if r is None else tuple(r[0])

    milps = 0
    best, best_g = None, -math.inf
    found: dict[tuple, tuple[float, float]] = {}

    def consider(plan):
        nonlocal best, best_g
        found.setdefault(plan, point(plan))
        if g(*found[plan]) > best_g:
            best, best_g = plan, g(*found[plan])

    z_lo = float(sum(a.min() for a in z))
    z_hi = float(sum(a.max() for a in z))
    if alpha == 0:
        ch = finish(0.0, _reduce(pipeline, options, values_at(0.0), relaxation))
        return None if ch is None else (list(ch), g(*point(ch)), milps)
    lam_a, lam_b = alpha * math.exp(z_lo), alpha * math.exp(z_hi)
    # The most accurate end: its LP optimum bounds Phi(lam_b) and its rounded plan is a real plan. The exact
    # MILP there is solved only if the search needs it; most searches close that end with the LP bound.
    red_b = _reduce(pipeline, options, values_at(lam_b), relaxation)
    if red_b is None:
        return None  # the LP is infeasible, so is every plan
    if red_b.start is not None:
        consider(tuple(int(k[i]) for k, i in zip(red_b.kept, red_b.start)))
    # Narrow the range from below with the best plan known: a plan with g > best_g has
    # lambda = alpha*e^z = g + C > best_g + (least possible C), so smaller lambdas cannot hold a better plan.
    lam_a = max(lam_a, best_g + float(sum(a.min() for a in c)))
    if lam_b <= lam_a * (1 + 1e-12):  # no room for a better plan below lam_b; the exact end settles it
        cb = finish(lam_b, red_b)
        if cb is not None:
            consider(cb)
        return None if best is None else (list(best), best_g, milps)
    ca = finish(lam_a, _reduce(pipeline, options, values_at(lam_a), relaxation))
    if ca is None:  # cannot happen when a plan exists (MILP(lam_a) has the same feasible plans)
        return None if best is None else (list(best), best_g, milps)
    consider(ca)
    # Open intervals: (a, plan exact at a, Phi(a), b, plan exact at b or None, Phi(b) or an upper bound of it, aim)
    stack = [(lam_a, ca, lam_a * found[ca][0] - found[ca][1], lam_b, None, red_b.upper, True)]
    tol_g = lambda: 1e-9 * max(1.0, abs(best_g))  # noqa: E731

    def chord_argmax(a, phi_a, b, phi_b):
        """Where the chord bound below is attained."""
        slope = (phi_b - phi_a) / (b - a)
        # maximiser of chord - h on [a, b]: alpha*e^slope clipped to [a, b] (compared in logs: no overflow)
        lam = a if slope <= math.log(a / alpha) else b if slope >= math.log(b / alpha) else alpha * math.exp(slope)
        return lam, slope

    def chord_bound(a, phi_a, b, phi_b):
        """Upper bound of g over plans whose tangent lambda lies in [a, b], given Phi(a) <= phi_a and
        Phi(b) <= phi_b: Phi is convex, so below its chord, and g = Phi - h with h = alpha*e^z's conjugate."""
        lam, slope = chord_argmax(a, phi_a, b, phi_b)
        return phi_a + slope * (lam - a) - (lam * math.log(lam / alpha) - lam)

    def flat_side(lam_x, crossing, a, ya, phi_a, b, yb, phi_b):
        """Phi(lam_x) is no more than the better end line there. At the crossing: Phi is the max of the two
        lines on [a, b], no vertex lies between. Elsewhere: on the side of the better line Phi is that line
        (nothing there beats its end plan); the other side goes on, split at the crossing next."""
        if crossing:
            return
        za, cca = found[ya]
        if yb is None or lam_x * za - cca >= lam_x * found[yb][0] - found[yb][1]:
            stack.append((lam_x, ya, lam_x * za - cca, b, yb, phi_b, False))
        else:
            stack.append((a, ya, phi_a, lam_x, yb, lam_x * found[yb][0] - found[yb][1], False))

    while stack:
        a, ya, phi_a, b, yb, phi_b, aim = stack.pop()
        za, cca = found[ya]
        if b <= a * (1 + 1e-12):
            continue
        if yb is not None and abs(found[yb][0] - za) <= 1e-12:
            continue  # equal trade-offs at both ends: nothing in between
        if chord_bound(a, phi_a, b, phi_b) <= best_g + tol_g():
            continue
        lam_s, _ = chord_argmax(a, phi_a, b, phi_b)
        if yb is None:  # the lazy end: split where the bound is attained, once; else make the end exact
            if not (aim and a < lam_s < b * (1 - 1e-9)):
                cb = finish(lam_b, red_b)
                if cb is not None:
                    consider(cb)
                    stack.append((a, ya, phi_a, b, cb, b * found[cb][0] - found[cb][1], True))
                continue
            lam_x, crossing = lam_s, False
            line_x = lam_x * za - cca
        else:
            zb, ccb = found[yb]
            # the two end plans' lines cross at lam_x; a plan better than both there is a new vertex
            lam_x, crossing = (ccb - cca) / (zb - za), True
            if not (a < lam_x < b):
                continue
            if aim and a < lam_s < b and abs(lam_s - lam_x) > 1e-9 * lam_x:
                lam_x, crossing = lam_s, False  # first look where the bound is attained: Phi there cuts it most
            line_x = max(lam_x * za - cca, lam_x * zb - ccb)
        tol_x = 1e-9 * max(1.0, abs(line_x))

        red = _reduce(pipeline, options, values_at(lam_x), relaxation)
        if red is None:
            continue
        if red.start is not None:  # the reduction's feasible plan is a real plan: it may raise best_g
            consider(tuple(int(k[i]) for k, i in zip(red.kept, red.start)))
        # The LP optimum bounds Phi(lam_x) from above. If it does not beat the end lines there, the flat-side
        # rule applies; if the chord bounds through it on both halves cannot beat best_g, nothing in [a, b]
        # can. Either way the exact finishing of MILP(lam_x) is not needed.
        if red.upper <= line_x + tol_x:
            flat_side(lam_x, crossing, a, ya, phi_a, b, yb, phi_b)
            continue
        if (
            chord_bound(a, phi_a, lam_x, red.upper) <= best_g + tol_g()
            and chord_bound(lam_x, red.upper, b, phi_b) <= best_g + tol_g()
        ):
            continue
        yx = finish(lam_x, red)
        if yx is None:
            continue
        consider(yx)
        phi_x = lam_x * found[yx][0] - found[yx][1]
        if phi_x <= line_x + tol_x:
            flat_side(lam_x, crossing, a, ya, phi_a, b, yb, phi_b)
            continue
        stack.append((a, ya, phi_a, lam_x, yx, phi_x, True))
        stack.append((lam_x, yx, phi_x, b, yb, phi_b, True))
    return list(best), best_g, milps


def solve(
    pipeline,
    options: list[StageOptions],
    *,
    distance: list[np.ndarray] | None = None,
    time_limit_s: float = 30.0,
) -> Solution | None:
    """Maximise the pipeline objective over one option per stage; None if no plan is feasible.

    With `distance` (a per-option change cost against the current configuration), a last MILP picks, among the
    optimal plans, the one with the least change.
    """
    if pipeline.objective.accuracy == "pas":
        r = _solve_pas(pipeline, options, time_limit_s)
        if r is None:
            return None
        choice, best, milps = r
        if distance is not None:
            # Ties are looked for on the optimum's supporting line (lambda* z - C), where equal-objective
            # alternatives live; the result is kept only if its true objective is still optimal.
            z, c = _pas_parts(pipeline, options)
            lam = pipeline.objective.alpha * math.exp(float(sum(a[i] for a, i in zip(z, choice))))
            vals = [lam * a - b for a, b in zip(z, c)]
            alt = least_change(
                pipeline, options, vals, _value_of(vals, choice), distance, time_limit_s=time_limit_s, known=choice
            )
            if alt is not None and objective_of(pipeline, options, alt) >= best - 1e-9 * max(1.0, abs(best)):
                choice = alt
            milps += 1
        return Solution(choice, objective_of(pipeline, options, choice), "Optimal", options, milps)
    values = linear_values(pipeline, options)
    red = _reduce(pipeline, options, values, time_limit_s=time_limit_s)
    r = None if red is None else _finish(pipeline, values, red, time_limit_s)
    if r is None:
        return None
    choice, best = r
    milps = 1
    if distance is not None:
        alt = least_change(
            pipeline, options, values, best, distance, time_limit_s=time_limit_s, reduction=red, known=choice
        )
        if alt is not None and _value_of(values, alt) >= best - 1e-9 * max(1.0, abs(best)):
            choice = alt
        milps += 1
    return Solution(choice, objective_of(pipeline, options, choice), "Optimal", options, milps)
