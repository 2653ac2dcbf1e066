"""The interface every backend offers the adapter: the discrete-event simulator and the live runtime alike.

A backend runs one pipeline. The adapter (and nothing else) drives it through these calls:

* `now()`            — the backend's clock in seconds since the run started (virtual in the simulator, wall
                       time live);
* `wait_until(t)`    — let time pass until `t` (the simulator processes events, a live backend sleeps);
* `observe()`        — what happened so far: arrivals per whole second, and since the previous observation the
                       completions, drops, failures and end-to-end latencies, plus the configuration in effect;
* `apply(configs)`   — ask for a new configuration (one `StageConfig` per stage to change). It takes effect as
                       the backend can: replicas start and load, variant switches are make-before-break,
                       scale-downs drain. It answers per stage with a `StageStatus`: PENDING (accepted, not
                       serving yet), APPLIED (serving as asked) or FAILED (refused, with the reason; the previous
                       configuration keeps serving);
* `stage_status()`   — the same answer polled later: where each stage's last request stands now;
* `in_effect()`      — what actually serves right now (ready replicas of the serving generation);
* `replicas_ready()` — every ready replica per stage, both generations during a variant switch;
* `close()`          — stop accepting arrivals and let in-flight work finish.

A live backend cannot promise that a request takes effect, so the adapter compares what it asked for with
`stage_status()` and re-applies what failed. The adapter never asks which backend it drives; anything a policy
needs must come through here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from pipetune.configs import ApplyState, StageConfig, StageStatus


@dataclass
class Observation:
    """One look at a running pipeline. Counts and latencies cover (`since`, `now`]; arrivals cover [0, now)."""

    now: float
    since: float
    arrivals_per_s: np.ndarray  # requests that arrived in each whole second [0, floor(now))
    completed: int
    dropped: int
    failed: int
    late: int  # completed, but after the SLA
    latencies_s: np.ndarray  # end-to-end latency of each request completed in the window
    in_effect: dict[str, StageConfig]  # per stage: the serving variant/batch/cores and ready replicas
    replicas_ready: dict[str, int]  # every ready replica per stage (old and new generation during a switch)
    cores_held: float  # every core held now: loading, serving and draining replicas
    extra: dict = field(default_factory=dict)

    @property
    def sla_violations(self) -> int:
        return self.dropped + self.failed + self.late


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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop accepting arrivals and let in-flight work finish (or be dropped)."""


def status_from_effect(target: StageConfig, serving: StageConfig, failed_reason: str | None = None) -> StageStatus:
    """The status of a request for `target` given what serves now: FAILED when refused, APPLIED once the
    serving configuration is exactly the target (all its replicas ready), PENDING until then."""
    if failed_reason:
        return StageStatus(ApplyState.FAILED, target, failed_reason)
    if serving == target:
        return StageStatus(ApplyState.APPLIED, target)
    return StageStatus(ApplyState.PENDING, target)
