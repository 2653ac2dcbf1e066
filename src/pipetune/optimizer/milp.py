"""The exact decision: mixed-integer linear programs solved by HiGHS.

The linear model, `MILP(v)`, for a value v[s,o] per option
  variables    y[s,o] in {0,1}   stage s runs option o (a (variant, batch, cores, replicas); see options.py)
  maximise     sum v[s,o] y[s,o]
  subject to   sum_o y[s,o] = 1                               one option per stage
               sum_{s in path} sum_o L[s,o] y[s,o] <= SLA     every source-to-sink path (a DAG with many paths
                                                              uses completion-time variables t[s] instead)
               sum cost[s,o] y[s,o] <= budget                 total cores, if capped
               sum cpu[s,o] y[s,o] <= host CPU budget         with a runtime profile (options.resource_limits)
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
    (Eisner-Severance). On the benchmark's pas instances, looking where the bound is attained first takes
    fewer MILPs than crossings alone.
Every step is an exact MILP and the bound is valid, so the result is the optimum, with no approximation of the
product. A search usually solves a handful of MILPs (`Solution.milps`; `pipetune bench optimizer` times it).

More exact cuts keep the number of MILPs small: the search starts at the most accurate end (lambda_b) with only
its LP (an upper bound of Phi there) and the LP's rounded plan, and solves that MILP only if an interval next to
it stays open; it raises the low end to (best g known) + (least penalty), below which no plan beats the best
known one; and before paying for the exact finishing at a split point lambda_x, the LP optimum there is used in
the chord bounds of both halves, which often closes them. (The chord bound needs only upper bounds of Phi at the
ends; the lines of exact end plans are needed only to find crossings and flat sides.)

The search is a stack of open intervals (`_Interval`) and a `_PasSearch` state (plans found, best so far, MILPs
solved): `_pas_ends` opens it, `_pas_step` closes an interval by its chord bound or picks a point inside
(`_split_point`), and `_look_at` bounds Phi there by the LP before paying for the exact MILP; `_flat_side` is the
flat-side rule.

Each MILP is shrunk first, exactly, by LP reduced costs against a good feasible plan (`reduce_by_lp`). What
survives is finished by flat enumeration when at most ENUMERATE_AT_MOST combinations are left, else by the
dominance-and-bound enumeration of frontier.py (exact; argument there), and only when that outgrows
FRONTIER_MAX_STATES partial plans by the same enumeration with the layer bound (rule 4 of frontier.py: a
tangent of each position's remaining LP as a function of the open completion times, `LayerLP`), and only when
that outgrows WIDE_MAX_STATES partial plans by HiGHS branch and bound (`_finish_wide`). DAGs wider than
FRONTIER_MAX_WIDTH open completion times with more than FRONTIER_DIRECT_ABOVE combinations left go to the
layer-bound enumeration directly: there the plain enumeration's bounds are too weak to keep it small. HiGHS
solves every LP relaxation, and is the solver of record for the MILPs it gets; the enumerations are exact
finishers.
A HiGHS run that ends other than optimal or infeasible (a limit, an interrupt, an error) raises SolverError
(`_outcome`): no answer is never read as "no plan".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import highspy
import numpy as np

from pipetune.errors import SolverError
from pipetune.optimizer.frontier import (
    TooLarge,
    best_by_frontier,
    frontier_width,
    open_stages,
    path_edges,
    stage_order,
)
from pipetune.optimizer.incumbent import (
    best_by_enumeration,
    cached_for,
    linear_values,
    local_search,
    objective_of,
)
from pipetune.optimizer.options import StageOptions, resource_limits

INF = highspy.kHighsInf
MAX_PATH_ROWS = 16  # above this many source-to-sink paths, completion-time variables (fewer nonzeros; 0.89x
# geo-mean decision time against 64 on 80 random 25x9 instances)
ENUMERATE_AT_MOST = 1000  # combinations left after the LP reduction that are listed flat (above: frontier.py)
FRONTIER_MAX_STATES = 30_000  # partial plans the exact enumeration may hold before HiGHS branches instead
FRONTIER_MAX_WIDTH = 1  # DAGs wider than this (more open completion times at once) with more than
FRONTIER_DIRECT_ABOVE = 1e9  # this many combinations left go to the layer-bound enumeration (_finish_wide)
WIDE_MAX_STATES = 30_000  # partial plans the layer-bound enumeration may hold before HiGHS branches instead
WIDE_BEAM = 100  # partial plans per position of the beam run that finds its floor (0: none)
LOG_ZERO = -700.0  # log of a zero accuracy (e^-700 == 0.0 in floating point)


@dataclass
class SolverCounts:
    """Work done by the solves since the last `reset()`, for the benchmark (`pipetune bench optimizer` reports
    it beside the times: on a shared machine counts say what a time cannot)."""

    lps: int = 0  # LP relaxations solved
    finishes: int = 0  # exact MILP(v) finishings (flat enumeration, frontier enumeration or HiGHS)
    branch_runs: int = 0  # of those, HiGHS branch and bound runs
    least_change_runs: int = 0  # least-change tie-break MILPs sent to HiGHS (not listed flat)
    wide_gave_up: int = 0  # wide-DAG finishings whose layer-bound enumeration gave up (then HiGHS branched)
    nodes: int = 0  # HiGHS branch-and-bound nodes, both kinds of run
    lp_iterations: int = 0  # simplex iterations, every HiGHS run

    def reset(self) -> None:
        for f in self.__dataclass_fields__:
            setattr(self, f, 0)

    def to_dict(self) -> dict[str, int]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


COUNTS = SolverCounts()


def _count_run(h: highspy.Highs, mip: bool) -> None:
    info = h.getInfo()
    COUNTS.lp_iterations += int(info.simplex_iteration_count)
    if mip:
        COUNTS.nodes += int(info.mip_node_count)


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
    for use, limit in resource_limits(pipeline, options):  # the core budget, the host CPU budget
        bld.add_row(np.concatenate(y), np.concatenate(use), -INF, limit)
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


# the statuses of a run stopped by a limit or an interrupt (every solve raises on them, see _outcome)
_LIMITS = frozenset(
    {
        "kTimeLimit",
        "kIterationLimit",
        "kSolutionLimit",
        "kObjectiveBound",
        "kObjectiveTarget",
        "kInterrupt",
        "kHighsInterrupt",
        "kMemoryLimit",
    }
)


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


class _SilentHighs(highspy.Highs):
    """A Highs whose log (the "Running HiGHS ..." banner first, on C stdout, where it would corrupt JSON output)
    is off from the start. HiGHS writes its banner on the first call after construction unless `output_flag` is
    already off, and highspy's own constructor makes such a call (it enables callbacks); so `output_flag` is set
    just before it. Nothing is redirected."""

    def enableCallbacks(self) -> highspy.HighsStatus:
        self.setOptionValue("output_flag", False)
        return super().enableCallbacks()


def _new_highs() -> highspy.Highs:
    h = _SilentHighs()
    _set(h, "output_flag", False)  # again, checked: an older highspy whose constructor made no call
    return h


def _highs(time_limit_s: float) -> highspy.Highs:
    h = _new_highs()
    _set(h, "threads", 1)
    # Measured on these models: feasibility jump and the sub-MIP heuristics (RINS/RENS) took most of the
    # time and found nothing the MIP start does not already give.
    _set(h, "mip_heuristic_run_feasibility_jump", False)
    _set(h, "mip_heuristic_run_rins", False)
    _set(h, "mip_heuristic_run_rens", False)
    # On the 25x9 benchmark's models that reach branch and bound, no restart after root fixings and strong
    # branching trusted after 4 (not 8) pseudo-cost samples solve faster than the defaults (`pipetune bench
    # optimizer` shows it). Both only steer the search; the optimum is the same.
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
        # No presolve for these LPs (a few hundred columns): it costs more than it saves on the benchmark's
        # relaxations, and the later runs start from the previous basis anyway.
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
        COUNTS.lps += 1
        _count_run(self.h, mip=False)
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
    if resource_limits(pipeline, options):
        start = local_search(pipeline, options, values=values)  # the LP support may break a budget
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
    r_opts, r_vals, kept = red.options, red.values, red.kept
    COUNTS.finishes += 1
    combos = math.prod(len(so) for so in r_opts)
    if combos <= ENUMERATE_AT_MOST:
        # Few combinations survive the exact reduction: finishing by complete enumeration is exact and
        # cheaper than another HiGHS run (which costs a few ms even on a trivial model).
        local = best_by_enumeration(pipeline, r_opts, r_vals)
    elif combos > FRONTIER_DIRECT_ABOVE and frontier_width(pipeline) > FRONTIER_MAX_WIDTH:
        local = _finish_wide(pipeline, red, time_limit_s)
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
            local = _finish_wide(pipeline, red, time_limit_s)
    if local is None:
        return None
    choice = [int(k[c]) for k, c in zip(kept, local)]
    return choice, _value_of(values, choice)


def _finish_wide(pipeline, red: _Reduction, time_limit_s: float) -> list[int] | None:
    """A wide DAG's reduced MILP: the frontier enumeration with the layer bound (rule 4, `layer_tangents`),
    after a beam run of the same enumeration for a better floor; HiGHS branch and bound when the enumeration
    outgrows WIDE_MAX_STATES partial plans (or finds nothing, which a feasible start rules out: then HiGHS
    decides, never the enumeration)."""
    r_opts, r_vals, start = red.options, red.values, red.start
    layers = LayerLP(pipeline, r_opts, r_vals, time_limit_s)
    try:
        root = layers.root()
    except ValueError:  # HiGHS could not decide the layer LP: branch and bound decides
        COUNTS.wide_gave_up += 1
        return _branch(pipeline, r_opts, r_vals, start, time_limit_s)
    if root is None:
        return None  # the LP relaxation is infeasible, so is every plan
    tangents = layers.lazy([root])
    floor = red.start_value
    if WIDE_BEAM:
        found = best_by_frontier(
            pipeline,
            r_opts,
            r_vals,
            best_known=floor,
            upper=red.upper,
            penalty=red.penalty,
            max_states=WIDE_BEAM,
            tangents=tangents,
            beam=True,
        )
        if isinstance(found, list) and _value_of(r_vals, found) > floor:
            start, floor = found, _value_of(r_vals, found)
    local = best_by_frontier(
        pipeline,
        r_opts,
        r_vals,
        best_known=floor,
        upper=red.upper,
        penalty=red.penalty,
        max_states=WIDE_MAX_STATES,
        tangents=tangents,
    )
    if isinstance(local, list):
        return local
    # TooLarge, or None although `start` is a feasible plan worth the floor (only simplex tolerances could do
    # that): HiGHS decides
    COUNTS.wide_gave_up += 1
    return _branch(pipeline, r_opts, r_vals, start, time_limit_s)


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
    COUNTS.branch_runs += 1
    _count_run(h, mip=True)
    if _outcome(h, "branch and bound", pipeline) == "infeasible":
        return None
    sol = np.array(h.getSolution().col_value)
    return [int(np.argmax(sol[ys])) for ys in m.y]


class LayerLP:
    """Rule 4 of the frontier enumeration (`tangents` and `refine` of frontier.best_by_frontier): per position k
    of its order, linear upper bounds on what the unassigned stages can still add to a partial plan's value, as
    functions of its open completion times T.

    After position k the unassigned stages form an LP whose right-hand sides are T (rows t[s] - L[s] y[s] >= T[p]
    for an assigned path-predecessor p); its optimum is concave in T, so a tangent at one point T^ bounds it
    everywhere. One HiGHS LP in completion-time form holds it: moving to position k frees the rows of the stages
    assigned so far, and a tangent at T^ fixes the open completion times at T^ and solves (each solve starts from
    the last basis). From the row duals pi (clipped at >= 0), Lagrangian relaxation of the latency rows, with one
    option per stage kept exact, gives for every T:
        value added <= sum_u max_o (v[u,o] - P_u L[u,o]) + sum_u max(0, P_u - Q_u) SLA - sum_p Q_p T_p
    with P_u the duals of u's own rows and Q_u those of the rows that read t[u]. It is computed here from pi, not
    read from the solver, so it holds for any pi >= 0 (simplex tolerances can only loosen it)."""

    def __init__(self, pipeline, options: list[StageOptions], values: list[np.ndarray], time_limit_s: float) -> None:
        S = len(options)
        self.pipeline, self.S = pipeline, S
        self.order, self.opened = stage_order(pipeline), open_stages(pipeline)
        edges = path_edges(pipeline)
        self.head, self.tail = edges[:, 0], edges[:, 1]
        self.sla = pipeline.sla.seconds
        self.lat = [so.lat_slo for so in options]
        bld = _Builder()
        self.cut = np.cumsum([0] + [len(so) for so in options])
        cols = bld.add_cols(int(self.cut[-1]), -np.concatenate(values), 0.0, 1.0, False)
        self.y = [cols[a:b] for a, b in zip(self.cut[:-1], self.cut[1:])]
        self.t = bld.add_cols(S, 0.0, 0.0, self.sla, False).astype(np.int32)
        for ys in self.y:
            bld.add_row(ys, np.ones(ys.size), 1.0, 1.0)
        for s, p in edges:
            ts = [self.t[s]] if p < 0 else [self.t[s], self.t[p]]
            bld.add_row(
                np.concatenate([ts, self.y[s]]), np.concatenate([[1.0, -1.0][: len(ts)], -self.lat[s]]), 0.0, INF
            )
        self.h = _highs(time_limit_s)
        _set(self.h, "presolve", "off")
        _pass_model(self.h, bld.lp(relax=True), "layer LP")
        self.first = S  # the latency rows follow the S one-option rows
        self.rows_of = [(np.flatnonzero(self.head == s) + self.first).astype(np.int32) for s in range(S)]
        self.pos = np.empty(S, np.int64)
        self.pos[self.order] = np.arange(S)
        self.head_pos = self.pos[self.head]
        self.from_tail = self.tail >= 0
        self.v_all, self.lat_all = np.concatenate(values), np.concatenate(self.lat)
        self.stage_of = np.repeat(np.arange(S), np.diff(self.cut))
        self.k = -1  # rows of the stages at positions <= k are freed

    def _run(self) -> str:
        """ "optimal", "infeasible", or "unknown" (HiGHS could not decide: no bound is taken from this solve, and
        the enumeration only prunes less); a limit or an interrupt raises SolverError like every solve."""
        self.h.run()
        COUNTS.lps += 1
        _count_run(self.h, mip=False)
        name = getattr(self.h.getModelStatus(), "name", "")
        if name in _LIMITS:
            _outcome(self.h, "layer LP", self.pipeline)
        return _STATUS.get(name, ("unknown", ""))[0].replace("error", "unknown")

    def root(self) -> np.ndarray | None:
        """Solve the whole LP: per stage the completion time of its (fractional) plan, the earliest its latencies
        allow; None if the LP, so every plan, is infeasible. ValueError if HiGHS could not decide (the caller
        hands the MILP to branch and bound)."""
        self._at(-1)
        outcome = self._run()
        if outcome == "infeasible":
            return None
        if outcome != "optimal":
            raise ValueError("layer LP undecided")
        x = np.asarray(self.h.getSolution().col_value)
        return self.completion([float(self.lat[s] @ x[self.y[s]]) for s in range(self.S)])

    def completion(self, per_stage) -> np.ndarray:
        """Completion times of stages with these latencies."""
        at = np.zeros(self.S)
        for s in self.order:
            at[s] = per_stage[s] + max((at[p] for p in self.tail[(self.head == s) & self.from_tail]), default=0.0)
        return at

    def _at(self, k: int) -> None:
        if k < self.k:  # the whole model again
            n = self.head.size
            for r in range(self.first, self.first + n):
                self.h.changeRowBounds(r, 0.0, INF)
            self.h.changeColsBounds(self.S, self.t, np.zeros(self.S), np.full(self.S, self.sla))
            self.k = -1
        while self.k < k:
            self.k += 1
            for r in self.rows_of[self.order[self.k]].tolist():
                self.h.changeRowBounds(r, -INF, INF)

    def tangents(self, k: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tangents at position k at each row of `points` (open completion times, in open_stages order):
        (c, mu), bound c[j] - mu[j] @ T; c is inf where the LP at that point is infeasible (no bound)."""
        opened = np.asarray(self.opened[k], np.int32)
        c = np.full(len(points), np.inf)
        mu = np.zeros((len(points), opened.size))
        if k == self.S - 1:
            return np.zeros(len(points)), mu
        self._at(k)
        rest = self.pos > k
        for j, point in enumerate(points):
            if opened.size:
                self.h.changeColsBounds(int(opened.size), self.t[opened], point, point)
            if self._run() != "optimal":
                continue
            pi = np.where(
                self.head_pos > k, np.maximum(np.asarray(self.h.getSolution().row_dual)[self.first :], 0.0), 0.0
            )
            P = np.bincount(self.head, pi, minlength=self.S)
            Q = np.bincount(self.tail[self.from_tail], pi[self.from_tail], minlength=self.S)
            best = np.maximum.reduceat(self.v_all - P[self.stage_of] * self.lat_all, self.cut[:-1])
            c[j] = float(best[rest].sum() + np.maximum(P - Q, 0.0)[rest].sum() * self.sla)
            mu[j] = Q[opened]
        return c, mu

    def lazy(self, anchors: list[np.ndarray]) -> _LazyTangents:
        """`sweep`, each position's tangents solved only when the enumeration first asks for them."""
        return _LazyTangents(self, anchors)

    def sweep(self, anchors: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per position, the tangents at each anchor (completion times per stage)."""
        out: list[tuple[list, list]] = [([], []) for _ in range(self.S)]
        for anchor in anchors:
            for k in range(self.S):
                c, mu = self.tangents(k, anchor[np.asarray(self.opened[k], np.int64)][None, :])
                out[k][0].append(c)
                out[k][1].append(mu)
        return [(np.concatenate(c), np.concatenate(mu)) for c, mu in out]


class _LazyTangents:
    """Per position, the tangents of `LayerLP` at the anchors, solved on first use and kept (the enumeration asks
    only where its frontier is large, frontier.TANGENTS_ABOVE)."""

    def __init__(self, layers: LayerLP, anchors: list[np.ndarray]) -> None:
        self.layers, self.anchors = layers, anchors
        self.done: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self.done:
            at = np.asarray(self.layers.opened[k], np.int64)
            parts = [self.layers.tangents(k, a[at][None, :]) for a in self.anchors]
            self.done[k] = (np.concatenate([c for c, _ in parts]), np.concatenate([m for _, m in parts]))
        return self.done[k]


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
    leaves few options; small remainders are then listed flat, larger ones of chains and narrow DAGs go to the
    frontier enumeration (the distance as one more dominance term, the optimum as the floor of its bounds), and
    what that gives up on, or wide DAGs, to HiGHS with `known` (a plan worth the optimum, e.g. the one just
    found) as its MIP start.
    """
    tol = 1e-9 * max(1.0, abs(optimum))
    # `reduction`: the one already made for `values`
    red = reduction or _reduce(pipeline, options, values, time_limit_s=time_limit_s)
    if red is None:
        return None
    kept, sub_o, sub_v, sub_p = [], [], [], []
    for k, so_r, v_r, pen in zip(red.kept, red.options, red.values, red.penalty):
        keep = np.nonzero(red.upper - pen >= optimum - tol - 1e-7)[0]  # 1e-7: simplex tolerances on duals
        if keep.size == 0:  # cannot happen for a true optimum; keep everything rather than guess
            keep = np.arange(len(so_r))
        kept.append(k[keep])
        sub_o.append(so_r.take(keep))
        sub_v.append(v_r[keep])
        sub_p.append(pen[keep])
    sub_d = [d[k] for d, k in zip(distance, kept)]
    if known is not None:
        kept, sub_o, sub_v, sub_p, sub_d = _within_distance(kept, sub_o, sub_v, sub_p, sub_d, known)
    combos = math.prod(len(so) for so in sub_o)
    local: Any = TooLarge
    if combos <= ENUMERATE_AT_MOST * 20:
        local = _least_change_by_enumeration(pipeline, sub_o, sub_v, optimum - tol, sub_d)
    elif combos > FRONTIER_DIRECT_ABOVE and frontier_width(pipeline) > FRONTIER_MAX_WIDTH:
        # wide DAGs: the same search with the layer bound (rule 4 of frontier.py) on the value floor
        layers = LayerLP(pipeline, sub_o, sub_v, time_limit_s)
        try:
            root = layers.root()
        except ValueError:  # HiGHS could not decide the layer LP: the least-change MILP decides
            root = None
        if root is not None:
            local = best_by_frontier(
                pipeline,
                sub_o,
                sub_v,
                best_known=optimum,
                upper=red.upper,
                penalty=sub_p,
                max_states=WIDE_MAX_STATES,
                distance=sub_d,
                tangents=layers.lazy([root]),
            )
            if local is None:  # the known optimum is a plan worth the floor: only tolerances; HiGHS decides
                local = TooLarge
    else:
        # The frontier enumeration with the distance as one more dominance term and the optimum as the floor
        # of its value bounds (exact; frontier.py): on chains and narrow DAGs it settles quickly what HiGHS
        # would branch on.
        local = best_by_frontier(
            pipeline,
            sub_o,
            sub_v,
            best_known=optimum,
            upper=red.upper,
            penalty=sub_p,
            max_states=FRONTIER_MAX_STATES,
            distance=sub_d,
        )
    if local is TooLarge:
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
        COUNTS.least_change_runs += 1
        _count_run(h, mip=True)
        # infeasible only by tolerances (the optimum itself reaches the value row): keep the optimum
        if _outcome(h, "least-change MILP", pipeline) == "infeasible":
            return None
        sol = np.array(h.getSolution().col_value)
        local = [int(np.argmax(sol[ys])) for ys in m.y]
    if local is None:
        return None
    return [int(k[c]) for k, c in zip(kept, local)]


def _within_distance(kept, sub_o, sub_v, sub_p, sub_d, known: list[int]):
    """The options of the least-change search that can be in a plan no farther than `known` (indices into the
    unreduced sets, a plan worth the optimum): an option whose distance plus the least distance of every other
    stage exceeds the known plan's cannot be in a closer plan, so it goes (exact; ties stay). Distances are
    >= 0, and the known plan's own options always stay. Unchanged when the reduction did not keep `known`."""
    at = [np.flatnonzero(k == c) for k, c in zip(kept, known)]
    if not all(i.size for i in at):
        return kept, sub_o, sub_v, sub_p, sub_d
    limit = float(sum(d[i[0]] for d, i in zip(sub_d, at)))
    least = np.array([float(d.min()) for d in sub_d])
    room = limit - (least.sum() - least)  # per stage: the most its own option may add
    out: tuple[list, list, list, list, list] = ([], [], [], [], [])
    for k, so, v, pen, d, r in zip(kept, sub_o, sub_v, sub_p, sub_d, room):
        keep = np.flatnonzero(d <= r + 1e-9 * max(1.0, abs(limit)))
        if keep.size == len(so):
            parts = (k, so, v, pen, d)
        else:
            parts = (k[keep], so.take(keep), v[keep], pen[keep], d[keep])
        for lst, x in zip(out, parts):
            lst.append(x)
    return out


def _least_change_by_enumeration(pipeline, options, values, floor: float, distance) -> list[int] | None:
    from pipetune.optimizer.incumbent import _path_matrix

    sizes = [len(so) for so in options]
    grid = np.indices(sizes).reshape(len(sizes), -1)
    lat = np.stack([so.lat_slo[grid[i]] for i, so in enumerate(options)])
    ok = (_path_matrix(pipeline).astype(float) @ lat).max(axis=0) <= pipeline.sla.seconds * (1 + 1e-12)
    for use, limit in resource_limits(pipeline, options):
        ok &= sum(u[grid[i]] for i, u in enumerate(use)) <= limit + 1e-9
    ok &= sum(v[grid[i]] for i, v in enumerate(values)) >= floor
    if not ok.any():
        return None
    total = np.where(ok, sum(d[grid[i]] for i, d in enumerate(distance)), np.inf)
    return [int(x) for x in grid[:, int(np.argmin(total))]]


def _pas_parts(pipeline, options: list[StageOptions]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per stage and option: z = log(accuracy) (LOG_ZERO for 0) and the penalty C = beta*cost + gamma*batch."""
    obj = pipeline.objective
    z = [np.where(so.acc > 0, np.log(np.maximum(so.acc, 1e-300)), LOG_ZERO) for so in options]
    c = [obj.beta * so.cost + obj.gamma * so.batch for so in options]
    return z, c


_Choice = tuple[int, ...]  # option index per stage, into the search's option sets (hashable: plans found are keys)


class _Point(NamedTuple):
    """A plan in the (z, C) trade-off: z = sum log(accuracy), C = beta*cost + gamma*batch."""

    z: float
    c: float

    def line(self, lam: float) -> float:
        """The plan's value in MILP(lambda*z - C): a lower bound of Phi(lambda), equal where the plan is optimal."""
        return lam * self.z - self.c


@dataclass(frozen=True)
class _Interval:
    """An open interval [a, b] of lambda. `at_a` is the exact plan of MILP(a) and `phi_a` = Phi(a); `at_b` is the
    exact plan of MILP(b), or None at the lazy end (the most accurate lambda, whose MILP is solved only when
    needed), and `phi_b` is Phi(b) or, at the lazy end, the LP's upper bound of it. `aim`: look first where the
    chord bound is attained (False once the flat-side rule has cut the interval: then at the crossing)."""

    a: float
    at_a: _Choice
    phi_a: float
    b: float
    at_b: _Choice | None
    phi_b: float
    aim: bool


class _Split(NamedTuple):
    """Where an interval is looked at next: lambda_x, whether it is the crossing of the end plans' lines, and the
    better of those lines there (a plan is a new vertex only if it beats it)."""

    lam: float
    crossing: bool
    line: float


class _PasResult(NamedTuple):
    choice: list[int]
    objective: float
    milps: int


def _chord_argmax(alpha: float, a: float, phi_a: float, b: float, phi_b: float) -> tuple[float, float]:
    """Where the chord bound (`_chord_bound`) is attained, and the chord's slope."""
    slope = (phi_b - phi_a) / (b - a)
    # maximiser of chord - h on [a, b]: alpha*e^slope clipped to [a, b] (compared in logs: no overflow)
    lam = a if slope <= math.log(a / alpha) else b if slope >= math.log(b / alpha) else alpha * math.exp(slope)
    return lam, slope


def _chord_bound(alpha: float, a: float, phi_a: float, b: float, phi_b: float) -> float:
    """Upper bound of g over plans whose tangent lambda lies in [a, b], given Phi(a) <= phi_a and Phi(b) <= phi_b:
    Phi is convex, so below its chord, and g = Phi - h with h = alpha*e^z's conjugate."""
    lam, slope = _chord_argmax(alpha, a, phi_a, b, phi_b)
    return phi_a + slope * (lam - a) - (lam * math.log(lam / alpha) - lam)


@dataclass
class _PasSearch:
    """The state of one parametric search: the plans found (with their trade-off points), the best of them by
    the true objective g = alpha*e^z - C, and the number of exact MILPs solved."""

    pipeline: Any
    options: list[StageOptions]
    time_limit_s: float
    z: list[np.ndarray]
    c: list[np.ndarray]
    relaxation: _Relaxation
    alpha: float
    found: dict[_Choice, _Point] = field(default_factory=dict)
    best: _Choice | None = None
    best_g: float = -math.inf
    milps: int = 0
    lazy_end: _Reduction | None = None  # the reduction of MILP(the most accurate lambda), until that MILP is solved

    @classmethod
    def of(cls, pipeline, options: list[StageOptions], time_limit_s: float) -> _PasSearch:
        z, c = _pas_parts(pipeline, options)
        relaxation = _Relaxation(pipeline, options, time_limit_s)
        return cls(pipeline, options, time_limit_s, z, c, relaxation, pipeline.objective.alpha)

    def point(self, choice: _Choice) -> _Point:
        return _Point(
            float(sum(a[i] for a, i in zip(self.z, choice))), float(sum(a[i] for a, i in zip(self.c, choice)))
        )

    def g(self, p: _Point) -> float:
        return self.alpha * math.exp(p.z) - p.c

    def tol_g(self) -> float:
        return 1e-9 * max(1.0, abs(self.best_g))

    def values_at(self, lam: float) -> list[np.ndarray]:
        return [lam * a - b for a, b in zip(self.z, self.c)]

    def reduce(self, lam: float) -> _Reduction | None:
        """MILP(lambda)'s LP relaxation and reduction (None: the LP, so every plan, is infeasible)."""
        return _reduce(self.pipeline, self.options, self.values_at(lam), self.relaxation)

    def finish(self, lam: float, red: _Reduction | None) -> _Choice | None:
        """The exact plan of MILP(lambda), counted as one MILP, from its reduction `red`."""
        self.milps += 1
        r = None if red is None else _finish(self.pipeline, self.values_at(lam), red, self.time_limit_s)
        return None if r is None else tuple(r[0])

    def consider(self, choice: _Choice) -> _Point:
        """Record a real plan (it may become the best); its trade-off point."""
        p = self.found.setdefault(choice, self.point(choice))
        if self.g(p) > self.best_g:
            self.best, self.best_g = choice, self.g(p)
        return p

    def consider_start(self, red: _Reduction) -> None:
        """The reduction's feasible plan is a real plan: it may raise best_g."""
        if red.start is not None:
            self.consider(tuple(int(k[i]) for k, i in zip(red.kept, red.start)))

    def result(self) -> _PasResult | None:
        return None if self.best is None else _PasResult(list(self.best), self.best_g, self.milps)


def _solve_pas(pipeline, options: list[StageOptions], time_limit_s: float) -> _PasResult | None:
    """Parametric search over lambda (module docstring): the optimal plan, its objective and the MILPs it took,
    or None if no plan is feasible."""
    search = _PasSearch.of(pipeline, options, time_limit_s)
    if search.alpha == 0:  # g = -C: one linear MILP
        ch = search.finish(0.0, search.reduce(0.0))
        return None if ch is None else _PasResult(list(ch), search.g(search.point(ch)), search.milps)
    first = _pas_ends(search)
    stack = [] if first is None else [first]
    while stack:
        stack.extend(_pas_step(search, stack.pop()))
    return search.result()


def _pas_ends(search: _PasSearch) -> _Interval | None:
    """Open the search between the least and the most accurate lambda; None when the ends settle it."""
    z_lo = float(sum(a.min() for a in search.z))
    z_hi = float(sum(a.max() for a in search.z))
    lam_a, lam_b = search.alpha * math.exp(z_lo), search.alpha * math.exp(z_hi)
    # The most accurate end: its LP optimum bounds Phi(lam_b) and its rounded plan is a real plan. The exact
    # MILP there is solved only if the search needs it; most searches close that end with the LP bound.
    red_b = search.reduce(lam_b)
    if red_b is None:
        return None  # the LP is infeasible, so is every plan
    search.consider_start(red_b)
    # Narrow the range from below with the best plan known: a plan with g > best_g has
    # lambda = alpha*e^z = g + C > best_g + (least possible C), so smaller lambdas cannot hold a better plan.
    lam_a = max(lam_a, search.best_g + float(sum(a.min() for a in search.c)))
    if lam_b <= lam_a * (1 + 1e-12):  # no room for a better plan below lam_b; the exact end settles it
        cb = search.finish(lam_b, red_b)
        if cb is not None:
            search.consider(cb)
        return None
    ca = search.finish(lam_a, search.reduce(lam_a))
    if ca is None:  # cannot happen when a plan exists (MILP(lam_a) has the same feasible plans)
        return None
    pa = search.consider(ca)
    search.lazy_end = red_b
    return _Interval(lam_a, ca, pa.line(lam_a), lam_b, None, red_b.upper, True)


def _pas_step(search: _PasSearch, iv: _Interval) -> list[_Interval]:
    """Close the interval `iv` or look inside it; the open intervals that remain (the last is searched next)."""
    pa = search.found[iv.at_a]
    if iv.b <= iv.a * (1 + 1e-12):
        return []
    if iv.at_b is not None and abs(search.found[iv.at_b].z - pa.z) <= 1e-12:
        return []  # equal trade-offs at both ends: nothing in between
    if _chord_bound(search.alpha, iv.a, iv.phi_a, iv.b, iv.phi_b) <= search.best_g + search.tol_g():
        return []
    lam_s, _ = _chord_argmax(search.alpha, iv.a, iv.phi_a, iv.b, iv.phi_b)
    if iv.at_b is None and not (iv.aim and iv.a < lam_s < iv.b * (1 - 1e-9)):
        return _exact_lazy_end(search, iv)  # the lazy end: split where the bound is attained, once; else solve it
    split = _split_point(search, iv, lam_s)
    return [] if split is None else _look_at(search, iv, split)


def _exact_lazy_end(search: _PasSearch, iv: _Interval) -> list[_Interval]:
    """Solve the MILP of the lazy end (iv.b is the most accurate lambda); the interval goes on with its plan."""
    cb = search.finish(iv.b, search.lazy_end)
    if cb is None:
        return []
    return [replace(iv, at_b=cb, phi_b=search.consider(cb).line(iv.b), aim=True)]


def _split_point(search: _PasSearch, iv: _Interval, lam_s: float) -> _Split | None:
    """Where to look inside `iv`: at the lazy end where the chord bound is attained (`lam_s`); between two exact
    ends where their lines cross, or first at `lam_s` while `aim` holds. None: the lines do not cross inside."""
    pa = search.found[iv.at_a]
    if iv.at_b is None:
        return _Split(lam_s, False, pa.line(lam_s))
    pb = search.found[iv.at_b]
    # the two end plans' lines cross at lam_x; a plan better than both there is a new vertex
    lam_x, crossing = (pb.c - pa.c) / (pb.z - pa.z), True
    if not (iv.a < lam_x < iv.b):
        return None
    if iv.aim and iv.a < lam_s < iv.b and abs(lam_s - lam_x) > 1e-9 * lam_x:
        lam_x, crossing = lam_s, False  # first look where the bound is attained: Phi there cuts it most
    return _Split(lam_x, crossing, max(pa.line(lam_x), pb.line(lam_x)))


def _look_at(search: _PasSearch, iv: _Interval, x: _Split) -> list[_Interval]:
    """Bound Phi(lambda_x) by the LP, and solve MILP(lambda_x) exactly only if that bound leaves room."""
    tol_x = 1e-9 * max(1.0, abs(x.line))
    red = search.reduce(x.lam)
    if red is None:
        return []
    search.consider_start(red)
    # The LP optimum bounds Phi(lam_x) from above. If it does not beat the end lines there, the flat-side
    # rule applies; if the chord bounds through it on both halves cannot beat best_g, nothing in [a, b]
    # can. Either way the exact finishing of MILP(lam_x) is not needed.
    if red.upper <= x.line + tol_x:
        return _flat_side(search, iv, x)
    if (
        _chord_bound(search.alpha, iv.a, iv.phi_a, x.lam, red.upper) <= search.best_g + search.tol_g()
        and _chord_bound(search.alpha, x.lam, red.upper, iv.b, iv.phi_b) <= search.best_g + search.tol_g()
    ):
        return []
    yx = search.finish(x.lam, red)
    if yx is None:
        return []
    phi_x = search.consider(yx).line(x.lam)
    if phi_x <= x.line + tol_x:
        return _flat_side(search, iv, x)
    return [replace(iv, b=x.lam, at_b=yx, phi_b=phi_x, aim=True), replace(iv, a=x.lam, at_a=yx, phi_a=phi_x, aim=True)]


def _flat_side(search: _PasSearch, iv: _Interval, x: _Split) -> list[_Interval]:
    """Phi(lambda_x) is no more than the better end line there. At the crossing: Phi is the max of the two
    lines on [a, b], no vertex lies between. Elsewhere: on the side of the better line Phi is that line
    (nothing there beats its end plan); the other side goes on, split at the crossing next."""
    if x.crossing:
        return []
    line_a = search.found[iv.at_a].line(x.lam)
    if iv.at_b is None or line_a >= search.found[iv.at_b].line(x.lam):
        return [replace(iv, a=x.lam, phi_a=line_a, aim=False)]
    return [replace(iv, b=x.lam, phi_b=search.found[iv.at_b].line(x.lam), aim=False)]


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
        choice, best, milps = r.choice, r.objective, r.milps
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
