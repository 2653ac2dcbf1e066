"""Admission control: how many requests a pipeline admits in flight before it refuses (503) at its ingress.

One rule for both backends: the live ingress (`serving/app.py`) and the simulator (`backends/simulator/`)
refuse by the same numbers, so the twin refuses as the live path does.

* The profile's limit (`admission_limit`): by Little's law, at the configuration's capacity (requests/s, from
  the profiles of what serves: `profile_admission`) a request that finds more than capacity x SLA ahead of it
  would finish after the SLA.
* The measured limit (`measured_admission`): ADMIT_SHARE x the completions/s measured over the last
  RATE_WINDOW_S x SLA. It binds only while the pipeline is behind (its oldest admitted request has been in
  flight BEHIND_SHARE of the SLA or longer, `admission_now`), since a profile measured one model at a time
  overstates a host whose cores everything shares, while a pipeline keeping up completes at its arrival rate,
  not its capacity.
* Never below the floor (`service_floor`): what the replicas hold in service at once.

`AdmissionWindow` keeps the little state the measured limit needs (recent completion times, when traffic
resumed), for a caller that keeps its own in-flight table.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from pipetune.configs import StageConfig, parts_of
from pipetune.errors import PipetuneError

RATE_WINDOW_S = 3.0  # completions counted for the measured throughput
ADMIT_SHARE = 0.8  # of the measured throughput x SLA: the p99 sits above the mean wait
MIN_RATE_WINDOW_S = 1.0  # traffic seen before a measured throughput counts (before it: the profile's limit)
# The measured limit binds only while the oldest admitted request has been in flight this share of the SLA: a
# pipeline keeping up has young requests in flight, and its completion rate is its arrival rate, not its
# capacity (in a ramp that rate lags the arrivals, and the measured limit refused requests that would have
# finished in time).
BEHIND_SHARE = 0.5
UNLIMITED_INFLIGHT = 4096  # "admit everything" (no profile to bound it, or Ray's own autoscaling decides)
MAX_COMPLETIONS_KEPT = 200_000  # completion times kept for the measured rate (bounded whatever the load)


def admission_limit(capacity_rps: float, sla_s: float) -> int:
    """In-flight requests to admit: by Little's law, at the configuration's capacity a request that finds
    more than capacity x SLA ahead of it would finish after the SLA."""
    if not capacity_rps > 0 or not math.isfinite(capacity_rps):
        return 0
    return max(1, math.ceil(capacity_rps * sla_s))


def measured_admission(completions: int, traffic_s: float, sla_s: float) -> int | None:
    """Little's law at the throughput measured since traffic resumed (at most the last RATE_WINDOW_S):
    ADMIT_SHARE x completions/s x SLA. None before MIN_RATE_WINDOW_S of traffic: a cold or idle ingress has
    completed nothing yet, and dividing by the whole window refused the first bursts of a light load."""
    if traffic_s < MIN_RATE_WINDOW_S:
        return None
    return math.ceil(ADMIT_SHARE * completions / min(RATE_WINDOW_S, traffic_s) * sla_s)


def admission_now(max_inflight: int, floor: int, measured: int | None, oldest_s: float, sla_s: float) -> int:
    """In-flight requests to admit: the profile's limit, and, while the pipeline is behind (its oldest admitted
    request in flight for BEHIND_SHARE of the SLA or longer), no more than the measured limit, never below
    `floor` (what the replicas hold in service at once)."""
    if measured is None or oldest_s < BEHIND_SHARE * sla_s:
        return max_inflight
    return min(max_inflight, max(floor, measured))


def service_floor(configs: Mapping[str, StageConfig]) -> int:
    """What the replicas of `configs` hold in service at once (replicas x batch, summed): admission never
    refuses below it."""
    return sum(c.replicas * c.batch for c in configs.values())


def profile_admission(pipeline: Any, profiles: Any, configs: Mapping[str, StageConfig]) -> int:
    """The profile's limit for the configuration `configs` serves: capacity x SLA, the capacity the least of
    replicas x profiled throughput / load factor over the stages. A stage with nothing configured admits
    nothing (0); without profiles, or without a profiled cell for any stage, everything (UNLIMITED_INFLIGHT)."""
    if any(s not in configs for s in pipeline.stage_names):
        return 0
    if profiles is None:
        return UNLIMITED_INFLIGHT
    factors = pipeline.load_factors()
    cap = math.inf
    for s, c in configs.items():
        for part, share in parts_of(c):  # a split stage holds what its every part holds at its share
            try:
                thr = profiles.get(s, part.variant).row(part.batch, part.cores).throughput_rps
            except (KeyError, PipetuneError):
                continue  # no profiled cell: this part does not bound admission
            if factors.get(s, 0) > 0:
                cap = min(cap, part.replicas * thr / (factors[s] * share))
    return UNLIMITED_INFLIGHT if math.isinf(cap) else admission_limit(cap, pipeline.sla.seconds)


class AdmissionWindow:
    """The measured part of admission: completion times over the last RATE_WINDOW_S and when traffic resumed.

    The caller counts its own in-flight requests and their admission times; `limit()` turns them, with the
    profile's limit and the floor, into the number to admit now (`admission_now`). Times are seconds on any
    clock that only moves forward (monotonic live, virtual in the simulator)."""

    def __init__(self, sla_s: float, now: float = 0.0):
        self.sla_s = float(sla_s)
        self._done_t: deque[float] = deque()
        self._traffic_t = now

    def completed(self, t: float) -> None:
        if len(self._done_t) < MAX_COMPLETIONS_KEPT:
            self._done_t.append(t)

    def limit(self, now: float, inflight: int, oldest_admitted_t: float | None, max_inflight: int, floor: int) -> int:
        done = self._done_t
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
        if inflight == 0 and not done:
            self._traffic_t = now  # idle (or just started): the rate is measured from the next request on
        measured = measured_admission(len(done), now - self._traffic_t, self.sla_s)
        oldest_s = now - oldest_admitted_t if oldest_admitted_t is not None else 0.0
        return admission_now(max_inflight, floor, measured, oldest_s, self.sla_s)
