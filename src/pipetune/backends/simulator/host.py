"""A shared host CPU for the simulator: egalitarian processor sharing of `cores` among the jobs in service.

Used only when `SimSettings.host_cores` is set (docs/simulator.md, "Shared host"). A job is a batch in service
on a replica (demand: the replica's cores; work: the drawn service time, plus `host_hop_s` per item, i.e. its
duration at full speed), a request's host overhead (demand: 1 core; work: `host_overhead_s`), the CPU a request costs beside its path
(demand: 1 core; work: `host_side_s`; nothing waits for it) or, with
`host_load_cores` > 0, a replica loading (demand: `host_load_cores`; work: its `load_time_s`). With total demand D of the jobs in service,
every job progresses at speed f = min(1, cores / D): a job of work w that is alone on a large enough host takes
w, and the host never does more than `cores` CPU-seconds per second (work conserving).

Exact, in O(log n) per change: since every job runs at the same speed, keep a virtual clock V(t) with
dV/dt = f(t); a job started at t0 finishes when V reaches V(t0) + w, an order fixed at its start. V is kept as
V(t) = t - lag, the lag growing at rate 1 - f: a host that is never oversubscribed keeps lag == 0.0 exactly,
so its finish times are bit-identical to the simulator without a host (`start + service`).

Only the job that finishes first has an event in the simulator's heap: `(time, job seq, kind, epoch, None,
None)`. Each change of the busy set (a start, a finish) recomputes that time and, when it moved, pushes a new
event under a new epoch; the superseded one is skipped when it comes up (the epoch differs). A superseded event
is never later than the completion of the job it was for (that job can only have been slowed since: the demand
can fall below what it was only when a job that finishes after it leaves), so it never moves the simulator's
clock past its last real event. The event carries the job's
own sequence number, and a finished batch re-enters the heap as the simulator's ordinary completion event
`(time, job seq, done, ...)`: ties between events at the same instant are broken exactly as without a host. A
finished load re-enters it as the ordinary ready event `(time, job seq, ready, stage, replica, None)`; a load
cancelled before it finishes leaves the host at once (`cancel`).

The twin's host numbers come from a `RuntimeProfile` (`host_settings`), the same one the planner counts
(pipetune.latency, "Shared host"): one host model, the same inputs with the same meaning.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from pipetune.runtime_profile import LOADING_CPU_WEIGHT, RuntimeProfile


class SharedHost:
    """Processor sharing of `cores` physical cores; the simulator feeds it jobs and pops its events.

    `load_weight` < 1: replicas loading run at a lower priority than the jobs serving (the live runtime starts a
    replica at a higher nice value, `runtime_profile.LOADING_CPU_WEIGHT`): the loading jobs are a second class,
    with its own virtual clock, that gets `load_weight` the share per core of demand of a serving job (weighted
    processor sharing, each job at most its demand) and what the serving jobs leave. With it, a superseded event
    may come up after its job has finished (the job sped up when a job of the other class left); it is skipped
    like any superseded event."""

    __slots__ = ("cores", "heap", "seq", "ev_host", "ev_done", "admit", "jobs", "lag", "t", "demand", "f",
                 "ev_ready", "epoch", "cur", "work_done_s", "busy_s", "load_weight", "ljobs", "llag", "ldemand",
                 "fl", "cur_low")  # fmt: skip

    def __init__(
        self,
        cores: float,
        heap: list,
        seq: itertools.count,
        ev_host: int,
        ev_done: int,
        ev_ready: int,
        admit: Callable[[int, float], None],
        load_weight: float = 1.0,
    ):
        self.cores = float(cores)
        self.heap = heap  # the simulator's event heap
        self.seq = seq  # ... and its sequence counter
        self.ev_host, self.ev_done, self.ev_ready = ev_host, ev_done, ev_ready
        self.admit = admit  # admit(rid, t): a request whose overhead is done enters its source stages
        # heap of (virtual finish, seq, demand, work, tag, replica, batch or rid); tag: the stage of a batch (>= 0),
        # -1 for a request's overhead (rid) or side work (None), -2 - stage for a replica loading
        self.jobs: list = []
        self.lag = 0.0  # V(t) = t - lag
        self.t = 0.0  # time of the last change
        self.demand = 0.0  # cores demanded by the jobs in service
        self.f = 1.0  # speed of every job since self.t
        self.epoch = 0
        self.cur: tuple[float, int] | None = None  # (time, seq) of the valid event in the heap
        self.work_done_s = 0.0  # work (full-speed seconds x demand) of finished jobs: CPU-seconds consumed
        self.busy_s = 0.0  # seconds with at least one job in service
        # the low-priority class (loading replicas, when load_weight < 1): its own heap, clock, demand and speed
        self.load_weight = float(load_weight)
        self.ljobs: list = []
        self.llag = 0.0
        self.ldemand = 0.0
        self.fl = 1.0
        self.cur_low = False  # whether the valid event is for the low-priority class's first job

    def _low(self, s: int) -> bool:
        return s <= -2 and self.load_weight < 1.0

    def start(self, now: float, work: float, demand: float, s: int, rep, item) -> None:
        """A job of `work` seconds at full speed, demanding `demand` cores, enters service at `now`."""
        self._advance(now)
        if self._low(s):
            heapq.heappush(self.ljobs, ((now - self.llag) + work, next(self.seq), demand, work, s, rep, item))
            self.ldemand += demand
        else:
            heapq.heappush(self.jobs, ((now - self.lag) + work, next(self.seq), demand, work, s, rep, item))
            self.demand += demand
        self._schedule(now)

    def _advance(self, now: float) -> None:
        dt = now - self.t
        if self.demand > 0 or self.ldemand > 0:
            self.busy_s += dt
        if self.demand > 0:
            self.lag += dt * (1.0 - self.f)
        if self.ldemand > 0:
            self.llag += dt * (1.0 - self.fl)
        self.t = now

    def cancel(self, now: float, rep) -> None:
        """Replica `rep`'s load stops at `now` (it was retired while loading): its job leaves the host."""
        low = self.load_weight < 1.0
        jobs = self.ljobs if low else self.jobs
        i = next((k for k, j in enumerate(jobs) if j[5] is rep and j[4] <= -2), None)
        if i is None:
            return
        job = jobs[i]
        self._advance(now)
        last = jobs.pop()
        if i < len(jobs):
            jobs[i] = last
            heapq.heapify(jobs)
        lag = self.llag if low else self.lag
        if low:
            self.ldemand = self.ldemand - job[2] if self.ljobs else 0.0
        else:
            self.demand = self.demand - job[2] if self.jobs else 0.0  # no rounding residue on an empty host
        self.work_done_s += job[2] * max(0.0, job[3] - (job[0] - (now - lag)))  # the part done
        self._schedule(now)

    def _speeds(self) -> None:
        ds, dl, c = self.demand, self.ldemand, self.cores
        if dl <= 0:
            self.f = c / ds if ds > c else 1.0
            self.fl = 1.0
        elif ds + dl <= c:
            self.f = self.fl = 1.0
        else:
            fs = c / (ds + self.load_weight * dl)
            if fs >= 1.0:  # the serving jobs run at full speed; the loading ones get what is left
                self.f, self.fl = 1.0, (c - ds) / dl
            else:
                self.f, self.fl = fs, self.load_weight * fs

    def _schedule(self, now: float) -> None:
        self._speeds()
        best: tuple[float, int, bool] | None = None
        for jobs, lag, f, low in ((self.jobs, self.lag, self.f, False), (self.ljobs, self.llag, self.fl, True)):
            if not jobs or f <= 0:
                continue
            vf, sq = jobs[0][0], jobs[0][1]
            tn = vf + lag if f == 1.0 else now + (vf - (now - lag)) / f
            if tn < now:
                tn = now
            if best is None or (tn, sq) < best[:2]:
                best = (tn, sq, low)
        if best is None:
            self.cur = None
            self.epoch += 1
            return
        tn, sq, low = best
        if self.cur == (tn, sq):
            return
        self.epoch += 1
        self.cur = (tn, sq)
        self.cur_low = low
        heapq.heappush(self.heap, (tn, sq, self.ev_host, self.epoch, None, None))

    def wake(self, t: float, epoch: int) -> None:
        """The event of `epoch` came up at `t`: finish the first job (nothing if the event was superseded)."""
        if epoch != self.epoch:
            return
        low = self.cur_low
        vf, sq, demand, work, s, rep, item = heapq.heappop(self.ljobs if low else self.jobs)
        self._advance(t)
        if low:
            self.llag = t - vf  # V_low(t) = vf: the job's work is done
            self.ldemand = self.ldemand - demand if self.ljobs else 0.0
        else:
            self.lag = t - vf  # V(t) = vf: the job's work is done
            self.demand -= demand
        self.work_done_s += demand * work
        self.cur = None
        self._schedule(t)
        if s >= 0:
            heapq.heappush(self.heap, (t, sq, self.ev_done, s, rep, item))
        elif s == -1:
            if item is not None:  # None: work beside any request's path (host_side_s)
                self.admit(item, t)
        else:
            heapq.heappush(self.heap, (t, sq, self.ev_ready, -2 - s, rep, None))


def host_settings(runtime: RuntimeProfile, pipeline: Any, profiles: Any) -> dict[str, Any]:
    """The `SimSettings` fields of the shared host from a runtime profile, the one place they come from:
    `SimSettings(**host_settings(runtime, pipeline, profiles), seed=...)`. Each field means what the planner
    counts (pipetune.latency, "Shared host"): host_cores the host's physical cores; host_overhead_s the request's
    path outside the stages (request_cpu_s); host_call_s and host_hop_s a remote call's and an item's CPU outside
    the model (call_cpu_s, item_cpu_s), not paid by the (stage, variant) pairs the runtime runs inline
    (host_inline); host_side_s the CPU beside the path (side_cpu_s); replica_start_s a new replica's start before
    its model loads (replica_start_s); host_load_weight a loading replica's CPU weight (the live runtime starts
    replicas at a lower priority: LOADING_CPU_WEIGHT). host_load_cores (a replica loading) is not a
    runtime-profile figure: the caller sets it."""
    from pipetune.optimizer.options import runs_inline_here

    inline = frozenset(
        (st.name, v.name)
        for st in pipeline.stages
        for v in st.variants
        if runs_inline_here(pipeline, profiles, runtime, st.name, v.name)
    )
    return {
        "host_cores": runtime.host_cores,
        "host_overhead_s": runtime.request_cpu_s,
        "host_call_s": runtime.call_cpu_s,
        "host_hop_s": runtime.item_cpu_s,
        "host_side_s": runtime.side_cpu_s,
        "host_inline": inline,
        "replica_start_s": runtime.replica_start_s,
        "host_load_weight": LOADING_CPU_WEIGHT,
    }
