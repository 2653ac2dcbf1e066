"""One serving session: start the live backend on a plan, then let the adapter re-configure it on a loop.

Shared by `pipetune serve` and the live `pipetune demo`. The planner is told what the cluster can hold: Ray's
CPUs less the ingress, less a share kept free so that a make-before-break switch (old and new generation held
together) can always be placed (`switch_reserve`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.serving.backend import RayServeBackend, ServingError

SWITCH_RESERVE = 0.25  # share of the replica CPUs the planner leaves free for make-before-break switches


def planning_pipeline(pipeline: Any, replica_cpus: float, switch_reserve: float = SWITCH_RESERVE) -> Any:
    """The pipeline with `caps.max_total_cores` set to what a plan may use on this cluster."""
    if not 0 <= switch_reserve < 1:
        raise PipetuneError(f"switch_reserve={switch_reserve} must be in [0, 1)")
    budget = math.floor(replica_cpus * (1 - switch_reserve))
    if budget < len(pipeline.stage_names):
        raise ServingError(
            f"the cluster leaves {budget} CPUs for replicas after the ingress and the switch reserve, fewer than "
            f"the {len(pipeline.stage_names)} stages need (one each): give Ray more CPUs (--num-cpus declares "
            "logical CPUs on a local Ray)"
        )
    cap = pipeline.caps.max_total_cores
    caps = pipeline.caps.model_copy(update={"max_total_cores": float(min(budget, cap) if cap else budget)})
    return pipeline.model_copy(update={"caps": caps})


def configs_from_plan_file(path: Path, pipeline: Any) -> dict[str, StageConfig]:
    """Read `pipetune plan --json` output (a plan, or an infeasible answer's fallback)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PipetuneError(f"--plan {path}: cannot read a plan ({e}); write one with `pipetune plan --json`") from None
    if isinstance(data, dict) and data.get("feasible") is False and "fallback" in data:
        data = data["fallback"]
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        raise PipetuneError(f"--plan {path}: no `stages` mapping; write one with `pipetune plan --json`")
    out = {}
    for s in pipeline.stage_names:
        c = stages.get(s)
        if not isinstance(c, dict):  # absent, or not a mapping
            raise PipetuneError(
                f"--plan {path}: stages.{s} needs variant, batch, cores and replicas (from `pipetune plan --json`)"
            )
        known = [v.name for v in pipeline.stage(s).variants]
        variant = c.get("variant")
        if variant not in known:
            raise PipetuneError(f"--plan {path}: stages.{s}.variant is {variant!r}; it must be one of {known}")
        knobs = {k: _whole_number(c.get(k), f"--plan {path}: stages.{s}.{k}") for k in ("batch", "cores", "replicas")}
        out[s] = StageConfig(str(variant), **knobs)
    return out


def _whole_number(x: Any, where: str) -> int:
    """A knob read back from JSON: a whole number >= 1 (2.0 is 2; 2.7, true or null are refused, never rounded)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x != int(x) or x < 1:
        raise PipetuneError(f"{where} is {x!r}; it must be a whole number >= 1 (as `pipetune plan --json` writes)")
    return int(x)


def initial_configs(
    planning: Any, profiles: Any, rps: float, policy: str = "ipa", runtime: Any = None
) -> dict[str, StageConfig]:
    """The configuration to start with: the policy's plan at `rps` (its fallback when infeasible), counting the
    runtime's CPU on the host when a RuntimeProfile is given."""
    from pipetune.optimizer import plan_pipeline
    from pipetune.optimizer.plan import Infeasible

    result = plan_pipeline(planning, rps, policy=policy, profiles=profiles, runtime=runtime)
    plan = result.fallback if isinstance(result, Infeasible) else result
    return dict(plan.configs)


def run_adapter(
    backend: RayServeBackend,
    planning: Any,
    profiles: Any,
    *,
    policy: str = "ipa",
    predictor: str = "default",
    interval_s: float = 10.0,
    until_s: float = math.inf,
    log: Path | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> list:
    """The adapter loop on the live backend until `until_s` (wall seconds since start) or Ctrl-C."""
    from pipetune.adapter import Adapter

    adapter = Adapter(
        backend, planning, policy=policy, predictor=predictor, interval_s=interval_s, profiles=profiles, log=log,
        runtime=backend.runtime,
    )  # fmt: skip

    def step(d: Any) -> None:
        with contextlib.suppress(Exception):  # metrics are best effort; the decision stands
            backend.record_decision(d.predicted_rps, d.solve_time_s)
        if on_step:
            on_step(d)

    try:
        adapter.run(until_s, on_step=step)
    finally:
        adapter.close()
    return adapter.decisions
