"""Run one simulated system on one workload (`simulate`), and whole experiment grids in parallel processes.

A grid run is a plain dict task so it can cross a process boundary; `run_task` is the worker. Plans are
memoised per process on (policy, rps, configuration in effect, params): the optimizer is deterministic, so
a repeated question gets the same answer without re-solving (the decision log keeps the original solve time).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.adapter import Adapter, Decision
from pipetune.backends.simulator import SimResult, SimSettings, Simulator
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.experiments.spec import Experiment, ExperimentError, Settings, Workload
from pipetune.metrics import per_interval, summarize

CDF_LEVELS = np.linspace(0.0, 1.0, 201)


# ---------------------------------------------------------------------------------------------- one run
class PlanCache:
    """Memoised planner: same (policy, rps, current configuration, params) -> same plan."""

    def __init__(self, max_entries: int = 20_000):
        from pipetune.optimizer import plan_pipeline

        self._plan = plan_pipeline
        self._cache: dict = {}
        self.hits = 0
        self.misses = 0
        self.max_entries = max_entries

    def __call__(self, pipeline, rps, policy="ipa", current=None, profiles=None, **params):
        key = (
            id(pipeline),
            policy,
            round(float(rps), 6),
            tuple(sorted(current.items())) if current else None,
            repr(sorted(params.items())),
        )
        hit = self._cache.get(key)
        if hit is not None and hit[0] is pipeline:
            self.hits += 1
            return hit[1]
        self.misses += 1
        res = self._plan(pipeline, rps, policy=policy, current=current, profiles=profiles, **params)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
        self._cache[key] = (pipeline, res)
        return res


_PLANNER: PlanCache | None = None


def planner() -> PlanCache:
    global _PLANNER
    if _PLANNER is None:
        _PLANNER = PlanCache()
    return _PLANNER


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
        SimSettings(
            seed=seed,
            drop_limit_s=settings.drop_limit_s,
            batch_wait_s=settings.batch_wait_s,
            service=settings.service,
            load_time_s=settings.load_time_s,
        ),
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
    summary = summarize(res, float(counts.size), decisions=len(adapter.decisions))
    summary["applied"] = sum(d.applied for d in adapter.decisions)
    solve = [d.solve_time_s for d in adapter.decisions]
    summary["solve_time_median_s"] = float(np.median(solve)) if solve else 0.0
    summary["infeasible_decisions"] = sum(not d.feasible for d in adapter.decisions)
    return RunOutput(res, adapter.decisions, adapter.plans, summary, initial, counts)


# ---------------------------------------------------------------------------------------------- workloads
def workload_counts(w: Workload, exp: Experiment) -> np.ndarray:
    from pipetune.workloads import damp, load_trace, paper_window, synthetic_pattern

    if w.synthetic is not None:
        counts = synthetic_pattern(w.synthetic, seconds=w.seconds, seed=w.seed, peak=w.peak)
    elif w.paper is not None:
        shared = exp.resolve(exp.settings.shared_dir) if exp.settings.shared_dir else None
        counts = paper_window(w.paper, shared_dir=shared)
    else:
        path = exp.resolve(w.trace)
        if not path.exists():
            raise ExperimentError(f"workloads[{w.name}].trace: {path} does not exist; give a per-second count file")
        counts = load_trace(path)[w.start :]
        if w.damping != 1:
            counts = damp(counts, w.damping)
    if w.duration is not None:
        counts = counts[: w.duration]
    counts = np.asarray(counts, dtype=float) * w.scale
    if counts.size < 2 * max(1, int(exp.settings.interval_s)):
        raise ExperimentError(f"workloads[{w.name}]: only {counts.size} s of trace; give at least two intervals")
    return counts


# ---------------------------------------------------------------------------------------------- worker
_LOADED: dict[str, tuple] = {}


def _load(path: str, objective: dict | None):
    key = json.dumps([path, objective], sort_keys=True)
    if key not in _LOADED:
        from pipetune.profiles import load_profiles
        from pipetune.spec import load_pipeline

        pipe = load_pipeline(path)
        if objective:
            pipe = pipe.model_copy(update={"objective": pipe.objective.model_copy(update=objective)})
        _LOADED[key] = (pipe, load_profiles(pipe))
    return _LOADED[key]


def _cdf_quantiles(res: SimResult) -> list[float]:
    lat = np.where(res.status == 1, res.finish_s - res.arrival_s, np.inf)
    with np.errstate(invalid="ignore"):  # levels that fall among the drops are inf
        q = np.quantile(lat, CDF_LEVELS, method="inverted_cdf") if lat.size else np.full(CDF_LEVELS.size, np.nan)
    return [float(x) if math.isfinite(x) else None for x in q]


def run_task(task: dict) -> dict:
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


def _run_task(task: dict) -> dict:
    """One (kind, workload, system, seed) run or one calibration point. Returns plain data."""
    # One thread per worker: the pool already uses every core (torch, if a predictor loads it, reads these).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    pipe, prof = _load(task["pipeline_path"], task.get("objective"))
    settings = Settings.model_validate(task["settings"])
    if task["kind"] == "calibration":
        return {
            **task,
            **calibrate_point(pipe, prof, task),
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
        }
    counts = np.asarray(task["counts"], dtype=float)
    log = Path(task["log"]) if task.get("log") else None
    out = simulate(
        pipe,
        counts,
        policy=task["policy"],
        predictor=task["predictor"],
        seed=task["seed"],
        settings=settings,
        profiles=prof,
        policy_params=task.get("params"),
        log=log,
    )
    iv = per_interval(out.result, settings.interval_s, float(counts.size))
    plans = []
    seen = set()
    for d, p in zip(out.decisions, out.plans):
        if p is None or not p.feasible:
            continue
        key = (json.dumps(d.configs, sort_keys=True), round(d.planned_rps, 3))
        if key not in seen:
            seen.add(key)
            plans.append({"rps": d.planned_rps, "configs": d.configs, "predicted_p99_s": d.predicted_p99_s})
    return {
        "kind": task["kind"],
        "pipeline": task["pipeline"],
        "sla_s": pipe.sla.seconds,
        "workload": task["workload"],
        "system": task["system"],
        "seed": task["seed"],
        "policy": task["policy"],
        "predictor": task["predictor_label"],
        "objective": task.get("objective"),
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


def calibrate_point(pipe, prof, task: dict) -> dict:
    """Hold one plan fixed at its planned rate (Poisson, steady) and measure the simulated end-to-end p99."""
    from pipetune.workloads import arrival_times

    settings = Settings.model_validate(task["settings"])
    seconds = int(task["seconds"])
    arr = arrival_times(np.full(seconds, float(task["rps"])), process="poisson", seed=task["seed"])
    configs = {s: StageConfig(**c) for s, c in task["configs"].items()}
    sim = Simulator(
        pipe,
        prof,
        arr,
        configs,
        SimSettings(
            seed=task["seed"],
            drop_limit_s=settings.drop_limit_s,
            batch_wait_s=settings.batch_wait_s,
            service=settings.service,
        ),
    )
    sim.close()
    res = sim.result(float(seconds))
    m = summarize(res, float(seconds))
    lat = (res.finish_s - res.arrival_s)[res.status == 1]
    pct = pipe.sla.percentile
    # Drops/failures count as infinitely late: the simulated SLA-percentile latency of all requests.
    allq = np.where(res.status == 1, res.finish_s - res.arrival_s, np.inf)
    with np.errstate(invalid="ignore"):
        sim_q = float(np.percentile(allq, pct, method="inverted_cdf")) if allq.size else float("nan")
    return {
        "sim_p99_s": sim_q if math.isfinite(sim_q) else None,
        "sim_p99_completed_s": float(np.percentile(lat, pct)) if lat.size else None,
        "sim_violation_rate": m["sla_violation_rate"],
        "sla_s": pipe.sla.seconds,
        "ratio": (sim_q / task["predicted_p99_s"]) if math.isfinite(sim_q) else None,
    }


# ---------------------------------------------------------------------------------------------- grids
def build_tasks(exp: Experiment, out_dir: Path | None = None, logs: bool = True) -> list[dict]:
    settings = exp.settings.model_dump()
    counts = {w.name: workload_counts(w, exp) for w in exp.workloads}
    paths = exp.pipeline_paths()
    tasks: list[dict] = []

    def label(p) -> str:
        return p if isinstance(p, str) else str(p.get("name", p))

    def add(pipe, kind, wname, sysname, policy, predictor, seed, params=None, objective=None):
        logpath = None
        if out_dir is not None and logs:
            safe = f"{pipe}-{kind}-{wname}-{sysname}-s{seed}".replace("/", "_").replace(" ", "_")
            logpath = str(out_dir / "logs" / f"{safe}.jsonl")
        tasks.append(
            {
                "kind": kind,
                "pipeline": pipe,
                "pipeline_path": str(paths[pipe]),
                "workload": wname,
                "system": sysname,
                "policy": policy,
                "predictor": predictor,
                "predictor_label": label(predictor),
                "seed": seed,
                "params": params or {},
                "objective": objective,
                "settings": settings,
                "counts": counts[wname].tolist(),
                "log": logpath,
            }
        )

    for pipe in paths:
        for w in exp.workloads:
            for s in exp.systems:
                for seed in exp.seeds:
                    add(pipe, "grid", w.name, s.name, s.policy, s.predictor, seed, s.params)
        if exp.ablation:
            for wname in exp.ablation.workloads or [w.name for w in exp.workloads]:
                for p in exp.ablation.predictors:
                    add(
                        pipe,
                        "ablation",
                        wname,
                        f"{exp.ablation.policy}+{label(p)}",
                        exp.ablation.policy,
                        p,
                        exp.seeds[0],
                    )
        if exp.sweep:
            wname = exp.sweep.workload or exp.workloads[0].name
            for a in exp.sweep.alpha:
                for b in exp.sweep.beta:
                    add(
                        pipe,
                        "sweep",
                        wname,
                        f"a={a:g},b={b:g}",
                        exp.sweep.policy,
                        exp.sweep.predictor,
                        exp.seeds[0],
                        objective={"alpha": a, "beta": b},
                    )
    # The biggest runs first keeps every worker busy to the end.
    tasks.sort(key=lambda t: -float(np.sum(t["counts"])))
    return tasks


def calibration_tasks(exp: Experiment, results: list[dict]) -> list[dict]:
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
            {
                "kind": "calibration",
                "pipeline": pipe,
                "pipeline_path": str(path),
                "settings": exp.settings.model_dump(),
                "seconds": cal.seconds,
                "seed": i,
                "system": sysname,
                **c,
            }
            for i, c in enumerate(cands)
        ]
    return out


def run_pool(tasks: list[dict], workers: int, description: str, progress=None, pool=None) -> list[dict]:
    """Run tasks in `workers` processes (1: in this process) with a rich progress bar; `pool` reuses an
    executor (worker start-up and imports are paid once per experiment)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: list[dict] = []
    if not tasks:
        return results
    own = progress is None
    prog = progress or Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    if own:
        prog.start()
    try:
        bar = prog.add_task(description, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1 and pool is None:
            for t in tasks:
                results.append(run_task(t))
                prog.advance(bar)
        else:
            ex = pool or ProcessPoolExecutor(max_workers=workers)
            try:
                futs = [ex.submit(run_task, t) for t in tasks]
                for f in as_completed(futs):
                    results.append(f.result())
                    prog.advance(bar)
            finally:
                if pool is None:
                    ex.shutdown()
    finally:
        if own:
            prog.stop()
    return results


def variant_facts(pipe) -> dict:
    """Per stage and variant: accuracy and the best throughput per core over the allowed (batch, cores), plus the
    objective's weights: what the report needs to explain a policy's variant choices."""
    from pipetune.profiles import load_profiles

    prof = load_profiles(pipe)
    stages = {}
    for st in pipe.stages:
        rows = []
        for v in st.variants:
            per_core = max(
                prof.row(st.name, v.name, b, c).throughput_rps / c
                for b in pipe.batch_sizes_for(st.name)
                for c in pipe.cores_for(st.name)
            )
            rows.append(
                {
                    "variant": v.name,
                    "accuracy": v.accuracy,
                    "items_per_s_per_core": per_core,
                    "load_time_s": prof.get(st.name, v.name).load_time_s,
                }
            )
        stages[st.name] = rows
    return {
        "alpha": pipe.objective.alpha,
        "beta": pipe.objective.beta,
        "accuracy": pipe.objective.accuracy,
        "stages": stages,
    }


def run_experiment(
    exp: Experiment, out_dir: str | Path, workers: int | None = None, progress=None, figures: bool = True
) -> dict:
    """Run the grid (+ ablation, sweep, calibration), write results, figures and the report into `out_dir`."""
    from pipetune.experiments.report import write_outputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, 2)
    t0 = time.perf_counter()
    from pipetune.spec import load_pipeline

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
    wall = time.perf_counter() - t0
    errors = [r for r in results + cal if "error" in r]
    results = [r for r in results if "error" not in r]
    cal = [r for r in cal if "error" not in r]
    from pipetune.spec import load_pipeline

    paths = exp.pipeline_paths()
    slas = {k: load_pipeline(p, check_profiles=False).sla.seconds for k, p in paths.items()}
    data = {
        "experiment": exp.model_dump(mode="json"),
        "pipelines": {k: str(p) for k, p in paths.items()},
        "sla_s": slas,
        "runs": results,
        "calibration": cal,
        "wall_s": wall,
        "grid_wall_s": t_grid,
        "workers": workers,
        "variants": variants,
        "errors": errors,
        "cpu_s": sum(r.get("cpu_s", 0.0) for r in results + cal),
        "grid_cpu_s": sum(r.get("cpu_s", 0.0) for r in results),
    }
    write_outputs(data, out, figures=figures)
    return data
