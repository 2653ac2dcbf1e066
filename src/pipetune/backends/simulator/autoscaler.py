"""Ray Serve's own autoscaler as a simulated baseline: what a Ray user gets out of the box.

Every stage keeps the variant, batch size and cores it starts with; only its replica count moves, decided
reactively from the ongoing requests the stage holds (queued or in service), by the rule of Ray Serve's default
policy (`ray.serve.autoscaling_policy.replica_queue_length_autoscaling_policy`, Ray 2.60; its parameters are
`autoscaling_config`'s, documented at docs.ray.io/en/latest/serve/advanced-guides/advanced-autoscaling.html):

* **Metrics.** Each replica records its ongoing requests every min(0.2 x look_back_period_s, metrics_interval_s)
  seconds and pushes them to the controller every metrics_interval_s; the controller uses the mean over the
  last look_back_period_s of what it has received (the stage's total, as in Ray where handle-queued requests
  count too).
* **Desired replicas** = total ongoing / target_ongoing_requests, smoothed: with r running replicas and a
  desire d, the decision is ceil(r + f (d - r)), f = upscale_smoothing_factor when d > r, otherwise
  downscale_smoothing_factor (each defaults to smoothing_factor, 1); a downscale smoothed to no change removes
  one replica anyway.
* **Delays.** A change is made only once the same direction has been wanted for upscale_delay_s (up) or
  downscale_delay_s (down) without interruption; any tick wanting the other direction or no change restarts
  the wait.
* **Bounds.** The decision is clipped to [min_replicas, max_replicas].

The controller ticks every TICK_S of simulated time (Ray's control loop runs every 0.1 s; its delays are
measured on the clock, so a coarser tick changes a delay by at most one tick). Ray Serve admits every request
(no admission control), which is what the simulator does for it; a request that waits longer than the drop
limit is dropped, as for every other system.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import IO, Any

from pipetune import jsonio
from pipetune.backends.simulator.engine import Simulator
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError

POLICY = "ray-autoscale"
TICK_S = 0.5
RECORD_FACTOR = 0.2  # Ray's RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR: record every 0.2 look-back


@dataclass(frozen=True)
class AutoscalingConfig:
    """Ray Serve's `autoscaling_config` fields the default policy reads (Ray's defaults but max_replicas, whose
    default of 1 would disable scaling: here None means the pipeline's caps.max_replicas)."""

    target_ongoing_requests: float = 2.0
    min_replicas: int = 1
    max_replicas: int | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    look_back_period_s: float = 30.0
    metrics_interval_s: float = 10.0
    smoothing_factor: float = 1.0
    upscale_smoothing_factor: float | None = None
    downscale_smoothing_factor: float | None = None

    def __post_init__(self) -> None:
        def positive(name: str, v: Any) -> None:
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                raise PipetuneError(f"autoscaling {name}={v!r} must be a finite number > 0")

        for name in ("target_ongoing_requests", "look_back_period_s", "metrics_interval_s", "smoothing_factor"):
            positive(name, getattr(self, name))
        for name in ("upscale_smoothing_factor", "downscale_smoothing_factor"):
            if getattr(self, name) is not None:
                positive(name, getattr(self, name))
        for name in ("upscale_delay_s", "downscale_delay_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PipetuneError(f"autoscaling {name}={v!r} must be a finite number of seconds >= 0")
        lo, hi = self.min_replicas, self.max_replicas
        if not (isinstance(lo, int) and lo >= 1):
            raise PipetuneError(
                f"autoscaling min_replicas={lo!r} must be a whole number >= 1 (the simulator fails a request that "
                "reaches a stage with no replica; Ray's scale-to-zero is not modelled)"
            )
        if hi is not None and not (isinstance(hi, int) and hi >= lo):
            raise PipetuneError(f"autoscaling max_replicas={hi!r} must be a whole number >= min_replicas ({lo})")

    @property
    def up_factor(self) -> float:
        return self.upscale_smoothing_factor or self.smoothing_factor

    @property
    def down_factor(self) -> float:
        return self.downscale_smoothing_factor or self.smoothing_factor

    @property
    def record_interval_s(self) -> float:
        return min(RECORD_FACTOR * self.look_back_period_s, self.metrics_interval_s)


def decide(cfg: AutoscalingConfig, total_ongoing: float, running: int) -> int:
    """Ray's desired replica count before delays and bounds: total / target, smoothed against `running`."""
    if running == 0:
        return max(1, math.ceil(cfg.up_factor)) if total_ongoing > 0 else 0
    desired = total_ongoing / cfg.target_ongoing_requests
    factor = cfg.up_factor if desired > running else cfg.down_factor
    scaled = math.ceil(running + factor * (desired - running) - 1e-9)
    if math.ceil(desired - 1e-9) < running and scaled == running:  # a smoothed downscale stuck at no change
        scaled -= 1
    return scaled


class _StageState:
    __slots__ = ("samples", "pushed", "since", "direction")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()  # (time, ongoing) recorded at the replicas
        self.pushed: list[int] = []  # what the controller last received (the look-back window at the push)
        self.since: float | None = None  # when the current direction was first wanted
        self.direction = 0


class RayAutoscaler:
    """Drives a `Simulator` as Ray Serve's autoscaler would: one fixed (variant, batch, cores) per stage, the
    replica count decided from observed ongoing requests. `run(until_s)` ticks every TICK_S."""

    def __init__(self, sim: Simulator, pipeline, config: AutoscalingConfig, log: IO[str] | None = None):
        self.sim = sim
        self.cfg = config
        self.max_replicas = config.max_replicas or int(pipeline.caps.max_replicas)
        if self.max_replicas < config.min_replicas:
            raise PipetuneError(
                f"autoscaling min_replicas={config.min_replicas} exceeds max_replicas={self.max_replicas} "
                "(caps.max_replicas when not given)"
            )
        self.stages = {n: _StageState() for n in sim.names}
        self.target: dict[str, StageConfig] = dict(sim.in_effect())  # the run starts warm: all of it serves
        self.actions: list[dict] = []  # one entry per replica-count change
        self.ticks = 0
        self._log = log
        self._next_record = 0.0
        self._next_push = config.metrics_interval_s

    def step(self) -> None:
        """One control-loop tick at the simulator's current time."""
        cfg, sim = self.cfg, self.sim
        now = sim.now()
        self.ticks += 1
        if now + 1e-9 >= self._next_record:
            for n, v in sim.ongoing().items():
                self.stages[n].samples.append((now, v))
            while self._next_record <= now + 1e-9:  # an interval shorter than a tick records once a tick
                self._next_record += cfg.record_interval_s
        if now + 1e-9 >= self._next_push:
            for st in self.stages.values():
                while st.samples and st.samples[0][0] < now - cfg.look_back_period_s - 1e-9:
                    st.samples.popleft()
                st.pushed = [v for _, v in st.samples]
            while self._next_push <= now + 1e-9:
                self._next_push += cfg.metrics_interval_s
        ready = sim.replicas_ready()
        change: dict[str, StageConfig] = {}
        for n, st in self.stages.items():
            if not st.pushed:
                continue
            total = sum(st.pushed) / len(st.pushed)
            cur = self.target[n]
            want = decide(cfg, total, ready[n])
            direction = (want > cur.replicas) - (want < cur.replicas)
            if direction != st.direction:
                st.direction, st.since = direction, now
            if direction == 0:
                continue
            delay = cfg.upscale_delay_s if direction > 0 else cfg.downscale_delay_s
            assert st.since is not None  # set when the direction was first wanted
            if now - st.since + 1e-6 < delay:
                continue
            new = min(max(want, cfg.min_replicas), self.max_replicas)
            st.direction, st.since = 0, None
            if new != cur.replicas:
                change[n] = StageConfig(cur.variant, cur.batch, cur.cores, new)
                action = {"t": now, "stage": n, "from": cur.replicas, "to": new, "ongoing": total}
                self.actions.append(action)
                if self._log is not None:
                    self._log.write(jsonio.dumps(action) + "\n")
        if change:
            sim.apply(change)
            self.target.update(change)

    def run(self, until_s: float, on_tick: Callable[[float], None] | None = None) -> None:
        t = self.sim.now()
        while t < until_s - 1e-9:
            self.sim.wait_until(t)
            self.step()
            if on_tick is not None:
                on_tick(t)
            t += TICK_S
        self.sim.wait_until(until_s)

    def settings(self) -> dict:
        return {**asdict(self.cfg), "max_replicas": self.max_replicas}
