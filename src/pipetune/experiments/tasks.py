"""The runs of an experiment as typed records: what one worker process needs to do one run.

`build_tasks` expands an experiment into grid runs (pipeline x workload x system x seed), ablation runs (one
predictor each) and sweep runs (one objective each); `workload_counts` turns a workload into per-second counts.
A record crosses the process boundary by pickling, so it holds plain data (no open pipeline or profile)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pipetune.experiments.spec import Experiment, ExperimentError, Settings, Workload


class _Record:
    """Read access by key as well (`task["pipeline"]`), for code that treats a task as the data it carries."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        out["settings"] = self.settings.model_dump()  # type: ignore[attr-defined]
        return out


@dataclass(frozen=True, eq=False)
class RunTask(_Record):
    """One simulated run: `system` (policy + predictor) of `pipeline` on one workload with one seed."""

    kind: Literal["grid", "ablation", "sweep"]
    pipeline: str  # label (the pipeline's folder name)
    pipeline_path: str
    workload: str
    system: str
    policy: str
    predictor: str | dict[str, Any]
    predictor_label: str
    seed: int
    settings: Settings
    counts: np.ndarray  # per-second request counts of the workload
    params: dict[str, Any] = field(default_factory=dict)  # policy parameters
    objective: dict[str, float] | None = None  # a sweep's objective weights, over the pipeline's
    log: str | None = None  # the adapter's decision log (JSON lines)

    @property
    def requests(self) -> float:
        return float(np.sum(self.counts))


@dataclass(frozen=True, eq=False)
class CalibrationTask(_Record):
    """One plan held fixed at its planned rate under steady Poisson load, to compare simulated and predicted p99."""

    pipeline: str
    pipeline_path: str
    settings: Settings
    seconds: float
    seed: int
    system: str
    workload: str
    rps: float
    configs: dict[str, dict[str, Any]]
    predicted_p99_s: float
    kind: Literal["calibration"] = "calibration"


Task = RunTask | CalibrationTask


def workload_counts(w: Workload, exp: Experiment) -> np.ndarray:
    from pipetune.workloads import damp, load_trace, paper_window, synthetic_pattern

    if w.synthetic is not None:
        counts = synthetic_pattern(w.synthetic, seconds=w.seconds, seed=w.seed, peak=w.peak)
    elif w.paper is not None:
        shared = exp.resolve(exp.settings.shared_dir) if exp.settings.shared_dir else None
        counts = paper_window(w.paper, shared_dir=shared)
    else:
        assert w.trace is not None  # a workload names exactly one of synthetic, paper, trace
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


def predictor_label(p: str | dict[str, Any]) -> str:
    return p if isinstance(p, str) else str(p.get("name", p))


def build_tasks(exp: Experiment, out_dir: Path | None = None, logs: bool = True) -> list[RunTask]:
    """Every run of `exp`, the biggest first (which keeps every worker busy to the end)."""
    counts = {w.name: workload_counts(w, exp) for w in exp.workloads}
    paths = exp.pipeline_paths()
    exp.check_load_scale()
    tasks: list[RunTask] = []

    def add(pipe, kind, wname, sysname, policy, predictor, seed, params=None, objective=None):
        logpath = None
        if out_dir is not None and logs:
            safe = f"{pipe}-{kind}-{wname}-{sysname}-s{seed}".replace("/", "_").replace(" ", "_")
            logpath = str(out_dir / "logs" / f"{safe}.jsonl")
        tasks.append(
            RunTask(
                kind=kind,
                pipeline=pipe,
                pipeline_path=str(paths[pipe]),
                workload=wname,
                system=sysname,
                policy=policy,
                predictor=predictor,
                predictor_label=predictor_label(predictor),
                seed=seed,
                settings=exp.settings,
                counts=counts[wname] * exp.load_scale.get(pipe, 1.0),
                params=dict(params or {}),
                objective=objective,
                log=logpath,
            )
        )

    for pipe in paths:
        for w in exp.workloads:
            for s in exp.systems:
                for seed in exp.seeds:
                    add(pipe, "grid", w.name, s.name, s.policy, s.predictor, seed, s.params)
        if exp.ablation:
            for wname in exp.ablation.workloads or [w.name for w in exp.workloads]:
                for p in exp.ablation.predictors:
                    ab = exp.ablation
                    add(pipe, "ablation", wname, f"{ab.policy}+{predictor_label(p)}", ab.policy, p, exp.seeds[0])
        if exp.sweep:
            wname = exp.sweep.workload or exp.workloads[0].name
            for a, b in sweep_points(exp):
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
    tasks.sort(key=lambda t: -t.requests)
    return tasks


def sweep_points(exp: Experiment) -> list[tuple[float, float]]:
    """The (alpha, beta) pairs of the sweep, in order."""
    if exp.sweep is None:
        return []
    return [(a, b) for a in exp.sweep.alpha for b in exp.sweep.beta]


def swept_pipeline(pipe, objective: dict[str, float] | None, where: str = ""):
    """`pipe` with a sweep's objective weights, validated as a whole pipeline (`model_copy(update=...)` would skip
    validation and let e.g. a negative alpha through): a SpecError names objective.alpha / beta."""
    if not objective:
        return pipe
    from pipetune.spec import parse_pipeline

    data = pipe.model_dump(by_alias=True)
    data["objective"] = {**data["objective"], **objective}
    return parse_pipeline(data, base_dir=pipe.base_dir, where=where or f"with the sweep's objective {objective}")
