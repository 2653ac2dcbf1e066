"""One simulated system on one workload: the adapter (policy + predictor) driving the simulator (`simulate`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.adapter import Adapter, Decision
from pipetune.backends.simulator import SimResult, SimSettings, Simulator
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
    on_step: Callable[[Decision], None] | None = None,
) -> RunOutput:
    """Simulate `policy` with `predictor` on per-second `counts` (the adapter drives the simulator)."""
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
    first = plan(pipeline, float(counts[:k].max()), policy=policy, current=None, profiles=profiles, **params)
    initial = dict(first.configs)
    arrivals = arrival_times(counts, process=settings.arrival_process, seed=seed)
    sim = Simulator(
        pipeline,
        profiles,
        arrivals,
        initial,
        sim_settings(settings, seed),
    )
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
