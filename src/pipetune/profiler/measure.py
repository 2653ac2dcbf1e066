"""Measure one variant at given batch sizes and cores, in a fresh subprocess pinned to those cores.

What is measured, per (batch, cores) cell, after a warm-up:
* the latency distribution of back-to-back batches (mean, p50, p95, p99) over at least `min_batches` batches
  (fewer only when one batch is so slow that the per-cell budget runs out, never fewer than `floor_batches`);
* the saturation throughput: items / wall time of that same back-to-back run, i.e. with the model kept busy
  (IPA measured under a fixed ~20 RPS offered load, which caps throughput by the load);
* the model's load time (construct + `load()`) and the process's peak resident memory (VmHWM);
* contention: the process's CPU time against wall time, the share of its threads' runnable time spent waiting
  for a CPU (`/proc/self/task/*/schedstat`: descheduled because another process held the core) and the 1-minute
  load average. A cell whose wait share exceeds `max_wait_share` is measured again (up to `retries` more times,
  the cleanest attempt kept); so are cells that break physics (throughput falling with batch size by more than
  `tp_tolerance`). What stays contended or unphysical carries a `flags` entry saying why, for the caller to
  record in the file's provenance or to refuse.

The subprocess is started with the OMP/MKL/OpenBLAS thread variables set to `cores`, pins itself to `cores`
CPUs (sched_setaffinity) and calls `pin_threads(cores)` before it imports the model, so nothing leaks between
cells or into the caller.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.models.base import THREAD_ENV_VARS
from pipetune.profiles import ProfileRow


class ProfilingError(PipetuneError):
    """A variant could not be loaded or run; the message says which phase failed and why."""


@dataclass(frozen=True)
class Measurement:
    """One measured cell. `row` is the ProfileTable form; the extra fields are kept for reports and plots."""

    variant: str
    batch: int
    cores: int
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    throughput_rps: float
    load_time_s: float
    memory_mb: float
    n_batches: int
    wall_s: float
    cpus: tuple[int, ...] = field(default=())
    cpu_s: float = 0.0  # CPU time of the measuring process (all threads) over the timed run
    wait_share: float | None = None  # runnable-but-waiting time / (running + waiting); None: not observable
    loadavg: float = math.nan  # 1-minute load average at the end of the timed run
    attempts: int = 1
    flags: tuple[str, ...] = ()  # why this cell is not clean (contended, unphysical); empty when it is

    @property
    def cpu_per_wall(self) -> float:
        """CPU seconds per wall second: about `cores` for a compute-bound model that had its cores to itself."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def contended(self, max_wait_share: float) -> bool:
        return self.wait_share is not None and self.wait_share > max_wait_share

    def contention_note(self) -> str:
        ws = "n/a" if self.wait_share is None else f"{self.wait_share:.0%}"
        return f"wait {ws}, cpu/wall {self.cpu_per_wall:.2f}, load {self.loadavg:.1f}"

    @property
    def row(self) -> ProfileRow:
        return ProfileRow(
            variant=self.variant,
            batch=self.batch,
            cores=self.cores,
            latency_mean_s=self.latency_mean_s,
            latency_p50_s=self.latency_p50_s,
            latency_p99_s=self.latency_p99_s,
            throughput_rps=self.throughput_rps,
            load_time_s=self.load_time_s,
            memory_mb=self.memory_mb,
            source="measured",
        )


def available_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def choose_cpus(cores: int, cpus: Sequence[int] | None = None) -> list[int]:
    """The CPUs a `cores`-core measurement is pinned to: the first `cores` of those this process may use."""
    pool = list(cpus) if cpus is not None else available_cpus()
    if cores < 1:
        raise ProfilingError(f"cores={cores} must be >= 1")
    if cores > len(pool):
        raise ProfilingError(
            f"cores={cores} but only {len(pool)} CPU(s) are available here ({pool}); profile at most "
            f"{len(pool)} core(s) and let the fitted scaling law extrapolate the rest"
        )
    return pool[:cores]


def measure_variant(
    adapter_factory: Callable[[], Any],
    batches: Sequence[int],
    cores: int,
    *,
    variant: str | None = None,
    min_batches: int = 100,
    budget_s: float = 5.0,
    min_time_s: float = 0.5,
    warmup_s: float = 0.3,
    warmup_batches: int = 3,
    floor_batches: int = 10,
    max_batches: int = 20000,
    cpus: Sequence[int] | None = None,
    load_timeout_s: float = 300.0,
    on_cell: Callable[[Measurement], None] | None = None,
    max_wait_share: float = 0.10,
    retries: int = 2,
    tp_tolerance: float = 0.10,
) -> list[Measurement]:
    """Load the model once in a pinned subprocess and measure every batch size in `batches` (ascending).

    `adapter_factory` is any picklable zero-argument callable returning a ModelAdapter (a `ModelRef`, a
    module-level class, a `functools.partial` of one). `budget_s` bounds the timed phase of each cell.
    Raises ProfilingError naming the failed phase; cells measured before a failure are passed to `on_cell`
    as they arrive (so a caller can save them) and are lost only if the caller ignores them. Contended or
    unphysical cells are re-measured up to `retries` times (a fresh process each time); a re-measured or still
    flagged cell is passed to `on_cell` again, replacing the first.
    """
    batches = sorted({int(b) for b in batches})
    if not batches or batches[0] < 1:
        raise ProfilingError(f"batches={batches}: give positive batch sizes, e.g. 1,2,4,8")
    chosen = choose_cpus(cores, cpus)
    name = variant or str(getattr(adapter_factory, "label", None) or getattr(adapter_factory, "__name__", "model"))
    job = {
        "batches": batches,
        "pool_size": max(64, 4 * batches[-1]),
        "budget_s": float(budget_s),
        "min_batches": int(min_batches),
        "min_time_s": float(min(min_time_s, budget_s)),
        "warmup_s": float(warmup_s),
        "warmup_batches": int(warmup_batches),
        "floor_batches": int(floor_batches),
        "max_batches": int(max_batches),
    }
    out = _measure_once(adapter_factory, batches, chosen, cores, job, load_timeout_s, budget_s, warmup_s, name, on_cell)
    best = {m.batch: m for m in out}
    for _ in range(max(0, retries)):
        redo = sorted({b for b, m in best.items() if m.contended(max_wait_share)} | _unphysical(best, tp_tolerance)[0])
        if not redo:
            break
        try:
            again = _measure_once(adapter_factory, redo, chosen, cores, job, load_timeout_s, budget_s, warmup_s, name)
        except ProfilingError:
            break  # the first measurement stands, flagged below
        for m in again:
            old = best[m.batch]
            keep = m if (m.wait_share or 0.0) <= (old.wait_share or 0.0) + 0.02 else old
            # The load time stays the first process's (one per variant and cores, as without a repeat).
            best[m.batch] = replace(keep, attempts=old.attempts + 1, load_time_s=old.load_time_s)
    bad = _unphysical(best, tp_tolerance)[1]
    final = []
    for b in batches:
        m = best[b]
        flags = list(bad.get(b, []))
        if m.contended(max_wait_share):
            flags.insert(0, f"contended ({m.contention_note()}, > {max_wait_share:.0%} wait)")
        m = replace(m, flags=tuple(flags))
        final.append(m)
        if on_cell and (m.attempts > 1 or m.flags):
            on_cell(m)  # the re-measured / flagged version replaces what was passed on first
    return final


def _unphysical(best: dict[int, Measurement], tol: float) -> tuple[set[int], dict[int, list[str]]]:
    """Cells whose throughput falls with batch size by more than `tol` against a smaller batch (both cells are
    suspects), with a reason per cell. p99 < p50 cannot arise here (both come from one sample)."""
    suspects: set[int] = set()
    why: dict[int, list[str]] = {}
    bs = sorted(best)
    for i, bi in enumerate(bs):
        for bj in bs[i + 1 :]:
            ti, tj = best[bi].throughput_rps, best[bj].throughput_rps
            if tj < ti * (1 - tol):
                suspects |= {bi, bj}
                why.setdefault(bj, []).append(
                    f"unphysical (throughput {tj:.4g}/s at batch {bj} < {ti:.4g}/s at batch {bi}, beyond {tol:.0%})"
                )
    return suspects, why


def _measure_once(
    adapter_factory: Any,
    batches: list[int],
    chosen: list[int],
    cores: int,
    job: dict,
    load_timeout_s: float,
    budget_s: float,
    warmup_s: float,
    name: str,
    on_cell: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    job = {**job, "batches": batches}
    timeout = load_timeout_s + len(batches) * (4 * budget_s + 5 * warmup_s + 30)
    result, proc_rc, stderr, timed_out = _run_worker(adapter_factory, chosen, cores, job, timeout, name)
    out: list[Measurement] = []
    for cell in result.get("cells", []):
        m = _summarise(name, cores, cell, result)
        out.append(m)
        if on_cell:
            on_cell(m)
    if timed_out:
        raise ProfilingError(f"{name} on {cores} core(s): the measurement ran past {timeout:.0f} s and was killed")
    if "error" in result:
        raise ProfilingError(f"{name} on {cores} core(s) failed in {result['error']}")
    if proc_rc != 0 or len(out) != len(batches):
        tail = (stderr or "").strip().splitlines()[-3:]
        raise ProfilingError(
            f"{name} on {cores} core(s): the measuring process exited with code {proc_rc} "
            f"after {len(out)}/{len(batches)} cells; its last words: {' | '.join(tail) or '(none)'}"
        )
    return out


def _run_worker(
    factory: Any, chosen: list[int], cores: int, job: dict, timeout: float, name: str
) -> tuple[dict, int, str, bool]:
    """Run `python -m pipetune.profiler.worker` pinned to `chosen`; return (result, exit code, stderr, timed out)."""
    with tempfile.TemporaryDirectory(prefix="pipetune-profile-") as tmp:
        job_path, result_path = Path(tmp) / "job.pkl", Path(tmp) / "result.json"
        try:
            with open(job_path, "wb") as f:
                pickle.dump({"cpus": chosen, "cores": cores}, f)
                pickle.dump({**job, "factory": factory}, f)
        except Exception as e:  # noqa: BLE001
            raise ProfilingError(
                f"{name}: the adapter factory cannot be sent to the measuring process ({e}); use a module-level "
                "class, a functools.partial of one, or a ModelRef"
            ) from None
        env = {**os.environ, **{v: str(cores) for v in THREAD_ENV_VARS}}
        # Thread pool size must not follow the parent's: tokenizers and torch read these at import.
        env["TOKENIZERS_PARALLELISM"] = "false"
        env["HF_HUB_OFFLINE"] = "1"
        # The child must import what the parent can (the factory is pickled by reference to its module).
        paths = [str(Path(__file__).resolve().parents[2])] + [os.path.abspath(p or ".") for p in sys.path]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if os.path.isdir(p)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipetune.profiler.worker", str(job_path), str(result_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, stderr = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            stderr, timed_out = "", True
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return result, proc.returncode, stderr or "", timed_out


@dataclass(frozen=True)
class OpenLoopResult:
    """An open-loop run: Poisson arrivals at `rate_rps` served in fixed batches by one pinned replica."""

    rate_rps: float
    batch: int
    duration_s: float
    served: int
    n_arrivals: int
    elapsed_s: float
    backlog_slope_per_s: float  # items/s the queue grew by, fitted over the second half of the run
    backlog_end: int
    backlog_max: int
    sojourn_p50_s: float
    sojourn_p99_s: float
    backlog_series: tuple[tuple[float, int], ...] = field(default=(), repr=False)  # (seconds, queued items)

    @property
    def achieved_rps(self) -> float:
        return self.served / self.elapsed_s

    @property
    def backlog_at_window_end(self) -> int:
        """Items still queued when the last arrival came in (after that the queue only drains)."""
        before = [b for t, b in self.backlog_series if t <= self.duration_s]
        return before[-1] if before else 0

    @property
    def sustained(self) -> bool:
        """No queue growth while arrivals come: at the end of the arrival window at most a few batches (or 0.1 s
        of arrivals) are queued, and the backlog shows no upward trend over the window's second half."""
        bound = max(4 * self.batch, 0.1 * self.rate_rps)
        return self.backlog_at_window_end <= bound and self.backlog_slope_per_s < 0.02 * self.rate_rps


def open_loop_run(
    adapter_factory: Callable[[], Any],
    batch: int,
    cores: int,
    rate_rps: float,
    duration_s: float = 20.0,
    *,
    seed: int = 0,
    cpus: Sequence[int] | None = None,
    load_timeout_s: float = 300.0,
) -> OpenLoopResult:
    """Offer Poisson load at `rate_rps` items/s to one replica (fresh subprocess pinned like the profiler's)
    that serves fixed batches of `batch`; report whether the queue stays bounded."""
    chosen = choose_cpus(cores, cpus)
    name = getattr(adapter_factory, "label", None) or "model"
    job = {
        "mode": "open_loop",
        "batches": [batch],
        "rate_rps": float(rate_rps),
        "duration_s": float(duration_s),
        "seed": seed,
        "pool_size": max(64, 4 * batch),
    }
    result, rc, stderr, timed_out = _run_worker(
        adapter_factory, chosen, cores, job, load_timeout_s + 4 * duration_s + 30, name
    )
    if timed_out or "error" in result or "open_loop" not in result:
        raise ProfilingError(f"{name}: open-loop run failed: {result.get('error') or stderr[-300:] or 'timed out'}")
    r = result["open_loop"]
    ts = np.array([t for t, _ in r["backlog"]], float)
    q = np.array([b for _, b in r["backlog"]], float)
    # Trend over the second half of the ARRIVAL window: after it the queue can only drain.
    half = (ts >= duration_s / 2) & (ts <= duration_s)
    slope = float(np.polyfit(ts[half], q[half], 1)[0]) if half.sum() >= 3 else float("inf")
    soj = np.asarray(r["sojourn_s"], float)
    return OpenLoopResult(
        rate_rps=float(rate_rps),
        batch=batch,
        duration_s=float(duration_s),
        served=int(r["served"]),
        n_arrivals=int(r["n_arrivals"]),
        elapsed_s=float(r["elapsed_s"]),
        backlog_slope_per_s=slope,
        backlog_end=int(q[-1]) if len(q) else 0,
        backlog_max=int(q.max()) if len(q) else 0,
        sojourn_p50_s=float(np.percentile(soj, 50)) if soj.size else float("nan"),
        sojourn_p99_s=float(np.percentile(soj, 99)) if soj.size else float("nan"),
        backlog_series=tuple((float(t), int(b)) for t, b in r["backlog"]),
    )


def _finite_or_nan(x: Any) -> float:
    """A number from the worker's result file, where strict JSON writes an unknown (NaN) one as null."""
    return math.nan if x is None else float(x)


def _summarise(variant: str, cores: int, cell: dict, result: dict) -> Measurement:
    lat = np.asarray(cell["latencies_s"], float)
    p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99]))
    return Measurement(
        variant=variant,
        batch=int(cell["batch"]),
        cores=cores,
        latency_mean_s=float(lat.mean()),
        latency_p50_s=p50,
        latency_p95_s=p95,
        latency_p99_s=max(p99, p50),
        throughput_rps=float(cell["throughput_rps"]),
        load_time_s=float(result.get("load_time_s", 0.0)),
        memory_mb=float(cell["memory_mb"]),
        n_batches=int(lat.size),
        wall_s=float(cell["wall_s"]),
        cpus=tuple(result.get("cpus") or ()),
        cpu_s=float(cell.get("cpu_s", 0.0)),
        wait_share=None if cell.get("wait_share") is None else float(cell["wait_share"]),
        loadavg=_finite_or_nan((cell.get("loadavg") or [None])[-1]),
    )


def profile_variant(
    adapter_factory: Callable[[], Any],
    batch: int,
    cores: int,
    *,
    variant: str | None = None,
    min_batches: int = 100,
    budget_s: float = 5.0,
    **kwargs: Any,
) -> ProfileRow:
    """Measure one (batch, cores) cell of a model in a fresh pinned subprocess; return its ProfileRow.

    For several batch sizes of one model, `measure_variant` loads the model once and is cheaper.
    """
    (m,) = measure_variant(
        adapter_factory, [batch], cores, variant=variant, min_batches=min_batches, budget_s=budget_s, **kwargs
    )
    return m.row
