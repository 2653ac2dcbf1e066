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

from pipetune.configs import ApplyState, StageConfig
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
    return {s: _stage_config(stages.get(s), pipeline, s, f"--plan {path}: stages.{s}") for s in pipeline.stage_names}


def _stage_config(c: Any, pipeline: Any, stage: str, where: str) -> StageConfig:
    """One stage's configuration read back from JSON (a plan's or a decision's), checked against the pipeline."""
    if not isinstance(c, dict):  # absent, or not a mapping
        raise PipetuneError(f"{where} needs variant, batch, cores and replicas (as `pipetune plan --json` writes)")
    known = [v.name for v in pipeline.stage(stage).variants]
    variant = c.get("variant")
    if variant not in known:
        raise PipetuneError(f"{where}.variant is {variant!r}; it must be one of {known}")
    knobs = {k: _whole_number(c.get(k), f"{where}.{k}") for k in ("batch", "cores", "replicas")}
    return StageConfig(str(variant), **knobs)


MAX_LOG_BYTES = 1 << 30  # a decision log read back for --resume (a year of 10 s decisions is ~3 GB: refuse, say so)


def read_decision_log(path: Path) -> list[dict]:
    """The decisions of an adapter's log (`--log`: one JSON object per line); [] when the file does not exist
    yet. A last line cut short (the adapter was killed while writing it) is skipped; any other line that is not
    a JSON object is an error naming it."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        if p.is_dir():
            raise PipetuneError(f"--resume {path} is a folder; give the decision log written by --log")
        if p.stat().st_size > MAX_LOG_BYTES:
            raise PipetuneError(
                f"--resume {path} is over {MAX_LOG_BYTES >> 30} GiB; keep its last lines (tail -n 100) and resume "
                "from those"
            )
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PipetuneError(f"--resume {path}: cannot read a decision log ({e}); give the file --log wrote") from None
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):  # no newline after it: cut short by a kill
                break
            d = None
        if not isinstance(d, dict) or not isinstance(d.get("configs"), dict):
            raise PipetuneError(
                f"--resume {path}: line {i} is not a decision (a JSON object with `configs`); give the file --log wrote"
            )
        out.append(d)
    return out


def resume_configs(decisions: list[dict], pipeline: Any, path: Path) -> dict[str, StageConfig] | None:
    """What the adapter last asked for, per stage: the latest decision's configuration of the stage that the
    backend did not refuse (a request answered FAILED is skipped, back to the one before); None without any
    decision. Checked against the pipeline (a log of another pipeline is refused)."""
    if not decisions:
        return None
    out: dict[str, StageConfig] = {}
    for s in pipeline.stage_names:
        for n in range(len(decisions) - 1, -1, -1):
            d = decisions[n]
            state = (d.get("apply_status") or {}).get(s, {})
            if isinstance(state, dict) and state.get("state") == ApplyState.FAILED.value:
                continue
            out[s] = _stage_config(d["configs"].get(s), pipeline, s, f"--resume {path}: decision {n + 1} configs.{s}")
            break
        else:
            raise PipetuneError(f"--resume {path}: every decision's request for stage {s!r} failed; nothing to resume")
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


def _open_to_append(log: Path) -> Any:
    """The decision log opened to add lines; a last line cut short by a kill is cut off first (`read_decision_log`
    skipped it), so that the next decision starts a line of its own."""
    try:
        with open(log, "a+b") as f:
            f.seek(0, 2)
            size = f.tell()
            if size:
                f.seek(max(0, size - (1 << 20)))
                tail = f.read()
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
        return open(log, "a", encoding="utf-8")  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise PipetuneError(f"--resume {log}: cannot append to it ({e}); give a writable file") from None


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
    append: bool = False,
    on_step: Callable[[Any], None] | None = None,
) -> list:
    """The adapter loop on the live backend until `until_s` (wall seconds since start) or Ctrl-C. `append`: add
    the decisions to `log` (a resumed adapter's) rather than starting it afresh. On a backend that attached to
    a pipeline already served, the adapter starts from what the backend is converging to (a switch the previous
    adapter asked for and Ray is still starting is not asked for again)."""
    from pipetune.adapter import Adapter

    stream = _open_to_append(log) if log is not None and append else None
    adapter = Adapter(
        backend, planning, policy=policy, predictor=predictor, interval_s=interval_s, profiles=profiles,
        log=stream if stream is not None else log, runtime=backend.runtime,
        target={s: st.target for s, st in backend.stage_status().items()} if backend.attached else None,
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
        if stream is not None:
            stream.close()
    return adapter.decisions
