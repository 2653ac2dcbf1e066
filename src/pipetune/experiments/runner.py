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
from collections.abc import Callable
from pathlib import Path

from pipetune.errors import PipetuneError
from pipetune.experiments.calibration import calibrate_point, calibration_tasks
from pipetune.experiments.one_run import RunOutput, simulate
from pipetune.experiments.plan_cache import PlanCache, planner
from pipetune.experiments.pool import Interrupted, make_pool, run_pool, stop_pool
from pipetune.experiments.results import collect, variant_facts
from pipetune.experiments.spec import Experiment, ExperimentError
from pipetune.experiments.tasks import (
    CalibrationTask,
    RunTask,
    build_tasks,
    sweep_points,
    swept_pipeline,
    workload_counts,
)
from pipetune.experiments.worker import CDF_LEVELS, run_task

__all__ = [
    "CDF_LEVELS",
    "CalibrationTask",
    "ExperimentInterrupted",
    "PlanCache",
    "RunOutput",
    "RunTask",
    "build_tasks",
    "calibrate_point",
    "calibration_tasks",
    "check_before_running",
    "planner",
    "run_experiment",
    "run_pool",
    "run_task",
    "simulate",
    "variant_facts",
    "workload_counts",
]


class ExperimentInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped an experiment: `data` (written to `out`/results.json, its report marked partial) holds the
    runs completed before it."""

    def __init__(self, data: dict, out: Path):
        super().__init__()
        self.data, self.out = data, out


def check_before_running(exp: Experiment) -> dict[str, dict]:
    """What can only be checked against the pipelines, checked before any run: each pipeline loads with its
    profiles, and every objective the sweep builds is a valid one. Returns the per-variant facts of each."""
    from pipetune.spec import load_pipeline

    variants: dict[str, dict] = {}
    for label, path in exp.pipeline_paths().items():  # fail here, with the file named, not inside a worker
        try:
            pipe = load_pipeline(path)
            variants[label] = variant_facts(pipe)
        except PipetuneError as e:
            raise ExperimentError(f"pipeline {label!r} ({path}) cannot be used: {e}") from None
        for a, b in sweep_points(exp):
            try:
                swept_pipeline(pipe, {"alpha": a, "beta": b}, where=f"{path} with sweep alpha={a:g}, beta={b:g}")
            except PipetuneError as e:
                raise ExperimentError(f"sweep: alpha={a:g}, beta={b:g} makes pipeline {label!r} invalid: {e}") from None
    return variants


def run_experiment(
    exp: Experiment,
    out_dir: str | Path,
    workers: int | None = None,
    progress=None,
    figures: bool = True,
    on_progress: Callable[[dict], None] | None = None,
) -> dict:
    """Run the grid (+ ablation, sweep, calibration), write results, figures and the report into `out_dir`.

    `on_progress(result)` is called after each run and calibration point. Ctrl-C (KeyboardInterrupt) stops the
    workers at once, writes the completed runs and a report marked partial, and raises ExperimentInterrupted."""
    from pipetune.experiments.report import write_outputs

    variants = check_before_running(exp)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 2)
    t0 = time.perf_counter()
    tasks = build_tasks(exp, out)
    (out / "logs").mkdir(exist_ok=True)
    pool = make_pool(workers) if workers > 1 else None
    results: list[dict] = []
    cal: list[dict] = []
    cal_tasks: list = []
    t_grid: float | None = None
    stopped_in = None
    try:
        results = run_pool(tasks, workers, f"{exp.name}: runs", progress, pool, on_progress)
        t_grid = time.perf_counter() - t0
        cal_tasks = calibration_tasks(exp, [r for r in results if "error" not in r])
        cal = run_pool(cal_tasks, workers, f"{exp.name}: calibration", progress, pool, on_progress)
    except KeyboardInterrupt as e:  # Interrupted from run_pool, or a Ctrl-C between the two pools
        completed = e.results if isinstance(e, Interrupted) else []
        if t_grid is None:
            results, stopped_in, t_grid = completed, "runs", time.perf_counter() - t0
        else:
            cal, stopped_in = completed, "calibration"
    finally:
        if pool is not None and stopped_in:
            stop_pool(pool)  # no worker left behind
        elif pool is not None:
            pool.shutdown()
    data = collect(
        exp, results, cal, variants, wall_s=time.perf_counter() - t0, grid_wall_s=t_grid or 0.0, workers=workers
    )
    if stopped_in is not None:
        data["partial"] = {
            "reason": f"interrupted (Ctrl-C) during the {stopped_in}",
            "runs_done": len(results),
            "runs_planned": len(tasks),
            "calibration_done": len(cal),
            "calibration_planned": len(cal_tasks) if stopped_in == "calibration" else None,
        }
        write_outputs(data, out, figures=False)  # prompt: `pipetune experiment report OUT` draws them
        raise ExperimentInterrupted(data, out)
    write_outputs(data, out, figures=figures)
    return data
