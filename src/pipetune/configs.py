"""Shared value types below the optimizer and the backends: what one stage's configuration is.

The optimizer returns `StageConfig`s in a `Plan`; backends take them in `apply()` and report them from
`in_effect()`; the adapter compares them. Keeping the type here lets those layers share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, order=True)
class StageConfig:
    """The knobs of one stage: which variant, what batch size, how many replicas with how many cores each."""

    variant: str
    batch: int
    cores: int
    replicas: int

    @property
    def total_cores(self) -> int:
        return self.cores * self.replicas

    def to_dict(self) -> dict:
        return {"variant": self.variant, "batch": self.batch, "cores": self.cores, "replicas": self.replicas}


class ApplyState(StrEnum):
    """Where a stage's requested configuration stands (after Ray Serve's UPDATING / HEALTHY / DEPLOY_FAILED)."""

    PENDING = "pending"  # accepted; replicas are starting or loading, or the old generation still drains
    APPLIED = "applied"  # serving exactly as asked
    FAILED = "failed"  # could not take effect (`reason` says why); the previous configuration keeps serving


@dataclass(frozen=True)
class StageStatus:
    """One stage's answer to `Backend.apply()` / `Backend.status()`."""

    state: ApplyState
    target: StageConfig
    reason: str = ""

    def to_dict(self) -> dict:
        return {"state": self.state.value, "target": self.target.to_dict(), "reason": self.reason}
