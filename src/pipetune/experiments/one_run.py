"""One simulated system on one workload: the adapter (policy + predictor) driving the simulator (`simulate`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.adapter import Adapter, Decision
from pipetune.backends.simulator import SimResult, SimSettings, Simulator
from pipetune.backends.simulator.autoscaler import POLICY as AUTOSCALE_POLICY
from pipetune.backends.simulator.autoscaler import AutoscalingConfig, RayAutoscaler
from pipetune.backends.simulator.host import host_settings
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.experiments.plan_cache import planner
from pipetune.experiments.spec import Settings
from pipetune.metrics import summarise


def sim_settings(settings: Settings, seed: int, with_load_time: bool = True) -> SimSettings:
    """The simulator's knobs from an experiment's settings (one home: runs and calibration points share it)."""
    return SimSettings(
        seed=seed,
        drop_limit_s=settings.drop_limit_s,
        batch_wait_s=settings.batch_wait_s,
        service=settings.service,
        load_time_s=settings.load_time_s if with_load_time else None,
        host_cores=settings.host_cores,
        host_overhead_s=settings.host_overhead_s,
        host_hop_s=settings.host_hop_s,
        host_call_s=settings.host_call_s,
        host_side_s=settings.host_side_s,
        host_load_cores=settings.host_load_cores,
    )


@dataclass
class RunOutput:
    result: SimResult
    decisions: list[Decision]
    plans: list
    summary: dict
    initial: dict[str, StageConfig]
    counts: np.ndarray
    extra: dict = field(default_factory=dict)


def simulate(
    pipeline,
    counts: np.ndarray,
    policy: str = "ipa",
    predictor: Any = "reactive",
    seed: int = 0,
    settings: Settings | None = None,
    profiles=None,
    policy_params: dict | None = None,
    log=None,
    on_step: Callable[[Any], None] | None = None,  # each Decision (adapter) or tick (autoscaler): reads .t
    runtime: Any = None,
) -> RunOutput:
    """Simulate `policy` with `predictor` on per-second `counts` (the adapter drives the simulator; for
    policy 'ray-autoscale', Ray Serve's reactive autoscaler does, and `predictor` is not used).

    `runtime`: a RuntimeProfile: the planner counts the runtime's CPU on the host, and the simulator's shared
    host is the same profile (`host_settings`: its fields replace the settings' host CPU knobs, all but
    host_load_cores), as the live runtime it twins."""
    from pipetune.profiles import load_profiles
    from pipetune.workloads import arrival_times, integer_counts

    settings = settings or Settings()
    profiles = profiles or load_profiles(pipeline)
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 1 or counts.size < 2:
        raise PipetuneError("counts must be a 1-D per-second request-count series of at least 2 seconds")
    params = dict(policy_params or {})
    if policy == "static-peak" and "peak_rps" not in params:
        params["peak_rps"] = float(counts.max())  # provisioned for the window's peak, as an operator would
    plan = planner()
    k = max(1, int(round(settings.interval_s)))
    auto = None
    if policy == AUTOSCALE_POLICY:  # the plan it starts from fixes the variants, batch sizes and cores
        auto = autoscaling_config(params)
        params = {"policy": params.get("start") or "ipa"}
    else:
        params = {"policy": policy, **params}
    host = {} if runtime is None else {"runtime": runtime}
    first = plan(pipeline, float(counts[:k].max()), current=None, profiles=profiles, **params, **host)
    initial = dict(first.configs)  # an Infeasible's are its fallback's
    arrivals = arrival_times(counts, process=settings.arrival_process, seed=seed)
    knobs = sim_settings(settings, seed)
    if runtime is not None:
        knobs = dataclasses.replace(knobs, **host_settings(runtime, pipeline, profiles))
    sim = Simulator(pipeline, profiles, arrivals, initial, knobs)
    if auto is not None:
        return _autoscaled(sim, pipeline, auto, counts, initial, log, on_step)
    params.pop("policy")
    adapter = Adapter(
        sim,
        pipeline,
        policy=policy,
        predictor=predictor,
        interval_s=settings.interval_s,
        profiles=profiles,
        policy_params=params,
        log=log,
        future_counts=integer_counts(counts),
        planner=plan,
        rps_quantum=settings.rps_quantum,
        runtime=runtime,
    )
    if hasattr(adapter.predictor, "reset"):
        adapter.predictor.reset()
    try:
        adapter.run(float(counts.size), on_step=on_step)
    finally:
        adapter.close()
    sim.close()
    res = sim.result(horizon_s=float(counts.size))
    summary = summarise(res, float(counts.size), decisions=len(adapter.decisions))
    summary["applied"] = sum(d.applied for d in adapter.decisions)
    solve = [d.solve_time_s for d in adapter.decisions]
    summary["solve_time_median_s"] = float(np.median(solve)) if solve else 0.0
    summary["infeasible_decisions"] = sum(not d.feasible for d in adapter.decisions)
    return RunOutput(res, adapter.decisions, adapter.plans, summary, initial, counts)


AUTOSCALE_START = ("ipa", "fa2-low", "fa2-high")


def autoscaling_config(params: dict) -> AutoscalingConfig:
    """The 'ray-autoscale' policy's parameters: Ray's `autoscaling_config` fields, plus `start` (the planner
    policy whose first plan fixes every stage's variant, batch and cores)."""
    start = params.get("start") or "ipa"
    if start not in AUTOSCALE_START:
        raise PipetuneError(f"ray-autoscale start={start!r}: use one of {', '.join(AUTOSCALE_START)}")
    return AutoscalingConfig(**{k: v for k, v in params.items() if k != "start" and v is not None})


def _autoscaled(sim, pipeline, cfg: AutoscalingConfig, counts, initial, log, on_step) -> RunOutput:
    """The run under Ray Serve's autoscaler: no decisions or plans, its replica changes in `extra`."""
    import contextlib
    from pathlib import Path

    with contextlib.ExitStack() as stack:
        out = None
        if isinstance(log, (str, Path)):
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(open(log, "w"))  # noqa: SIM115 - closed by the stack
        elif log is not None:
            out = log
        auto = RayAutoscaler(sim, pipeline, cfg, log=out)
        auto.run(float(counts.size), on_tick=None if on_step is None else lambda t: on_step(_Tick(t)))
    sim.close()
    res = sim.result(horizon_s=float(counts.size))
    summary = summarise(res, float(counts.size), decisions=0)
    summary["applied"] = len(auto.actions)
    summary["solve_time_median_s"] = 0.0
    summary["infeasible_decisions"] = 0
    extra = {"autoscaling": auto.settings(), "actions": auto.actions}
    return RunOutput(res, [], [], summary, initial, counts, extra)


@dataclass
class _Tick:
    """What a progress callback reads from a step (`t`), for runs without adapter decisions."""

    t: float
