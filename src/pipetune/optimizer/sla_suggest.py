"""Which SLAs a pipeline can promise at a load, and which one to promise: `suggest_sla()`.

IPA asks whoever adds a pipeline for an SLA as `sla_factor` x a base latency, tuned by hand. Here the real
planner answers it. For the variant sets that matter (the most accurate variant of every stage, the cheapest
(fa2-low's lightest), and every set the planner itself picks as the SLA loosens: the frontier between), the
smallest SLA at which the set is feasible at the load is found by bisection over the SLA, each probe a full
`plan_pipeline` with the set held fixed (fa2-high's restriction). Feasibility only grows with the SLA (a looser
SLA keeps every option a tighter one had), so each set's range is [that minimum, infinity).

The recommendation: the planner's objective (accuracy against cores) also only grows with the SLA, from its
value at the tightest feasible SLA to the value it keeps once every option fits. The recommended SLA is the
smallest at which the objective has gained `capture` (default 99%) of that rise: looser buys (almost) nothing,
tighter costs accuracy or cores, and the printed reasoning says how much.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from pipetune.errors import PipetuneError
from pipetune.optimizer import Infeasible, Plan, plan_pipeline
from pipetune.profiles import PipelineProfiles, load_profiles

REL_PRECISION = 1e-3  # bisection stops when hi / lo < 1 + this
MAX_SLA_S = 1e5  # a set not feasible at this SLA is not feasible at any (the load is beyond its capacity)
MIN_SLA_S = 1e-6
SWEEP_POINTS = 16  # SLAs at which the planner's own choice of variants is sampled (geometric grid)
DEFAULT_CAPTURE = 0.99


@dataclass
class VariantSet:
    label: str  # accurate | cheapest | frontier
    variants: dict[str, str]
    accuracy: float  # by the pipeline's accuracy method
    min_sla_s: float | None  # None: infeasible at any SLA at this load
    cores_at_min: int | None  # cores of the cheapest plan with this set at its minimum SLA
    chosen_from_s: float | None = None  # the planner picks this set at sampled SLAs in [from, to]
    chosen_to_s: float | None = None


@dataclass
class SlaSuggestion:
    pipeline: str
    rps: float
    percentile: float
    current_sla_s: float
    min_sla_s: float | None  # the tightest SLA any configuration meets at this load
    saturation_sla_s: float | None  # from here on a looser SLA changes nothing the planner picks
    recommended_sla_s: float | None
    capture: float
    sets: list[VariantSet]
    at_min: dict | None = None  # the planner's plan at min_sla_s (accuracy, cores, objective)
    at_recommended: dict | None = None
    at_saturation: dict | None = None
    reasoning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def with_sla(pipeline, seconds: float):
    """The pipeline with its SLA set to `seconds` (percentile kept)."""
    return pipeline.model_copy(update={"sla": pipeline.sla.model_copy(update={"seconds": float(seconds)})})


def _round_up(x: float) -> float:
    """x rounded up to 3 significant figures (a printed SLA that is still feasible)."""
    if x <= 0:
        return x
    e = math.floor(math.log10(x)) - 2
    return float(f"{math.ceil(x / 10**e - 1e-9) * 10**e:.3g}")


def min_feasible_sla(feasible: Callable[[float], bool], start_s: float) -> float | None:
    """The smallest SLA s with feasible(s) (monotone in s), to REL_PRECISION, or None below MAX_SLA_S."""
    hi = max(float(start_s), MIN_SLA_S)
    while not feasible(hi):
        if hi >= MAX_SLA_S:
            return None
        hi = min(hi * 4, MAX_SLA_S)
    lo = hi
    while lo > MIN_SLA_S and feasible(lo / 4):
        lo /= 4
    if lo <= MIN_SLA_S:
        return lo
    hi, lo = lo, lo / 4  # feasible at hi, not at lo
    while hi / lo > 1 + REL_PRECISION:
        mid = math.sqrt(lo * hi)
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _summary(plan: Plan, sla_s: float) -> dict:
    return {
        "sla_s": sla_s,
        "variants": {s: c.config.variant for s, c in plan.stages.items()},
        "accuracy": plan.accuracy,
        "cores": plan.cost_cores,
        "objective": plan.objective,
        "p_latency_s": plan.latency_e2e_slo_s,
    }


def suggest_sla(
    pipeline,
    rps: float,
    profiles: PipelineProfiles | None = None,
    capture: float = DEFAULT_CAPTURE,
) -> SlaSuggestion:
    """The feasible SLA range of each variant set that matters at `rps`, and a recommended SLA (see the module)."""
    if not (0 < capture < 1):
        raise PipetuneError(f"capture={capture} must be in (0, 1), e.g. 0.99")
    if not (rps >= 0 and math.isfinite(rps)):
        raise PipetuneError(f"rps={rps} must be a finite number >= 0")
    profiles = profiles or load_profiles(pipeline)
    cache: dict[tuple, Plan | Infeasible] = {}

    def plan_at(sla_s: float, variants: dict[str, str] | None = None) -> Plan | Infeasible:
        key = (round(sla_s, 12), tuple(sorted(variants.items())) if variants else None)
        if key not in cache:
            p = with_sla(pipeline, sla_s)
            if variants is None:
                cache[key] = plan_pipeline(p, rps, profiles=profiles)
            else:
                cache[key] = plan_pipeline(p, rps, policy="fa2-high", profiles=profiles, heavy=variants)
        return cache[key]

    def feasible_with(variants: dict[str, str] | None) -> Callable[[float], bool]:
        return lambda s: plan_at(s, variants).feasible

    start = pipeline.sla.seconds
    accurate = {st.name: max(st.variants, key=lambda v: v.accuracy).name for st in pipeline.stages}
    lightest = plan_pipeline(pipeline, rps, policy="fa2-low", profiles=profiles)
    cheapest = {
        s: c.config.variant
        for s, c in (lightest.fallback if isinstance(lightest, Infeasible) else lightest).stages.items()
    }

    lo = min_feasible_sla(feasible_with(None), start)
    out = SlaSuggestion(
        pipeline=pipeline.name,
        rps=float(rps),
        percentile=float(pipeline.sla.percentile),
        current_sla_s=float(start),
        min_sla_s=None if lo is None else _round_up(lo),
        saturation_sla_s=None,
        recommended_sla_s=None,
        capture=capture,
        sets=[],
    )

    def variant_set(label: str, variants: dict[str, str]) -> VariantSet:
        m = min_feasible_sla(feasible_with(variants), lo if lo is not None else start)
        shown = None if m is None else _round_up(m)
        plan = plan_at(shown, variants) if shown is not None else plan_at(start, variants)
        acc = (plan if isinstance(plan, Plan) else plan.fallback).accuracy
        cores = plan.cost_cores if isinstance(plan, Plan) else None
        return VariantSet(label, dict(variants), float(acc), shown, cores)

    if lo is None:
        out.sets = [variant_set("accurate", accurate), variant_set("cheapest", cheapest)]
        out.reasoning = [
            f"No configuration within the caps serves {rps:g} rps at any SLA up to {MAX_SLA_S:g} s: the load is "
            "beyond the pipeline's capacity (caps.max_replicas, caps.max_total_cores); lower the load or raise the caps."
        ]
        return out
    lo = out.min_sla_s
    assert lo is not None
    # Saturation: double until the planner's objective stops moving (every option fits).
    sat = max(lo, start)
    for _ in range(40):
        a, b = plan_at(sat), plan_at(2 * sat)
        assert isinstance(a, Plan) and isinstance(b, Plan)  # feasible from lo on
        if b.objective <= a.objective + 1e-9 * max(1.0, abs(a.objective)):
            break
        sat *= 2
    sat = _round_up(sat)
    p_lo, p_sat = plan_at(lo), plan_at(sat)
    assert isinstance(p_lo, Plan) and isinstance(p_sat, Plan)
    goal = p_lo.objective + capture * (p_sat.objective - p_lo.objective)
    if p_sat.objective - p_lo.objective <= 1e-12:
        rec = lo
    else:
        rec_raw = min_feasible_sla(lambda s: s >= lo and _obj(plan_at(s)) >= goal - 1e-12, lo)
        rec = _round_up(rec_raw if rec_raw is not None else sat)
    p_rec = plan_at(rec)
    assert isinstance(p_rec, Plan)
    out.saturation_sla_s, out.recommended_sla_s = sat, rec
    out.at_min, out.at_recommended, out.at_saturation = _summary(p_lo, lo), _summary(p_rec, rec), _summary(p_sat, sat)

    # The planner's own choices as the SLA loosens, sampled on a geometric grid from the tightest to saturation.
    chosen: dict[tuple, list[float]] = {}
    for i in range(SWEEP_POINTS):
        s = lo * (sat / lo) ** (i / (SWEEP_POINTS - 1)) if sat > lo else lo
        p = plan_at(s)
        assert isinstance(p, Plan)
        chosen.setdefault(tuple(sorted((n, c.config.variant) for n, c in p.stages.items())), []).append(s)
    sets = [("accurate", accurate), ("cheapest", cheapest)]
    for key in chosen:
        v = {n: dict(key)[n] for n in pipeline.stage_names}  # in the pipeline's stage order
        if v not in (accurate, cheapest):
            sets.append(("frontier", v))
    for label, v in sets:
        vs = variant_set(label, v)
        hits = chosen.get(tuple(sorted(v.items())))
        if hits:
            vs.chosen_from_s, vs.chosen_to_s = _round_up(min(hits)), _round_up(max(hits))
        out.sets.append(vs)
    out.sets.sort(key=lambda x: (x.min_sla_s is None, x.min_sla_s or 0.0, -x.accuracy))
    out.reasoning = _reasoning(out, p_lo, p_rec, p_sat)
    return out


def _obj(p: Plan | Infeasible) -> float:
    return p.objective if isinstance(p, Plan) else -math.inf


def _reasoning(out: SlaSuggestion, p_lo: Plan, p_rec: Plan, p_sat: Plan) -> list[str]:
    pct = f"p{out.percentile:g}"
    lines = [
        f"At {out.rps:g} rps no configuration meets an SLA tighter than {out.min_sla_s:g} s ({pct}): there the "
        f"planner serves accuracy {p_lo.accuracy:.4f} on {p_lo.cost_cores} cores.",
        f"From {out.saturation_sla_s:g} s on a looser SLA changes nothing: accuracy {p_sat.accuracy:.4f} on "
        f"{p_sat.cost_cores} cores (objective {p_sat.objective:.4f}).",
        f"Recommended: {out.recommended_sla_s:g} s, the tightest SLA at which the planner's objective has gained "
        f"{out.capture:.0%} of what loosening from {out.min_sla_s:g} s to {out.saturation_sla_s:g} s can buy: "
        f"accuracy {p_rec.accuracy:.4f} on {p_rec.cost_cores} cores (objective {p_rec.objective:.4f}).",
    ]
    acc = next((s for s in out.sets if s.label == "accurate"), None)
    if acc is not None:
        lines.append(
            "The most accurate variants are feasible at no SLA up to the search limit at this load."
            if acc.min_sla_s is None
            else f"The most accurate variants need at least {acc.min_sla_s:g} s"
            + (
                ""
                if acc.chosen_from_s is not None
                else " (the planner does not pick them at any sampled SLA: their cores cost more than their accuracy "
                "is worth under the objective's weights)"
            )
            + "."
        )
    cur = out.current_sla_s
    rec = out.recommended_sla_s or 0.0
    if out.min_sla_s is not None and cur < out.min_sla_s:
        lines.append(
            f"The pipeline's SLA ({cur:g} s) is infeasible at this load: raise it to at least {out.min_sla_s:g} s."
        )
    elif cur < rec:
        lines.append(
            f"The pipeline's SLA ({cur:g} s) is feasible, but tighter than the recommendation: it costs accuracy or cores."
        )
    elif cur > rec * (1 + 1e-9):
        lines.append(f"The pipeline's SLA ({cur:g} s) is looser than needed: {rec:g} s keeps (almost) the same plan.")
    else:
        lines.append(f"The pipeline's SLA ({cur:g} s) is the recommendation.")
    lines.append(
        "IPA's sla_factor set this by hand (a multiple of a base latency); here every number is the planner's, on the "
        "profiles, at this load."
    )
    return lines
