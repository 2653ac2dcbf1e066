"""Decide per stage (variant, batch, cores, replicas) at a given load: `plan_pipeline()`.

Policies all run on the same exact solver; they differ only in what they let change:
  ipa          every knob
  fa2-low      scale and batch only; the lightest (highest-throughput) variant of every stage fixed
  fa2-high     scale and batch only; a given heavy variant per stage fixed (default: the most accurate)
  rim          switch variants only; replicas fixed (param `replicas`, default 3 or the current count),
               batch and cores fixed to the smallest allowed
  static-peak  ipa, planned for the peak rate (param `peak_rps`) and then held
Among optimal plans the one closest to `current` wins (variant and batch changes first, then cores, then
replica-count changes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from pipetune.errors import SolverError
from pipetune.latency import longest_path
from pipetune.optimizer import options as _options
from pipetune.optimizer.incumbent import cached_for, stage_slack
from pipetune.optimizer.milp import solve
from pipetune.optimizer.options import (
    Restriction,
    StageOptions,
    build_base_options,
    expand_options,
    host_capacity_rps,
    host_charge,
    pareto_prune_stages,
    stage_loads,
    with_mixed_options,
)
from pipetune.optimizer.plan import Infeasible, Plan, StageChoice, StageConfig
from pipetune.profiles import PipelineProfiles, load_profiles
from pipetune.runtime_profile import RuntimeProfile

POLICIES = ("ipa", "fa2-low", "fa2-high", "rim", "static-peak")
DEFAULT_RIM_REPLICAS = 3
# Bounds the arrival-dispersion a plan may assume (variance / mean of per-second counts; Twitter's trace at IPA's
# loads is ~0.1-10): far beyond it every stage is planned for bursts no per-second forecast describes.
MAX_ARRIVAL_DISPERSION = 1000.0

__all__ = [
    "POLICIES",
    "plan_pipeline",
    "profiles_for",
    "Plan",
    "Infeasible",
    "StageConfig",
    "StageChoice",
    "stage_options",
]


def profiles_for(pipeline) -> PipelineProfiles:
    """The pipeline's profiles, loaded once per pipeline object (cached beside its other planning tables)."""
    return cached_for(pipeline, "profiles", load_profiles)


def policy_restriction(pipeline, profiles, policy: str, current=None, **params) -> Restriction:
    if policy not in POLICIES:
        from pipetune.errors import PipetuneError

        raise PipetuneError(f"policy {policy!r} is unknown; choose one of {', '.join(POLICIES)}")
    if policy in ("ipa", "static-peak"):
        return Restriction()
    pick: dict[str, tuple[str, ...]] = {}
    if policy == "fa2-low":
        for st in pipeline.stages:
            b0, c0 = pipeline.batch_sizes_for(st.name)[0], pipeline.cores_for(st.name)[0]
            pick[st.name] = (
                max(
                    st.variants, key=lambda v: (profiles.row(st.name, v.name, b0, c0).throughput_rps, -v.accuracy)
                ).name,
            )
        return Restriction(variants=pick)
    if policy == "fa2-high":
        heavy: Mapping[str, str] = params.get("heavy") or {}
        for st in pipeline.stages:
            name = heavy.get(st.name) or max(st.variants, key=lambda v: v.accuracy).name
            if name not in [v.name for v in st.variants]:
                from pipetune.errors import PipetuneError

                raise PipetuneError(f"fa2-high heavy.{st.name}: unknown variant {name!r}")
            pick[st.name] = (name,)
        return Restriction(variants=pick)
    # rim
    reps = params.get("replicas")
    fixed: dict[str, int] = {}
    for st in pipeline.stages:
        if isinstance(reps, Mapping):
            fixed[st.name] = int(reps[st.name])
        elif reps is not None:
            fixed[st.name] = int(reps)
        elif current is not None and st.name in current:
            fixed[st.name] = int(current[st.name].replicas)
        else:
            fixed[st.name] = DEFAULT_RIM_REPLICAS
    return Restriction(
        batches={s: (pipeline.batch_sizes_for(s)[0],) for s in pipeline.stage_names},
        cores={s: (pipeline.cores_for(s)[0],) for s in pipeline.stage_names},
        replicas=fixed,
    )


def stage_options(
    pipeline,
    rps: float,
    profiles=None,
    restriction: Restriction | None = None,
    *,
    sla_s: float | None = None,
    arrival_dispersion: float = 1.0,
    runtime: RuntimeProfile | None = None,
    formation_rps: float | None = None,
) -> list[StageOptions]:
    """Every (unpruned) option of every stage at `rps` requests/s (what the oracle enumerates).

    `sla_s`: keep the options whose own latency fits this many seconds instead of the pipeline's SLA (math.inf:
    every option that carries the load within the caps). `arrival_dispersion`, `runtime`: see `plan_pipeline`.
    `formation_rps` (>= rps): batch formation taken at this rate, so each option's latency is a lower bound over
    the rates [rps, formation_rps] (the bound on continuous shares, `continuous_share_bound`)."""
    profiles = profiles or profiles_for(pipeline)
    restriction = restriction or Restriction()
    base = cached_for(
        (pipeline, profiles),
        f"base options {restriction!r}",
        lambda owners: build_base_options(owners[0], owners[1], restriction),
    )
    loads = stage_loads(pipeline, rps)
    caps = pipeline.caps
    return expand_options(
        base,
        [loads[s] for s in base.stages],
        pct=pipeline.sla.percentile,
        sla_s=pipeline.sla.seconds if sla_s is None else sla_s,
        headroom=caps.headroom,
        max_replicas=caps.max_replicas,
        fixed_replicas=[(restriction.replicas or {}).get(s) for s in base.stages],
        max_wait=caps.max_batch_wait_s,
        arrival_dispersion=arrival_dispersion,
        host=None if runtime is None else host_charge(pipeline, profiles, base, runtime, rps),
        formation_loads=None
        if formation_rps is None
        else [stage_loads(pipeline, formation_rps)[s] for s in base.stages],
        min_replicas=[(restriction.min_replicas or {}).get(s, 1) for s in base.stages]
        if restriction.min_replicas
        else None,
    )


def mixed_stage_options(
    pipeline,
    rps: float,
    singles: list[StageOptions],
    profiles,
    restriction: Restriction,
    *,
    arrival_dispersion: float = 1.0,
) -> list[StageOptions]:
    """`singles` (every stage's one-variant options at `rps`) plus every split of a stage's load over two variants
    (options.with_mixed_options), the parts' options computed at each share of the load."""
    steps = _options.MIX_SHARE_STEPS  # read at call time (a test coarsens it to check against brute force)
    parts_at = {
        j: stage_options(pipeline, rps * j / steps, profiles, restriction, arrival_dispersion=arrival_dispersion)
        for j in range(1, steps)
    }
    return with_mixed_options(singles, parts_at, pipeline.objective, budget=pipeline.caps.max_total_cores is not None)


def _distance(so: StageOptions, cur: StageConfig | None) -> np.ndarray:
    if cur is None:
        return np.zeros(len(so))
    names = np.array(so.variant_names)[so.var_idx]
    return (
        1e6 * (names != cur.variant)
        + 1e6 * (so.batch != cur.batch)
        + 1e3 * (so.cores != cur.cores)
        + np.abs(so.replicas - cur.replicas)
    ).astype(float)


def plan_pipeline(
    pipeline,
    rps: float,
    policy: str = "ipa",
    current: Mapping[str, StageConfig] | None = None,
    profiles: PipelineProfiles | None = None,
    measured_only: bool = False,
    time_limit_s: float = 30.0,
    arrival_dispersion: float = 1.0,
    runtime: RuntimeProfile | None = None,
    **params,
) -> Plan | Infeasible:
    """The best configuration at `rps` requests/s under `policy`, or Infeasible with a best-effort fallback.

    `measured_only`: plan on the profile's measured cells alone (no cell from a fitted law). `time_limit_s`: per
    HiGHS run; a run it stops raises SolverError (so does any other solve without an answer), never Infeasible.
    `arrival_dispersion`: variance / mean of the per-second request counts the plan must hold under (1: Poisson,
    the safe default; 0: the same count every second; > 1: burstier than Poisson); see `pipetune.latency`.
    `runtime`: the serving runtime's CPU on a shared host (runtime_profile.py); with it every plan keeps the
    host's CPU within its budget and every stage's latency counts its hops and the host's slowdown. None: the
    host is not counted (plans exactly as before runtime profiles existed). When the host's CPU is what cannot
    hold `rps` (binding `host`, `sla+host`, ...), the fallback is the best plan for the highest rate the host does
    hold within every limit (`held_rate`): admission refuses the rest, and refusing is the last resort."""
    result = _plan_once(
        pipeline, rps, policy, current, profiles, measured_only, time_limit_s, arrival_dispersion, runtime, **params
    )
    if runtime is None or not isinstance(result, Infeasible) or policy == "static-peak" or "host" not in result.binding:
        return result
    held = held_rate(
        lambda r: _plan_once(
            pipeline, r, policy, current, profiles, measured_only, time_limit_s, arrival_dispersion, runtime, **params
        ),
        rps,
    )
    if held is None:
        return result
    note = (
        f"best-effort fallback: the best plan for {held.rps:.4g} rps, the most the host holds within every limit "
        f"({result.binding}); admission refuses the rest"
    )
    return replace(result, fallback=replace(held, feasible=False, note=note))


@dataclass(frozen=True)
class ShareBound:
    """How far a plan with shares on the 1/N grid can be from the best plan with continuous shares (each part's
    replicas integers, its share any number in [0, 1]): that optimum lies in [plan.objective, upper]."""

    plan: Plan | Infeasible  # what plan_pipeline returns (shares on the grid)
    upper: float  # no plan with any shares has a higher objective (-inf: none holds at all)
    steps: int  # N of the share ranges the bound was taken over

    @property
    def gap(self) -> float:
        """upper - the grid plan's objective (inf when the grid has no plan but the bound does not rule one out)."""
        if not self.plan.feasible:
            return 0.0 if self.upper == -math.inf else math.inf
        return max(0.0, self.upper - self.plan.objective)  # type: ignore[union-attr]


def continuous_share_bound(
    pipeline,
    rps: float,
    profiles: PipelineProfiles | None = None,
    *,
    steps: int | None = None,
    arrival_dispersion: float = 1.0,
    time_limit_s: float = 30.0,
) -> ShareBound:
    """The grid plan of a pipeline that may split stages (caps.mix_variants 2) and an upper bound on the
    objective of the best plan with continuous shares: the same exact solver over a relaxation in which each
    share range [j/N, (j+1)/N] (N = `steps`, default MIX_SHARE_STEPS) is one option per pair of parts, with
    its capacity needed only at the range's bottom, its latency a lower bound over the range (batch formation
    at the top, queueing at the bottom: formation falls and queueing rises with the load) and its accuracy the
    better end's. Every continuous plan is matched or beaten by one of the relaxation, so its optimum bounds them
    all. Queueing rises with the load for Poisson or burstier arrivals, so `arrival_dispersion` < 1 is refused.

    One relaxation over uniform ranges: `shares.plan_continuous_shares` refines the ranges its plans use until
    the continuous optimum itself is decided to a tolerance. The grid plan's gap to `upper` shrinks as N grows
    (nested ranges only tighten the relaxation)."""
    from pipetune.errors import PipetuneError

    if pipeline.caps.mix_variants < 2:
        raise PipetuneError("continuous_share_bound: the pipeline's caps.mix_variants is 1 (no stage splits)")
    if not arrival_dispersion >= 1.0:
        raise PipetuneError(
            f"arrival_dispersion={arrival_dispersion}: the share bound needs queueing to rise with the load, "
            "which holds for Poisson (1) or burstier (> 1) arrivals"
        )
    n = int(steps or _options.MIX_SHARE_STEPS)
    if not 1 <= n <= 1000:
        raise PipetuneError(f"steps={steps} must be 1-1000 share ranges")
    profiles = profiles or profiles_for(pipeline)
    plan = plan_pipeline(
        pipeline, rps, profiles=profiles, arrival_dispersion=arrival_dispersion, time_limit_s=time_limit_s
    )
    from pipetune.optimizer.shares import ShareRelaxation, uniform_partitions

    rx = ShareRelaxation(pipeline, rps, profiles, arrival_dispersion)
    sol = rx.solve(uniform_partitions(len(rx.singles), n), time_limit_s=time_limit_s)
    upper = -math.inf if sol is None else sol.upper
    return ShareBound(plan=plan, upper=upper, steps=n)


# Bisection steps of `held_rate`: the rate found is within rps / 2^HELD_RATE_STEPS below the highest one held.
HELD_RATE_STEPS = 8


def held_rate(plan_at, rps: float) -> Plan | None:
    """The feasible plan (`plan_at(rate)`) for the highest rate below `rps` that has one, by bisection
    (HELD_RATE_STEPS plans at most, plus one at the low end); None when not even the lowest rate tried has one."""
    lo, hi, best = 0.0, float(rps), None
    for _ in range(HELD_RATE_STEPS):
        mid = (lo + hi) / 2
        r = plan_at(mid)
        if r.feasible:
            lo, best = mid, r
        else:
            hi = mid
    if best is None:
        r = plan_at(lo)
        best = r if r.feasible else None
    return best


SPARE_REPLICAS = 2  # what availability.spare_replica asks of a stage: one replica serving while another is replaced


def spare_stages(pipeline, profiles, runtime: RuntimeProfile | None, restriction: Restriction) -> list[str]:
    """The stages that availability.spare_replica keeps at SPARE_REPLICAS: every stage that runs as replicas,
    except those whose replicas a policy fixes and those the runtime runs in its ingress (no replica to lose)."""
    if not pipeline.availability.spare_replica:
        return []
    inline = _options.inline_stages(pipeline, profiles, runtime)
    fixed = restriction.replicas or {}
    return [s for s in pipeline.stage_names if s not in inline and s not in fixed]


def _plan_once(
    pipeline,
    rps: float,
    policy: str,
    current: Mapping[str, StageConfig] | None,
    profiles: PipelineProfiles | None,
    measured_only: bool,
    time_limit_s: float,
    arrival_dispersion: float,
    runtime: RuntimeProfile | None,
    **params,
) -> Plan | Infeasible:
    """`_plan_at` with availability.spare_replica: a plan with the spares when one fits every limit, else the
    plan without them (its note says so). Without the setting, `_plan_at` as it is."""
    args = (pipeline, rps, policy, current, profiles, measured_only, time_limit_s, arrival_dispersion, runtime)
    if not pipeline.availability.spare_replica:
        return _plan_at(*args, **params)
    spare = spare_stages(
        pipeline, profiles or profiles_for(pipeline), runtime,
        policy_restriction(pipeline, profiles or profiles_for(pipeline), policy, current=current, **params),
    )  # fmt: skip
    with_spare = _plan_at(*args, min_replicas=dict.fromkeys(spare, SPARE_REPLICAS), **params)
    if not isinstance(with_spare, Infeasible) or not spare:
        return with_spare
    plain = _plan_at(*args, **params)
    if isinstance(plain, Infeasible):
        return plain
    note = (
        f"availability.spare_replica: no plan with {SPARE_REPLICAS} replicas of {', '.join(spare)} holds "
        f"{rps:.4g} rps within every limit ({with_spare.binding}); planned without the spares"
    )
    return replace(plain, note=f"{plain.note}; {note}" if plain.note else note)


def _plan_at(
    pipeline,
    rps: float,
    policy: str,
    current: Mapping[str, StageConfig] | None,
    profiles: PipelineProfiles | None,
    measured_only: bool,
    time_limit_s: float,
    arrival_dispersion: float,
    runtime: RuntimeProfile | None,
    min_replicas: dict[str, int] | None = None,
    **params,
) -> Plan | Infeasible:
    """`plan_pipeline` at one rate, with the fallback of `_infeasible` when no plan holds it. `min_replicas`: the
    fewest replicas per stage (a spare replica's lower bound)."""
    from pipetune.errors import PipetuneError

    if not (rps >= 0 and math.isfinite(rps)):
        raise PipetuneError(f"rps={rps} must be a finite number >= 0")
    if not (0.0 <= arrival_dispersion <= MAX_ARRIVAL_DISPERSION):
        raise PipetuneError(
            f"arrival_dispersion={arrival_dispersion} must be in [0, {MAX_ARRIVAL_DISPERSION:g}] (variance / mean "
            "of per-second request counts; 1 for Poisson arrivals)"
        )
    t0 = time.perf_counter()
    profiles = profiles or profiles_for(pipeline)
    if policy == "static-peak":
        rps = float(params.get("peak_rps", rps))
    restriction = policy_restriction(pipeline, profiles, policy, current=current, **params)
    if measured_only:
        restriction = replace(restriction, measured_only=True)
    if min_replicas:
        restriction = replace(restriction, min_replicas=dict(min_replicas))
    if pipeline.caps.mix_variants > 1 and runtime is not None:
        # The host CPU of a split is each part's at its share, and the host figures of a plan (capacity, CPU per
        # request) are per variant of a stage: not modelled for two variants per stage, so refused, not wrong.
        raise PipetuneError(
            "caps.mix_variants: 2 cannot be combined with a runtime profile yet; set mix_variants: 1, or plan "
            "without the runtime profile"
        )
    raw = stage_options(pipeline, rps, profiles, restriction, arrival_dispersion=arrival_dispersion, runtime=runtime)
    if pipeline.caps.mix_variants > 1:
        raw = mixed_stage_options(pipeline, rps, raw, profiles, restriction, arrival_dispersion=arrival_dispersion)
    empty = [so for so in raw if len(so) == 0]
    if empty:
        so = empty[0]
        kind = so.why_empty.split(":")[0]
        return _infeasible(
            pipeline,
            policy,
            rps,
            f"{kind}:{so.stage}",
            f"stage {so.stage!r}: {so.why_empty}",
            profiles,
            restriction,
            t0,
            arrival_dispersion,
            runtime=runtime,
        )
    cur = dict(current) if current else None
    keeps: list[np.ndarray | None] = []
    for so in raw:
        c = cur.get(so.stage) if cur else None
        if c is None:
            keeps.append(None)
        else:
            names = np.array(so.variant_names)[so.var_idx]
            keeps.append((names == c.variant) & (so.batch == c.batch))
    budget = pipeline.caps.max_total_cores is not None
    # Dominated options go, and so do options that cannot fit the SLA even next to the fastest options of the
    # other stages (pruning does not change a stage's fastest latency, so both are decided on `raw` at once).
    pruned = pareto_prune_stages(raw, pipeline.objective, budget, keeps, max_latency=stage_slack(pipeline, raw))
    if any(len(so) == 0 for so in pruned):
        binding, reason = _diagnose(pipeline, rps, raw, profiles, restriction, runtime)
        return _infeasible(
            pipeline, policy, rps, binding, reason, profiles, restriction, t0, arrival_dispersion, runtime=runtime
        )
    dist = [_distance(so, cur.get(so.stage) if cur else None) for so in pruned] if cur else None
    # None: no plan exists (a solve stopped by a limit raises SolverError instead)
    sol = solve(pipeline, pruned, distance=dist, time_limit_s=time_limit_s)
    if sol is None:
        binding, reason = _diagnose(pipeline, rps, raw, profiles, restriction, runtime)
        return _infeasible(
            pipeline, policy, rps, binding, reason, profiles, restriction, t0, arrival_dispersion, runtime=runtime
        )
    plan = assemble_plan(pipeline, policy, rps, sol.options, sol.choice, time.perf_counter() - t0, profiles=profiles)
    return _with_host(replace(plan, arrival_dispersion=float(arrival_dispersion)), pipeline, profiles, runtime)


def _with_host(plan: Plan, pipeline, profiles, runtime: RuntimeProfile | None) -> Plan:
    """The plan with its host figures (CPU kept busy at its rate, the budget, the rate it holds), when a runtime
    profile is counted; unchanged otherwise."""
    if runtime is None:
        return plan
    from pipetune.optimizer.options import capacity_rps, host_cpu_per_request

    return replace(
        plan,
        host_cpu_cores=plan.rps * host_cpu_per_request(pipeline, profiles, plan.configs, runtime),
        host_cpu_budget_cores=runtime.cpu_budget_cores,
        host_capacity_rps=host_capacity_rps(pipeline, profiles, plan.configs, runtime),
        capacity_rps=capacity_rps(pipeline, profiles, plan.configs, runtime),
    )


def assemble_plan(
    pipeline,
    policy: str,
    rps: float,
    options: list[StageOptions],
    choice: list[int],
    solve_time_s: float,
    feasible: bool = True,
    note: str = "",
    profiles: PipelineProfiles | None = None,
) -> Plan:
    obj = pipeline.objective
    stages: dict[str, StageChoice] = {}
    mix: dict[str, list[tuple[StageConfig, float]]] = {}
    for so, i in zip(options, choice):
        main = StageConfig(
            variant=so.variant_names[so.var_idx[i]],
            batch=int(so.batch[i]),
            cores=int(so.cores[i]),
            replicas=int(so.replicas[i]),
        )
        if so.mix is not None and so.mix.alt_var_idx[i] >= 0:
            m = so.mix
            main = replace(main, batch=int(m.main_batch[i]))
            alt = StageConfig(
                variant=so.variant_names[m.alt_var_idx[i]],
                batch=int(m.alt_batch[i]),
                cores=int(m.alt_cores[i]),
                replicas=int(m.alt_replicas[i]),
            )
            share = round(float(m.share[i]), 12)  # a multiple of 1/MIX_SHARE_STEPS, without float residue
            # the larger share first: it is the stage's config for callers that know one variant per stage
            parts = [(main, share), (alt, round(1.0 - share, 12))]
            mix[so.stage] = sorted(parts, key=lambda p: -p[1])
            main = mix[so.stage][0][0]
        stages[so.stage] = StageChoice(
            config=main,
            accuracy=float(so.acc[i]),
            load_rps=float(so.load),
            capacity_rps=float(so.capacity[i]),
            latency_mean_s=float(so.lat_mean[i]),
            latency_slo_s=float(so.lat_slo[i]),
            fitted=bool(so.fitted[i]),
        )
    # Said once per plan: what the fitted cells it rests on assume for want of measurements.
    assumptions = [
        f"{s}/{c.config.variant}: {a}"
        for s, c in stages.items()
        if c.fitted and profiles is not None
        for a in profiles.get(s, c.config.variant).assumptions
    ]
    pas = float(np.prod([c.accuracy for c in stages.values()]))
    coef = [float(so.acc_coef[i]) for so, i in zip(options, choice)]
    accuracy = pas if obj.accuracy == "pas" else float(sum(coef))
    # every part of a split stage holds its cores and has its batch
    cost = sum(float(so.cost[i]) for so, i in zip(options, choice))
    batch_sum = sum(int(so.batch[i]) for so, i in zip(options, choice))
    slo, path = longest_path(pipeline, {s: c.latency_slo_s for s, c in stages.items()})
    mean, _ = longest_path(pipeline, {s: c.latency_mean_s for s, c in stages.items()})
    terms = obj.terms(accuracy, cost, batch_sum)
    return Plan(
        pipeline=pipeline.name,
        policy=policy,
        rps=rps,
        stages=stages,
        accuracy=accuracy,
        pas=pas,
        cost_cores=int(cost),
        batch_sum=int(batch_sum),
        objective=float(sum(terms.values())),
        objective_terms=terms,
        latency_e2e_mean_s=mean,
        latency_e2e_slo_s=slo,
        critical_path=path,
        solve_time_s=solve_time_s,
        feasible=feasible,
        note=note,
        assumptions=assumptions,
        mix=mix,
    )


def _diagnose(
    pipeline, rps: float, raw: list[StageOptions], profiles, restriction, runtime: RuntimeProfile | None = None
) -> tuple[str, str]:
    """What makes a pipeline whose every stage has options (`raw`, unpruned) infeasible at `rps`:
      sla         not even the fastest option of every stage (any number of cores) meets the SLA;
      budget      the SLA alone holds, but not even the cheapest options that carry the load (SLA aside) fit
                  caps.max_total_cores;
      host        (with a runtime profile) the SLA alone holds, but not even the options of least host CPU that
                  carry the load (SLA aside) keep the host within its CPU budget: admission will refuse the rest;
      sla+budget  each holds alone, both together do not (sla+host, sla+budget+host likewise).
    (`capacity:<stage>` and `sla:<stage>`, a stage with no option at all, are named before any solve.)
    Without a budget the fastest options are a plan, so an infeasible answer there is a solver fault."""
    fastest = {so.stage: float(so.lat_slo.min()) for so in raw}
    slo, path = longest_path(pipeline, fastest)
    sla = pipeline.sla.seconds
    if slo > sla:
        worst = max(path, key=lambda s: fastest[s])
        return "sla", (
            f"the SLA of {sla:g} s cannot hold at this load: the fastest options along "
            f"{' -> '.join(path)} need {slo:.3g} s (stage {worst!r} alone {fastest[worst]:.3g} s)"
        )
    budget = pipeline.caps.max_total_cores
    if runtime is not None:
        carry_h = stage_options(pipeline, rps, profiles, restriction, sla_s=math.inf, runtime=runtime)
        least = sum(float(so.host_cpu.min()) for so in carry_h if so.host_cpu is not None and len(so))
        limit = carry_h[0].host_budget if carry_h and carry_h[0].host_budget is not None else math.inf
        fixed = rps * runtime.per_request_cpu_s
        if least > limit:
            return "host", (
                f"the host cannot hold {rps:g} rps even with the cheapest variants: they keep {least + fixed:.3g} "
                f"cores of CPU busy ({fixed:.3g} of them the runtime's per-request CPU) and a plan may use "
                f"{runtime.cpu_budget_cores:.3g} (utilisation cap {runtime.utilisation_cap:g} x "
                f"{runtime.host_cores:g} host cores, at most the cores less {runtime.switch_reserve_cores:g} kept "
                "for replicas starting); admission refuses what the fallback cannot hold"
            )
    if budget is None and runtime is not None:
        return "sla+host", (
            f"the SLA alone holds (fastest options: {slo:.3g} s of {sla:g} s) and so does the host's CPU budget "
            f"alone ({runtime.cpu_budget_cores:.3g} cores), but not both at once at this load: admission refuses "
            "what the fallback cannot hold"
        )
    if budget is None:
        raise SolverError(
            f"pipeline {pipeline.name!r} at {rps:g} rps: the solver found no plan, yet the fastest options meet "
            f"the SLA ({slo:.3g} s of {sla:g} s) and no core budget applies; a bug in pipetune's model, report it "
            "with the pipeline (PIPETUNE_TRACEBACK=1 shows where)",
            status="kInfeasible",
            phase="diagnosis",
        )
    # The cheapest options regardless of the SLA: the raw sets hold only options that fit the SLA on their own.
    carry = stage_options(pipeline, rps, profiles, restriction, sla_s=math.inf, runtime=runtime)
    cheapest = sum(float(so.cost.min()) for so in carry)
    if cheapest > budget:
        return "budget", (
            f"even the cheapest options that carry the load need {cheapest:g} cores, SLA aside; "
            f"caps.max_total_cores is {budget:g}: raise it"
        )
    both = "sla+budget" if runtime is None else "sla+budget+host"
    return both, (
        f"the SLA alone holds (fastest options: {slo:.3g} s of {sla:g} s) and so does the core budget alone "
        f"(cheapest options: {cheapest:g} of {budget:g} cores), but not both at once at this load: "
        "raise caps.max_total_cores or the SLA"
    )


def _infeasible(
    pipeline,
    policy,
    rps,
    binding,
    reason,
    profiles,
    restriction,
    t0,
    arrival_dispersion: float = 1.0,
    runtime: RuntimeProfile | None = None,
) -> Infeasible:
    """Fallback: per stage the option with the most capacity per replica, scaled to the load where possible.
    With a runtime profile, where every stage has options that carry the load: per stage the one of least host
    CPU (then the fastest), so that the host, and admission's limit with it, holds the most it can."""
    least = (
        None if runtime is None else _least_host_cpu(pipeline, rps, profiles, restriction, arrival_dispersion, runtime)
    )
    fallback_opts, choice = least or (_most_capacity(pipeline, rps, profiles, restriction, arrival_dispersion), None)
    dt = time.perf_counter() - t0
    fb = assemble_plan(
        pipeline,
        policy,
        rps,
        fallback_opts,
        choice or [0] * len(fallback_opts),
        dt,
        feasible=False,
        note=f"best-effort fallback: {reason}",
        profiles=profiles,
    )
    fb = _with_host(replace(fb, arrival_dispersion=float(arrival_dispersion)), pipeline, profiles, runtime)
    return Infeasible(
        pipeline=pipeline.name, policy=policy, rps=rps, binding=binding, reason=reason, fallback=fb, solve_time_s=dt
    )


def _least_host_cpu(
    pipeline, rps, profiles, restriction, arrival_dispersion: float, runtime: RuntimeProfile
) -> tuple[list[StageOptions], list[int]] | None:
    """Per stage the option that carries the load (SLA aside) with the least host CPU, then the fastest; None when
    some stage has no option that carries it."""
    carry = stage_options(
        pipeline, rps, profiles, restriction, sla_s=math.inf, arrival_dispersion=arrival_dispersion, runtime=runtime
    )
    if not all(len(so) for so in carry):
        return None
    return carry, [int(np.lexsort((so.lat_slo, np.asarray(so.host_cpu)))[0]) for so in carry]


def _most_capacity(pipeline, rps, profiles, restriction, arrival_dispersion: float) -> list[StageOptions]:
    """Per stage one option: the lowest-latency one with enough capacity at the load, else the most capacity."""
    loads = stage_loads(pipeline, rps)
    caps = pipeline.caps
    table = build_base_options(pipeline, profiles, restriction)
    fallback_opts: list[StageOptions] = []
    for base in (table.stage(s) for s in range(len(table))):
        stage = base.stages[0]
        fixed = (restriction.replicas or {}).get(stage)
        load = loads[stage]
        # clipped to the caps before the cast (bounded work and no int64 overflow at any load)
        need = np.minimum(np.ceil(load * (1 + caps.headroom) / base.thr + 1e-9), caps.max_replicas)
        n = np.maximum(need, 1).astype(np.int64) if fixed is None else np.full(base.thr.size, fixed)
        n = np.minimum(n, caps.max_replicas)
        capacity = n * base.thr
        meets = capacity > load
        # enough capacity: the lowest-latency such option; otherwise the most capacity
        key = np.where(meets, -base.p99, -np.inf)
        i = int(np.argmax(key)) if meets.any() else int(np.argmax(capacity))
        so = StageOptions(
            stage=stage,
            load=load,
            variant_names=base.variant_names[0],
            var_idx=base.var_idx[[i]],
            acc=base.acc[[i]],
            acc_coef=base.acc_coef[[i]],
            batch=base.batch[[i]],
            cores=base.cores[[i]],
            replicas=n[[i]],
            cost=(base.cores[[i]] * n[[i]]).astype(float),
            lat_slo=np.array([math.inf]),
            lat_mean=np.array([math.inf]),
            capacity=capacity[[i]],
            fitted=base.fitted[[i]],
        )
        from pipetune.latency import stage_latency_arrays

        lat = stage_latency_arrays(
            mean_s=base.mean[[i]],
            p50_s=base.p50[[i]],
            p99_s=base.p99[[i]],
            throughput=base.thr[[i]],
            batch=base.batch[[i]],
            replicas=n[[i]],
            rate=load,
            pct=pipeline.sla.percentile,
            max_wait=caps.max_batch_wait_s,
            arrival_dispersion=arrival_dispersion,
        )
        so.lat_slo, so.lat_mean = lat.slo, lat.mean
        fallback_opts.append(so)
    return fallback_opts
