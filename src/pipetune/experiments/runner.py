"""Run an experiment: check its pipelines, build its runs, run them in worker processes, calibrate, report.

The parts live beside this module, one job each:
  tasks.py        the runs as typed records (`RunTask`, `CalibrationTask`) and the workloads' counts
  plan_cache.py   the memoised planner every run asks
  one_run.py      one system on one workload: the adapter driving the simulator (`simulate`)
  worker.py       one task in a pool process, returned as plain data (failures too)
  pool.py         the process pool and its progress bar
  calibration.py  plans held fixed at steady load, simulated against their predicted p99
  results.py      the results.json mapping; report.py and figures.py write the report from it
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipetune.errors import PipetuneError
from pipetune.experiments.calibration import calibrate_point, calibration_tasks
from pipetune.experiments.one_run import RunOutput, simulate
from pipetune.experiments.plan_cache import PlanCache, planner
from pipetune.experiments.pool import run_pool
from pipetune.experiments.results import collect, variant_facts
from pipetune.experiments.spec import Experiment, ExperimentError
from pipetune.experiments.tasks import CalibrationTask, RunTask, build_tasks, workload_counts
from pipetune.experiments.worker import CDF_LEVELS, run_task

__all__ = [
    "CDF_LEVELS",
    "CalibrationTask",
    "PlanCache",
    "RunOutput",
    "RunTask",
    "build_tasks",
    "calibrate_point",
    "calibration_tasks",
    "planner",
    "run_experiment",
    "run_pool",
    "run_task",
    "simulate",
    "variant_facts",
    "workload_counts",
]


def run_experiment(
    exp: Experiment, out_dir: str | Path, workers: int | None = None, progress=None, figures: bool = True
) -> dict:
    """Run the grid (+ ablation, sweep, calibration), write results, figures and the report into `out_dir`."""
    from pipetune.experiments.report import write_outputs
    from pipetune.spec import load_pipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 2)
    t0 = time.perf_counter()
    variants: dict[str, dict] = {}
    for label, path in exp.pipeline_paths().items():  # fail here, with the file named, not inside a worker
        try:
            pipe = load_pipeline(path)
            variants[label] = variant_facts(pipe)
        except PipetuneError as e:
            raise ExperimentError(f"pipeline {label!r} ({path}) cannot be used: {e}") from None
    tasks = build_tasks(exp, out)
    (out / "logs").mkdir(exist_ok=True)
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        results = run_pool(tasks, workers, f"{exp.name}: runs", progress, pool)
        t_grid = time.perf_counter() - t0
        ok = [r for r in results if "error" not in r]
        cal = run_pool(calibration_tasks(exp, ok), workers, f"{exp.name}: calibration", progress, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    data = collect(exp, results, cal, variants, wall_s=time.perf_counter() - t0, grid_wall_s=t_grid, workers=workers)
    write_outputs(data, out, figures=figures)
    return data
