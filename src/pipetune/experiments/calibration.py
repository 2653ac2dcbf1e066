"""Planner calibration: hold distinct plans of the ipa system fixed at their planned rate under steady Poisson
load and measure the simulated SLA-percentile latency against the predicted one."""

from __future__ import annotations

import json
import math

import numpy as np

from pipetune.backends.simulator import Simulator
from pipetune.configs import StageConfig
from pipetune.experiments.one_run import sim_settings
from pipetune.experiments.spec import Experiment
from pipetune.experiments.tasks import CalibrationTask
from pipetune.metrics import COMPLETED, latency_or_inf, summarise


def calibration_tasks(exp: Experiment, results: list[dict]) -> list[CalibrationTask]:
    """Distinct plans of the ipa system (per pipeline, at most `samples`), to re-simulate at steady load."""
    if exp.calibration is None:
        return []
    cal = exp.calibration
    sysname = cal.system or next((s.name for s in exp.systems if s.policy == "ipa"), None)
    if sysname is None:
        return []
    out = []
    for pipe, path in exp.pipeline_paths().items():
        cands, seen = [], set()
        for r in results:
            if r["kind"] != "grid" or r["system"] != sysname or r["pipeline"] != pipe:
                continue
            for p in r["plans"]:
                key = (json.dumps(p["configs"], sort_keys=True), round(p["rps"], 1))
                if key not in seen and p["rps"] > 0:
                    seen.add(key)
                    cands.append({**p, "workload": r["workload"]})
        rng = np.random.default_rng(0)
        if len(cands) > cal.samples:
            cands = [cands[i] for i in sorted(rng.choice(len(cands), cal.samples, replace=False))]
        out += [
            CalibrationTask(
                pipeline=pipe,
                pipeline_path=str(path),
                settings=exp.settings,
                seconds=cal.seconds,
                seed=i,
                system=sysname,
                workload=c["workload"],
                rps=c["rps"],
                configs=c["configs"],
                predicted_p99_s=c["predicted_p99_s"],
            )
            for i, c in enumerate(cands)
        ]
    return out


def calibrate_point(pipe, prof, task: CalibrationTask) -> dict:
    """Hold one plan fixed at its planned rate (Poisson, steady) and measure the simulated end-to-end p99."""
    from pipetune.workloads import arrival_times

    settings = task.settings
    seconds = int(task.seconds)
    arr = arrival_times(np.full(seconds, float(task.rps)), process="poisson", seed=task.seed)
    configs = {s: StageConfig(**c) for s, c in task.configs.items()}
    sim = Simulator(
        pipe,
        prof,
        arr,
        configs,
        # a fixed configuration: nothing loads, so the load-time override does not apply
        sim_settings(settings, task.seed, with_load_time=False),
    )
    sim.close()
    res = sim.result(float(seconds))
    m = summarise(res, float(seconds))
    lat = (res.finish_s - res.arrival_s)[res.status == COMPLETED]
    pct = pipe.sla.percentile
    # Drops/failures count as infinitely late: the simulated SLA-percentile latency of all requests.
    allq = latency_or_inf(res.status, res.finish_s - res.arrival_s)
    with np.errstate(invalid="ignore"):
        sim_q = float(np.percentile(allq, pct, method="inverted_cdf")) if allq.size else float("nan")
    return {
        "sim_p99_s": sim_q if math.isfinite(sim_q) else None,
        "sim_p99_completed_s": float(np.percentile(lat, pct)) if lat.size else None,
        "sim_violation_rate": m["sla_violation_rate"],
        "sla_s": pipe.sla.seconds,
        "ratio": (sim_q / task.predicted_p99_s) if math.isfinite(sim_q) else None,
    }
