"""The interface every backend offers the adapter: the discrete-event simulator here, the live runtime elsewhere.

A backend runs one pipeline. The adapter (and nothing else) drives it through five calls:

* `now()`            — the backend's clock in seconds since the run started (virtual in the simulator, wall
                       time live);
* `wait_until(t)`    — let time pass until `t` (the simulator processes events, a live backend sleeps);
* `observe()`        — what happened so far: arrivals per whole second, and since the previous observation the
                       completions, drops, failures and end-to-end latencies, plus the configuration in effect;
* `apply(configs)`   — ask for a new configuration (one `StageConfig` per stage). It takes effect as the
                       backend can: replicas start and load, variant switches are make-before-break, scale-downs
                       drain. `in_effect()` says what actually serves right now;
* `in_effect()` / `replicas_ready()`.

The adapter never asks which backend it drives; anything a policy needs must come through here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from pipetune.configs import StageConfig


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
    def apply(self, configs: dict[str, StageConfig]) -> None:
        """Request a configuration; it takes effect with the backend's real delays."""

    @abstractmethod
    def in_effect(self) -> dict[str, StageConfig]:
        """The configuration actually serving now (replicas = ready replicas of the serving generation)."""

    @abstractmethod
    def replicas_ready(self) -> dict[str, int]:
        """Ready replicas per stage, counting both generations during a variant switch."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop accepting arrivals and let in-flight work finish (or be dropped)."""
