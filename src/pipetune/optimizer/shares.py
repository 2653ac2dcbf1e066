"""Continuous shares decided to a proven tolerance: `plan_continuous_shares()` (caps.mix_variants = 2).

A split stage puts share f of its load on a part of variant a and 1 - f on a part of variant b, each part with
integer replicas; f is any number in [0, 1]. `plan_pipeline` decides f on a grid of 1/N (options.MIX_SHARE_STEPS).
Here it is decided as a global optimizer decides a nonconvex problem, by spatial branch and bound over the shares:

* **Upper bound.** Each stage's shares [0, 1] are cut into ranges (at first the N ranges [j/N, (j+1)/N]). Over
  a range a split is one relaxed option per pair of parts (`options.split_options` with a share range): capacity
  needed only at the range's bottom, SLA-percentile latency a lower bound over the range (batch formation at its
  top, queueing at its bottom: `latency.stage_latency_arrays`' `formation_rate`), accuracy the better end's.
  Every plan with any shares is matched or beaten by a relaxed plan, so the exact solver's optimum over the
  relaxation (`solve`, the same MILP / `pas` search as every plan) bounds every continuous plan from above.
* **Lower bound.** The relaxation's plan fixes the discrete choices (per stage one option or two parts:
  variants, batches, cores, replicas) and a share range per split stage. For those choices shares are searched
  directly: per split stage the share in its range of least latency (the parts' own latencies at their loads,
  capacity checked exactly), then, stage by stage, the share pushed toward the more accurate part as far as the
  SLA along every path and the parts' capacities allow (the objective is monotone in each share). The result is
  checked as a whole (`_evaluate`: every part's capacity and stability, every path's SLA-percentile latency) and
  is a feasible continuous plan; the best found, with the grid plan, is the incumbent.
* **Refinement.** Only the ranges the relaxation's plan uses are halved; repeat until upper - lower <= eps x
  max(1, |lower|), or the work cap (`max_iterations` relaxations, ranges narrower than MIN_RANGE_WIDTH) stops
  it. Halving nests the ranges, so the bound never loosens; as the ranges the plan uses shrink, the relaxed
  plan's latency, capacity and accuracy tend to those of a plan with shares inside them, so the gap closes.

The answer (`ShareDecision`) says which: proven optimal to eps (`stopped == "optimal"`), proven infeasible (the
relaxation has no plan, so no shares have one), or stopped by the work cap with the gap it proved (never called
optimal or infeasible). Mixing with a runtime profile stays refused (as in `plan_pipeline`), and so does
`arrival_dispersion` < 1 (the latency bound over a range needs queueing to rise with the load).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from pipetune.errors import PipetuneError, SolverError
from pipetune.latency import stage_latency_arrays
from pipetune.optimizer.incumbent import _path_lists, cached_for, stage_slack
from pipetune.optimizer.milp import solve
from pipetune.optimizer.options import (
    MixParts,
    Restriction,
    StageOptions,
    build_base_options,
    carries,
    pareto_prune_stages,
    split_options,
    stack_splits,
    undominated_parts,
)
from pipetune.optimizer.plan import Infeasible, Plan
from pipetune.profiles import PipelineProfiles

DEFAULT_EPS = 1e-6  # relative tolerance of a proven decision: upper - lower <= eps x max(1, |lower|)
DEFAULT_MAX_ITERATIONS = 200  # relaxations solved at most per decision (the work cap)
MIN_RANGE_WIDTH = 1e-9  # a share range this narrow is not halved again (the work cap's other half)
SHARE_DECIMALS = 12  # shares are decided, checked and reported at this many decimals (Plan.mix rounds to them)
_SCAN_POINTS = 65  # shares tried per scan of a range; scans nest, each SCAN_POINTS - 1 times finer
_SCAN_ROUNDS = 6


@dataclass(frozen=True)
class ShareDecision:
    """A decision with continuous shares and its certificate: every plan with any shares (replicas integers)
    has an objective <= `upper`; `plan` is feasible (or an Infeasible). `stopped` says why the search ended:
    "optimal" (upper - lower within eps x max(1, |lower|): optimal to eps), "infeasible" (the relaxation has
    no plan, so no shares have one), "iterations" or "resolution" (the work cap: not proven to eps; `gap` is
    what is proven)."""

    plan: Plan | Infeasible
    upper: float
    eps: float
    stopped: str
    iterations: int  # relaxations solved
    ranges: int  # share ranges of the last relaxation, over every stage
    grid_objective: float | None  # the 1/N grid plan's objective (plan_pipeline); None where it has none
    solve_time_s: float

    @property
    def lower(self) -> float:
        return self.plan.objective if isinstance(self.plan, Plan) else -math.inf

    @property
    def gap(self) -> float:
        """upper - lower (0 when proven infeasible; inf when no plan was found but none is ruled out)."""
        if self.upper == -math.inf:
            return 0.0
        if not isinstance(self.plan, Plan):
            return math.inf
        return max(0.0, self.upper - self.plan.objective)

    @property
    def proven(self) -> bool:
        return self.stopped in ("optimal", "infeasible")

    def to_dict(self) -> dict:
        return {
            "plan": self.plan.to_dict(),
            "upper": None if self.upper == -math.inf else self.upper,
            "lower": None if self.lower == -math.inf else self.lower,
            "gap": None if math.isinf(self.gap) else self.gap,
            "eps": self.eps,
            "proven": self.proven,
            "stopped": self.stopped,
            "iterations": self.iterations,
            "ranges": self.ranges,
            "grid_objective": self.grid_objective,
            "solve_time_s": self.solve_time_s,
        }


@dataclass
class RelaxedSolution:
    upper: float
    options: list[StageOptions]
    choice: list[int]


class ShareRelaxation:
    """The relaxation over share ranges of one pipeline at one load: per stage a list of range ends (its
    partition of [0, 1]), the relaxed option sets over them (`options`) and their exact optimum (`solve`). The
    part options of a range (all stages at once) and each stage's splits over it are computed once and kept, so
    refining a few ranges costs a few ranges' work."""

    def __init__(self, pipeline, rps: float, profiles: PipelineProfiles, arrival_dispersion: float = 1.0):
        from pipetune.optimizer import policy_restriction, stage_options

        self.pipeline, self.rps, self.profiles, self.dispersion = pipeline, float(rps), profiles, arrival_dispersion
        self.restriction: Restriction = policy_restriction(pipeline, profiles, "ipa")
        self.singles = stage_options(pipeline, rps, profiles, self.restriction, arrival_dispersion=arrival_dispersion)
        self.budget = pipeline.caps.max_total_cores is not None
        self._parts: dict[tuple[float, float], list[StageOptions]] = {}
        self._splits: dict[tuple[int, float, float], tuple[StageOptions, MixParts] | None] = {}

    def _parts_over(self, lo: float, hi: float) -> list[StageOptions]:
        """Every stage's undominated part options over main shares [lo, hi] of its load."""
        key = (lo, hi)
        if key not in self._parts:
            from pipetune.optimizer import stage_options

            opts = stage_options(
                self.pipeline,
                self.rps * lo,
                self.profiles,
                self.restriction,
                arrival_dispersion=self.dispersion,
                formation_rps=self.rps * hi,
            )
            self._parts[key] = [undominated_parts(so, self.pipeline.objective, self.budget) for so in opts]
        return self._parts[key]

    def _split(self, s: int, lo: float, hi: float) -> tuple[StageOptions, MixParts] | None:
        key = (s, lo, hi)
        if key not in self._splits:
            a, b = self._parts_over(lo, hi)[s], self._parts_over(1.0 - hi, 1.0 - lo)[s]
            self._splits[key] = split_options(self.singles[s], a, b, lo, hi, self.pipeline.objective, self.budget)
        return self._splits[key]

    def options(self, partitions: list[list[float]]) -> list[StageOptions]:
        """Per stage its one-variant options and its relaxed splits over the ranges between its range ends."""
        return [
            stack_splits(so, [self._split(s, lo, hi) for lo, hi in zip(ends[:-1], ends[1:])])
            for s, (so, ends) in enumerate(zip(self.singles, partitions))
        ]

    def solve(self, partitions: list[list[float]], time_limit_s: float = 30.0) -> RelaxedSolution | None:
        """The relaxation's optimum over `partitions` (an upper bound on every plan with any shares); None: the
        relaxation has no plan, so no plan with any shares exists. A solver limit raises SolverError."""
        from pipetune.optimizer import assemble_plan

        relaxed = self.options(partitions)
        if not all(len(so) for so in relaxed):
            return None
        pruned = pareto_prune_stages(
            relaxed, self.pipeline.objective, self.budget, max_latency=stage_slack(self.pipeline, relaxed)
        )
        if not all(len(so) for so in pruned):
            return None
        sol = solve(self.pipeline, pruned, time_limit_s=time_limit_s)
        if sol is None:
            return None
        upper = assemble_plan(self.pipeline, "ipa", self.rps, sol.options, sol.choice, 0.0).objective
        return RelaxedSolution(upper=upper, options=sol.options, choice=list(sol.choice))


def uniform_partitions(n_stages: int, steps: int) -> list[list[float]]:
    return [[j / steps for j in range(steps + 1)] for _ in range(n_stages)]


@dataclass
class _Part:
    """One part of a split stage with its profile row: what its latency and capacity at any load follow from."""

    var: int
    batch: int
    cores: int
    replicas: int
    acc: float
    acc_coef: float
    mean: float
    p50: float
    p99: float
    thr: float
    fitted: bool


class _Evaluator:
    """Plans with given discrete choices and shares: each part's latency and capacity at its share of the load,
    the plan's feasibility, and the Plan itself (through `assemble_plan`, as every plan)."""

    def __init__(self, rx: ShareRelaxation):
        self.rx = rx
        p = rx.pipeline
        self.base = cached_for(
            (p, rx.profiles),
            f"base options {rx.restriction!r}",
            lambda owners: build_base_options(owners[0], owners[1], rx.restriction),
        )
        self.paths = cached_for(p, "path_lists", _path_lists)[0]  # paths x stages
        self.sla = p.sla.seconds * (1 + 1e-12)
        self.caps = p.caps

    def part(self, s: int, var: int, batch: int, cores: int, replicas: int) -> _Part:
        b = self.base
        rows = np.arange(int(b.cut[s]), int(b.cut[s + 1]))
        hit = rows[(b.var_idx[rows] == var) & (b.batch[rows] == batch) & (b.cores[rows] == cores)]
        i = int(hit[0])
        return _Part(
            var, batch, cores, replicas, float(b.acc[i]), float(b.acc_coef[i]), float(b.mean[i]), float(b.p50[i]),
            float(b.p99[i]), float(b.thr[i]), bool(b.fitted[i]),
        )  # fmt: skip

    def latency(self, part: _Part, load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(SLA-percentile, mean) latency of `part` at each load (items/s); inf where it does not carry the load
        (capacity within headroom, as `options.expand_options` asks, and strict stability)."""
        lat = stage_latency_arrays(
            mean_s=np.asarray(part.mean),
            p50_s=np.asarray(part.p50),
            p99_s=np.asarray(part.p99),
            throughput=np.asarray(part.thr),
            batch=np.asarray(part.batch),
            replicas=part.replicas,
            rate=load,
            pct=self.rx.pipeline.sla.percentile,
            max_wait=self.caps.max_batch_wait_s,
            arrival_dispersion=self.rx.dispersion,
        )
        cap = part.replicas * part.thr
        ok = carries(cap, load, self.caps.headroom) & (load < cap)
        return np.where(ok, lat.slo, np.inf), np.where(ok, lat.mean, np.inf)

    def split_latency(self, s: int, a: _Part, b: _Part, f: np.ndarray) -> np.ndarray:
        load = self.rx.singles[s].load
        return np.maximum(self.latency(a, f * load)[0], self.latency(b, (1.0 - f) * load)[0])

    def stage_budget(self, s: int, lat: np.ndarray) -> float:
        """The most SLA-percentile latency stage s may have with the other stages at `lat`: the SLA less the
        others along each path through s, the least over those paths."""
        on = self.paths[:, s] > 0
        if not on.any():
            return math.inf
        others = self.paths[on] @ lat - lat[s]
        return float(np.min(self.sla - others))

    def feasible(self, lat: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(lat)) and np.all(self.paths @ lat <= self.sla))


def _scan_furthest(ok, start: float, end: float) -> float:
    """The share furthest from `start` toward `end` (shares at SHARE_DECIMALS) where `ok` holds, found by nested
    scans (each scan's furthest passing point, then the gap to the next point scanned); `start` must pass. Not
    every passing point need be found (the set may have holes): what is returned passes."""
    best = start
    lo, hi = start, end
    for _ in range(_SCAN_ROUNDS):
        pts = np.round(np.linspace(lo, hi, _SCAN_POINTS), SHARE_DECIMALS)
        good = ok(pts)
        idx = np.flatnonzero(good)
        if idx.size == 0:
            break
        k = int(idx[-1])
        if abs(pts[k] - start) > abs(best - start):
            best = float(pts[k])
        if k == _SCAN_POINTS - 1:
            break
        lo, hi = float(pts[k]), float(pts[k + 1])
        if abs(hi - lo) < 10.0**-SHARE_DECIMALS:
            break
    return best


def lower_plan(ev: _Evaluator, options: list[StageOptions], choice: list[int], time_s: float = 0.0) -> Plan | None:
    """A feasible plan with the discrete choices of the relaxation's plan (`options`, `choice`) and shares
    searched for them (module docstring); None when no shares tried make it feasible."""
    rx = ev.rx
    method_pas = rx.pipeline.objective.accuracy == "pas"
    n = len(options)
    lat = np.zeros(n)
    splits: dict[int, tuple[_Part, _Part, float]] = {}
    for s, (so, i) in enumerate(zip(options, choice)):
        m = so.mix
        if m is None or m.alt_var_idx[i] < 0:
            lat[s] = so.lat_slo[i]
            continue
        a = ev.part(s, int(so.var_idx[i]), int(m.main_batch[i]), int(so.cores[i]), int(so.replicas[i]))
        b = ev.part(s, int(m.alt_var_idx[i]), int(m.alt_batch[i]), int(m.alt_cores[i]), int(m.alt_replicas[i]))
        lo, hi = float(m.share[i]), float(m.share_top[i])
        # the share of least latency in the plan's range (anywhere in (0, 1) if none there carries the load)
        f = None
        for span in ((lo, hi), (0.0, 1.0)):
            pts = np.round(np.linspace(*span, _SCAN_POINTS), SHARE_DECIMALS)
            l_pts = ev.split_latency(s, a, b, pts)
            if np.isfinite(l_pts).any():
                f = float(pts[int(np.argmin(l_pts))])
                break
        if f is None:
            return None
        splits[s] = (a, b, f)
        lat[s] = float(ev.split_latency(s, a, b, np.array([f]))[0])
    if not ev.feasible(lat):
        return None
    # push each share toward its more accurate part while every path's SLA holds
    for s, (a, b, f) in splits.items():
        ka, kb = (a.acc, b.acc) if method_pas else (a.acc_coef, b.acc_coef)
        if ka == kb:
            continue
        room = ev.stage_budget(s, lat)
        end = 1.0 if ka > kb else 0.0
        f = _scan_furthest(lambda x, s=s, a=a, b=b, room=room: ev.split_latency(s, a, b, x) <= room, f, end)
        splits[s] = (a, b, f)
        lat[s] = float(ev.split_latency(s, a, b, np.array([f]))[0])
    if not ev.feasible(lat):  # the whole plan, checked again at the shares it reports
        return None
    return _assemble(ev, options, choice, splits, time_s)


def _assemble(ev: _Evaluator, options, choice, splits: dict[int, tuple[_Part, _Part, float]], time_s: float) -> Plan:
    from pipetune.optimizer import assemble_plan

    one: list[StageOptions] = []
    for s, (so, i) in enumerate(zip(options, choice)):
        if s not in splits:
            one.append(so.take(np.array([i])))
            one[-1].mix = None
            continue
        a, b, f = splits[s]
        load = so.load
        slo_a, mean_a = (float(x[0]) for x in ev.latency(a, np.array([f * load])))
        slo_b, mean_b = (float(x[0]) for x in ev.latency(b, np.array([(1.0 - f) * load])))

        def arr(x, dtype=float):
            return np.array([x], dtype)

        one.append(
            StageOptions(
                stage=so.stage,
                load=load,
                variant_names=so.variant_names,
                var_idx=arr(a.var, np.int64),
                acc=arr(f * a.acc + (1 - f) * b.acc),
                acc_coef=arr(f * a.acc_coef + (1 - f) * b.acc_coef),
                batch=arr(a.batch + b.batch, np.int64),
                cores=arr(a.cores, np.int64),
                replicas=arr(a.replicas, np.int64),
                cost=arr(float(a.cores * a.replicas + b.cores * b.replicas)),
                lat_slo=arr(max(slo_a, slo_b)),
                lat_mean=arr(f * mean_a + (1 - f) * mean_b),
                capacity=arr(a.replicas * a.thr + b.replicas * b.thr),
                fitted=arr(a.fitted or b.fitted, bool),
                mix=MixParts(
                    share=arr(f),
                    main_batch=arr(a.batch, np.int64),
                    alt_var_idx=arr(b.var, np.int64),
                    alt_batch=arr(b.batch, np.int64),
                    alt_cores=arr(b.cores, np.int64),
                    alt_replicas=arr(b.replicas, np.int64),
                    main_lat_slo=arr(slo_a),
                    alt_lat_slo=arr(slo_b),
                    share_top=arr(f),
                ),
            )
        )
    rx = ev.rx
    plan = assemble_plan(rx.pipeline, "ipa", rx.rps, one, [0] * len(one), time_s, profiles=rx.profiles)
    return replace(plan, arrival_dispersion=float(rx.dispersion))


def plan_continuous_shares(
    pipeline,
    rps: float,
    profiles: PipelineProfiles | None = None,
    *,
    eps: float = DEFAULT_EPS,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    arrival_dispersion: float = 1.0,
    time_limit_s: float = 30.0,
) -> ShareDecision:
    """The best plan with continuous shares to within eps x max(1, |objective|), with its certificate, or the
    best found and the gap proven when the work cap (`max_iterations` relaxations) stops the search first (module
    docstring). caps.mix_variants 1: nothing to decide, the answer is `plan_pipeline`'s plan itself (proven as
    every plan it returns)."""
    from pipetune.optimizer import options as _options
    from pipetune.optimizer import plan_pipeline, profiles_for

    if not (eps > 0 and math.isfinite(eps)):
        raise PipetuneError(f"eps={eps}: the tolerance must be a positive number (e.g. {DEFAULT_EPS})")
    if not (isinstance(max_iterations, int) and 1 <= max_iterations <= 100_000):
        raise PipetuneError(f"max_iterations={max_iterations} must be an integer in 1-100000")
    t0 = time.perf_counter()
    profiles = profiles or profiles_for(pipeline)
    grid = plan_pipeline(
        pipeline, rps, profiles=profiles, arrival_dispersion=arrival_dispersion, time_limit_s=time_limit_s
    )
    grid_obj = grid.objective if isinstance(grid, Plan) else None
    if pipeline.caps.mix_variants < 2:
        return ShareDecision(
            plan=grid,
            upper=-math.inf if grid_obj is None else grid_obj,
            eps=eps,
            stopped="optimal" if grid_obj is not None else "infeasible",
            iterations=0,
            ranges=0,
            grid_objective=grid_obj,
            solve_time_s=time.perf_counter() - t0,
        )
    if not arrival_dispersion >= 1.0:
        raise PipetuneError(
            f"arrival_dispersion={arrival_dispersion}: continuous shares are decided with a latency bound that needs "
            "queueing to rise with the load, which holds for Poisson (1) or burstier (> 1) arrivals"
        )
    rx = ShareRelaxation(pipeline, rps, profiles, arrival_dispersion)
    ev = _Evaluator(rx)
    partitions = uniform_partitions(len(rx.singles), int(_options.MIX_SHARE_STEPS))
    best: Plan | Infeasible = grid
    upper = math.inf
    stopped = "iterations"
    it = 0
    while it < max_iterations:
        it += 1
        sol = rx.solve(partitions, time_limit_s=time_limit_s)
        if sol is None:
            if isinstance(best, Plan):  # the relaxation holds every plan: it cannot lack one the grid has
                raise SolverError(
                    f"pipeline {pipeline.name!r} at {rps:g} rps: the relaxation over share ranges has no plan, yet "
                    "the grid plan is feasible; a bug in pipetune's share relaxation, report it with the pipeline",
                    status="kInfeasible",
                    phase="share relaxation",
                )
            upper, stopped = -math.inf, "infeasible"
            break
        upper = min(upper, sol.upper)  # nested ranges: never looser; min guards against solver tolerance
        cand = lower_plan(ev, sol.options, sol.choice)
        if cand is not None and (not isinstance(best, Plan) or cand.objective > best.objective):
            best = cand
        if isinstance(best, Plan) and upper - best.objective <= eps * max(1.0, abs(best.objective)):
            stopped = "optimal"
            break
        refined = False
        for s, (so, i) in enumerate(zip(sol.options, sol.choice)):
            m = so.mix
            if m is None or m.alt_var_idx[i] < 0:
                continue
            lo, hi = float(m.share[i]), float(m.share_top[i])
            if hi - lo > MIN_RANGE_WIDTH:
                ends = partitions[s]
                k = ends.index(lo)
                ends.insert(k + 1, (lo + hi) / 2)
                refined = True
        if not refined:
            stopped = "resolution"
            break
    if isinstance(best, Plan):
        best = replace(best, solve_time_s=time.perf_counter() - t0)
        if stopped != "optimal":
            best = replace(
                best,
                note=(best.note + "; " if best.note else "")
                + f"continuous shares not proven optimal to eps={eps:g}: the work cap stopped the search "
                f"({stopped}) with a proven gap of {max(0.0, upper - best.objective):.3g}",
            )
    elif stopped == "infeasible" and isinstance(grid, Infeasible):
        best = grid  # its binding and fallback say why; the relaxation proves no shares help
    return ShareDecision(
        plan=best,
        upper=upper,
        eps=eps,
        stopped=stopped,
        iterations=it,
        ranges=sum(len(e) - 1 for e in partitions),
        grid_objective=grid_obj,
        solve_time_s=time.perf_counter() - t0,
    )
