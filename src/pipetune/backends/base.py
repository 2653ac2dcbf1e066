"""The interface every backend offers the adapter: the discrete-event simulator and the live runtime alike.

A backend runs one pipeline. The adapter (and nothing else) drives it through these calls:

* `now()`            — the backend's clock in seconds since the run started (virtual in the simulator, wall
                       time live);
* `wait_until(t)`    — let time pass until `t` (the simulator processes events, a live backend sleeps);
* `observe()`        — what happened so far: arrivals per whole second, and since the previous observation the
                       requests completed, refused (503, admission), dropped (504, deadline) and failed (500, a
                       model error), the end-to-end latencies, plus the configuration in effect;
* `apply(configs)`   — ask for a new configuration (one `StageConfig` per stage to change). It takes effect as
                       the backend can: replicas start and load, variant switches are make-before-break,
                       scale-downs drain. It answers per stage with a `StageStatus`: PENDING (accepted, not
                       serving yet), APPLIED (serving as asked) or FAILED (refused, with the reason; the previous
                       configuration keeps serving);
* `stage_status()`   — the same answer polled later: where each stage's last request stands now;
* `in_effect()`      — what actually serves right now (ready replicas of the serving generation), every stage;
* `replicas_ready()` — every ready replica per stage, both generations during a variant switch;
* `cores_held()`     — every core held now (replicas loading, serving and draining; the ingress's where the
                       backend has one): what the run costs;
* `record_decision()`— show a decision's prediction and time on the backend's telemetry (optional);
* `close()`          — stop accepting arrivals, let in-flight work finish, release what the backend started.

The contract both backends keep (tests/test_backend_contract.py runs it against each; docs/architecture.md lists
the clauses): a configuration needs a known variant and batch, cores and replicas >= 1 (`config_problem`: a
stage that serves nothing is not a configuration; an apply that asks for one is FAILED with that reason and the
previous configuration keeps serving); `in_effect()` names every stage, with the replicas of its serving
generation that are ready (0 while none is: never a placeholder variant, never a missing stage).

A live backend cannot promise that a request takes effect, so the adapter compares what it asked for with
`stage_status()` and re-applies what failed. The adapter never asks which backend it drives; anything a policy
needs must come through here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.configs import ApplyState, SplitConfig, StageConfig, StageStatus


@dataclass
class Observation:
    """One look at a running pipeline. Counts and latencies cover (`since`, `now`]; arrivals cover [0, now).

    Every request that arrived is, once answered, exactly one of completed, refused, dropped or failed."""

    now: float
    since: float
    arrivals_per_s: np.ndarray  # requests that arrived in each whole second [0, floor(now))
    completed: int  # answered with a result (200), late ones included
    refused: int  # turned away at the ingress by admission control (503 + Retry-After), never started
    dropped: int  # admitted, then given up at the deadline (504)
    failed: int  # admitted, then a model or the runtime raised (500)
    late: int  # completed, but after the SLA
    latencies_s: np.ndarray  # end-to-end latency of each request completed in the window
    inflight: int  # admitted (or arrived, without admission control) and not answered yet, now
    in_effect: dict[str, StageConfig]  # every stage: the serving variant/batch/cores and its ready replicas
    replicas_ready: dict[str, int]  # every ready replica per stage (old and new generation during a switch)
    cores_held: float  # every core held now (Backend.cores_held)

    @property
    def answered(self) -> int:
        """Requests answered in the window, whatever the outcome."""
        return self.completed + self.refused + self.dropped + self.failed

    @property
    def sla_violations(self) -> int:
        """Requests that did not get a result within the SLA: refused, dropped, failed or late."""
        return self.refused + self.dropped + self.failed + self.late


class Backend(ABC):
    """A running pipeline the adapter can observe and re-configure."""

    @abstractmethod
    def now(self) -> float:
        """Seconds since the run started."""

    @abstractmethod
    def wait_until(self, t: float) -> None:
        """Let the pipeline run until time `t` (no-op when `t` is not in the future)."""

    @abstractmethod
    def observe(self) -> Observation:
        """Everything observed since the previous call (arrivals: the whole history)."""

    @abstractmethod
    def apply(self, configs: dict[str, StageConfig]) -> dict[str, StageStatus]:
        """Request a configuration for the stages named; it takes effect with the backend's real delays.

        Returns one `StageStatus` per stage named: PENDING, APPLIED, or FAILED with the reason (a failed stage
        keeps serving its previous configuration)."""

    @abstractmethod
    def stage_status(self) -> dict[str, StageStatus]:
        """Where each stage's last requested configuration stands now (stages never re-configured: APPLIED)."""

    @abstractmethod
    def in_effect(self) -> dict[str, StageConfig]:
        """The configuration actually serving now (replicas = ready replicas of the serving generation)."""

    @abstractmethod
    def replicas_ready(self) -> dict[str, int]:
        """Ready replicas per stage, counting both generations during a variant switch."""

    @abstractmethod
    def cores_held(self) -> float:
        """Every core held now: replicas loading, serving and draining, of every generation, plus the cores
        the backend reserves for its ingress where it has one."""

    def record_decision(self, predicted_rps: float, decision_s: float) -> None:  # noqa: B027 - optional hook
        """Show an adapter decision (the load it predicted, the seconds it took) on the backend's telemetry; a
        backend without telemetry (the simulator) ignores it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop accepting arrivals, let in-flight work finish (or be dropped) and release what the backend
        started (threads, applications)."""


def config_problem(pipeline: Any, stage: str, c: Any) -> str | None:
    """Why `c` is not a configuration of `stage`, or None. The one rule every backend applies before anything
    backend-specific (budget, placement): a StageConfig of a known variant with batch, cores and replicas >= 1.
    `replicas` = 0 is refused: a stage that serves nothing would fail every request through it."""
    if not isinstance(c, StageConfig):
        return f"the configuration must be a StageConfig, got {type(c).__name__}"
    if isinstance(c, SplitConfig):
        k = pipeline.caps.mix_variants
        if len(c.parts) > k:
            return (
                f"split over {len(c.parts)} variants, caps.mix_variants allows {k}; raise caps.mix_variants or "
                "give fewer parts"
            )
        for part, share in c.parts:
            why = config_problem(pipeline, stage, part)
            if why:
                return f"part {part.variant!r} (share {share:g}): {why}"
        return None
    known = [v.name for v in pipeline.stage(stage).variants]
    if c.variant not in known:
        return f"unknown variant {c.variant!r}; known variants: {known}"
    if c.batch < 1 or c.cores < 1 or c.replicas < 1:
        return (
            f"batch, cores and replicas must be >= 1 (got batch={c.batch}, cores={c.cores}, "
            f"replicas={c.replicas}); a stage cannot serve with none: keep at least one replica"
        )
    return None


def status_from_effect(target: StageConfig, serving: StageConfig, failed_reason: str | None = None) -> StageStatus:
    """The status of a request for `target` given what serves now: FAILED when refused, APPLIED once the
    serving configuration is exactly the target (all its replicas ready), PENDING until then."""
    if failed_reason:
        return StageStatus(ApplyState.FAILED, target, failed_reason)
    if serving == target:
        return StageStatus(ApplyState.APPLIED, target)
    return StageStatus(ApplyState.PENDING, target)
