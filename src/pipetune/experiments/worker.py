"""The worker: one task (a run or a calibration point) in a pool process, returned as plain data.

A failure comes back as data too (`{"error": ...}`): the grid goes on and the report lists it. Pipelines and
their profiles are loaded once per process and reused by every task on the same file."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from pipetune import jsonio
from pipetune.backends.simulator import SimResult
from pipetune.experiments.calibration import calibrate_point
from pipetune.experiments.one_run import simulate
from pipetune.experiments.plan_cache import planner
from pipetune.experiments.tasks import CalibrationTask, RunTask, Task, swept_pipeline
from pipetune.metrics import latency_or_inf, per_interval

CDF_LEVELS = np.linspace(0.0, 1.0, 201)  # the levels of each run's stored latency CDF (results.json "cdf")

_LOADED: dict[str, tuple] = {}


def _load(path: str, objective: dict | None):
    key = jsonio.dumps([path, objective], sort_keys=True)
    if key not in _LOADED:
        from pipetune.profiles import load_profiles
        from pipetune.spec import load_pipeline

        pipe = swept_pipeline(load_pipeline(path), objective)
        _LOADED[key] = (pipe, load_profiles(pipe))
    return _LOADED[key]


def _cdf_quantiles(res: SimResult) -> list[float | None]:
    lat = latency_or_inf(res.status, res.finish_s - res.arrival_s)
    with np.errstate(invalid="ignore"):  # levels that fall among the drops are inf
        q = np.quantile(lat, CDF_LEVELS, method="inverted_cdf") if lat.size else np.full(CDF_LEVELS.size, np.nan)
    return [float(x) if math.isfinite(x) else None for x in q]


def run_task(task: Task) -> dict:
    """Worker: one run or calibration point; a failure comes back as data (the grid goes on, the report says)."""
    try:
        return _run_task(task)
    except Exception as e:  # noqa: BLE001 - reported per run, not swallowed
        import traceback

        frames = traceback.extract_tb(e.__traceback__)
        where = next((f for f in reversed(frames) if "/pipetune/" in f.filename), frames[-1])
        return {k: task.get(k) for k in ("kind", "pipeline", "workload", "system", "policy", "seed", "rps")} | {
            "error": f"{type(e).__name__}: {e} (at {where.filename.split('/src/')[-1]}:{where.lineno})"
        }


def _one_thread_per_worker() -> None:
    """The pool already uses every core (torch, if a predictor loads it, reads these)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _run_task(task: Task) -> dict:
    """One (kind, workload, system, seed) run or one calibration point. Returns plain data."""
    _one_thread_per_worker()
    t0, c0 = time.perf_counter(), time.process_time()
    pipe, prof = _load(task.pipeline_path, task.get("objective"))
    if isinstance(task, CalibrationTask):
        return {
            **task.as_dict(),
            **calibrate_point(pipe, prof, task),
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
        }
    return _run(task, pipe, prof, t0, c0)


def _run(task: RunTask, pipe, prof, t0: float, c0: float) -> dict:
    settings = task.settings
    counts = np.asarray(task.counts, dtype=float)
    out = simulate(
        pipe,
        counts,
        policy=task.policy,
        predictor=task.predictor,
        seed=task.seed,
        settings=settings,
        profiles=prof,
        policy_params=task.params,
        log=Path(task.log) if task.log else None,
    )
    iv = per_interval(out.result, settings.interval_s, float(counts.size))
    plans = []
    seen = set()
    for d, p in zip(out.decisions, out.plans):
        if p is None or not p.feasible:
            continue
        key = (jsonio.dumps(d.configs, sort_keys=True), round(d.planned_rps, 3))
        if key not in seen:
            seen.add(key)
            plans.append({"rps": d.planned_rps, "configs": d.configs, "predicted_p99_s": d.predicted_p99_s})
    return {
        "kind": task.kind,
        "pipeline": task.pipeline,
        "sla_s": pipe.sla.seconds,
        "workload": task.workload,
        "system": task.system,
        "seed": task.seed,
        "policy": task.policy,
        "predictor": task.predictor_label,
        "objective": task.objective,
        "summary": out.summary,
        "intervals": {
            k: [None if (isinstance(x, float) and math.isnan(x)) else float(x) for x in v] for k, v in iv.items()
        },
        "cdf": _cdf_quantiles(out.result),
        "plans": plans,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "plan_cache": {"hits": planner().hits, "misses": planner().misses},
    }
