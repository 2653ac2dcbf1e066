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


@dataclass(frozen=True, order=True)
class SplitConfig(StageConfig):
    """A stage whose load is split over several variants (a plan's `mix`, caps.mix_variants > 1): `parts` holds
    each part's StageConfig and its share of the stage's load, the larger share first. The inherited fields are
    the first part's, so code that knows one variant per stage sees the main part; `total_cores` counts every
    part (each holds its cores). Backends that deploy splits route a stage's items by share (`ShareRouter`);
    build one with `SplitConfig.of`, which answers a plain StageConfig for a single part."""

    parts: tuple[tuple[StageConfig, float], ...] = ()

    @classmethod
    def of(cls, parts) -> StageConfig:
        """The configuration of a stage served by `parts` [(StageConfig, share), ...]: shares in (0, 1] adding
        up to 1, one part per variant. One part: that part's StageConfig (a split of one is no split)."""
        got = [(c, float(f)) for c, f in parts]
        if not got or any(not isinstance(c, StageConfig) or isinstance(c, SplitConfig) for c, _ in got):
            raise ValueError("a split stage's parts must be one or more plain StageConfigs with their shares")
        if any(not (0.0 < f <= 1.0) for _, f in got) or abs(sum(f for _, f in got) - 1.0) > 1e-9:
            raise ValueError(
                f"shares {[f for _, f in got]}: each part's share of the stage's load must be in (0, 1] and the "
                "shares must add up to 1"
            )
        if len({c.variant for c, _ in got}) != len(got):
            raise ValueError(f"variants {[c.variant for c, _ in got]}: a split stage has one part per variant")
        if len(got) == 1:
            return got[0][0]
        got.sort(key=lambda p: (-p[1], p[0]))
        main = got[0][0]
        return cls(main.variant, main.batch, main.cores, main.replicas, parts=tuple(got))

    @property
    def total_cores(self) -> int:
        return sum(c.total_cores for c, _ in self.parts)

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "parts": [{**c.to_dict(), "share": f} for c, f in self.parts],
        }


def parts_of(config: StageConfig) -> tuple[tuple[StageConfig, float], ...]:
    """The parts a stage's configuration serves with and their shares: a split's, or the config alone at 1."""
    return config.parts if isinstance(config, SplitConfig) else ((config, 1.0),)


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


class ShareRouter:
    """Routes a stage's items over the parts of a split stage (a plan's `mix`: [(StageConfig, share), ...]) in
    proportion to their shares, deterministically: smooth weighted round robin. Each pick adds every part's share
    to its credit, takes the part with the most credit (the first of equal ones) and takes 1 off it, so after n
    picks each part has had within one item of n * share (no random streak can overload a part sized for its
    share), and the parts interleave rather than come in runs. For the runtime's ingress and the simulator alike.
    """

    def __init__(self, shares: list[float]) -> None:
        if not shares or any(not (0.0 <= f <= 1.0) for f in shares) or abs(sum(shares) - 1.0) > 1e-9:
            raise ValueError(
                f"shares={shares}: give each part's share of the stage's load, each in [0, 1], adding up to 1 "
                "(a plan's mix lists them)"
            )
        self.shares = [float(f) for f in shares]
        self.credit = [0.0] * len(shares)

    def pick(self) -> int:
        """The index of the part the next item goes to."""
        credit = self.credit
        for i, f in enumerate(self.shares):
            credit[i] += f
        best = max(range(len(credit)), key=credit.__getitem__)
        credit[best] -= 1.0
        return best


def route_share(mix: list[tuple[StageConfig, float]]) -> ShareRouter:
    """The router of one split stage of a plan (`Plan.mix[stage]`); `router.pick()` is the index into `mix` of
    the part (its StageConfig) the next item goes to."""
    return ShareRouter([f for _, f in mix])
