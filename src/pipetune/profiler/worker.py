"""The measuring process: `python -m pipetune.profiler.worker JOB.pkl RESULT.json`.

It runs in a fresh interpreter so that thread settings, CPU affinity and imported libraries never leak between
measurements. Order matters: pin the CPUs and thread pools FIRST, then unpickle the job (which imports the
model's modules), then build and load the model, then measure. The result file is rewritten after every cell,
so a crash part-way still leaves the cells measured before it.
"""

from __future__ import annotations

import os
import pickle
import resource
import sys
import time
import traceback


def _pin_threads(cores: int) -> None:
    from pipetune.models.base import pin_threads  # imports no torch: safe before the model's own imports

    pin_threads(cores)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process's address space (VmHWM). Not ru_maxrss: Linux carries that over
    exec from the parent, so a small model would report the (larger) profiler process that started it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux (fallback)


def _sched() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over this process's threads, from
    /proc/self/task/*/schedstat; None where the kernel does not expose it."""
    run = wait = 0.0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    seen = False
    for t in tasks:
        try:
            with open(f"/proc/self/task/{t}/schedstat") as f:
                parts = f.read().split()
        except OSError:
            continue  # a thread that ended between the listing and the read
        run, wait, seen = run + int(parts[0]) * 1e-9, wait + int(parts[1]) * 1e-9, True
    return (run, wait) if seen else None


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _write(path: str, result: dict) -> None:
    tmp = path + ".tmp"
    from pipetune import jsonio  # here, not at the top: it imports numpy, which must load after the pinning

    with open(tmp, "w") as f:
        jsonio.dump(result, f)  # strict JSON: a NaN (no load average) is written as null
    os.replace(tmp, path)


def _fail(path: str, result: dict, phase: str, exc: BaseException) -> None:
    result["error"] = f"{phase}: {type(exc).__name__}: {exc}"
    result["traceback"] = traceback.format_exc(limit=8)
    _write(path, result)


def measure_batch(adapter, pool: list, batch: int, job: dict) -> dict:  # noqa: ANN001
    """Warm up, then time back-to-back batches; return latencies and the saturation throughput."""
    n_pool = len(pool)

    def batches():
        i = 0
        while True:
            start = (i * batch) % n_pool
            yield [pool[(start + j) % n_pool] for j in range(batch)]
            i += 1

    gen = batches()
    # Warm-up: lazy initialisation, allocator growth and caches settle before anything is timed.
    t0 = time.perf_counter()
    n_warm = 0
    while n_warm < job["warmup_batches"] or (time.perf_counter() - t0) < job["warmup_s"]:
        out = adapter.predict(next(gen))
        if len(out) != batch:
            raise ValueError(f"predict returned {len(out)} outputs for a batch of {batch}")
        n_warm += 1
        if time.perf_counter() - t0 > 5 * job["warmup_s"] + 1:
            break
    # Measurement: back-to-back batches keep the model busy, so items/wall-time is the saturation throughput.
    lat: list[float] = []
    budget, min_batches, max_batches = job["budget_s"], job["min_batches"], job["max_batches"]
    # Contention: CPU time of the whole process against wall time, and the time its threads were runnable but
    # waiting for a CPU (descheduled: another process held the core), with the load average around the run.
    load0, sched0, cpu0 = _loadavg(), _sched(), time.process_time()
    start = time.perf_counter()
    while True:
        b = next(gen)
        t = time.perf_counter()
        adapter.predict(b)
        lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        n = len(lat)
        if n >= max_batches:
            break
        if n >= min_batches and elapsed >= job["min_time_s"]:
            break
        if elapsed >= budget and n >= job["floor_batches"]:
            break  # slow cell: fewer batches than asked, but never fewer than the floor
    wall = time.perf_counter() - start
    cpu_s, sched1 = time.process_time() - cpu0, _sched()
    wait_share = None
    if sched0 is not None and sched1 is not None:
        ran, waited = sched1[0] - sched0[0], sched1[1] - sched0[1]
        wait_share = waited / (ran + waited) if ran + waited > 0 else 0.0
    return {
        "batch": batch,
        "cpu_s": cpu_s,
        "wait_share": wait_share,
        "loadavg": [load0, _loadavg()],
        "latencies_s": lat,
        "wall_s": wall,
        "throughput_rps": batch * len(lat) / wall,
        "warmup_batches": n_warm,
        "memory_mb": _peak_rss_mb(),
    }


def open_loop(adapter, pool: list, job: dict) -> dict:  # noqa: ANN001
    """Serve Poisson arrivals at `rate_rps` (open loop: arrivals never wait for the server) in fixed batches of
    `batch`; record the backlog (arrived - served) at every batch start and each item's sojourn time."""
    import random

    batch, rate, duration = job["batches"][0], job["rate_rps"], job["duration_s"]
    rng = random.Random(job.get("seed", 0))
    arrivals, t = [], 0.0
    while t < duration:
        t += rng.expovariate(rate)
        arrivals.append(t)
    for _ in range(3):  # warm-up outside the timed run
        adapter.predict(pool[:batch])
    n_pool = len(pool)
    served = 0
    backlog: list[tuple[float, int]] = []  # (seconds since start, items arrived but not yet served)
    sojourn: list[float] = []
    start = time.perf_counter()
    while served + batch <= len(arrivals):
        ready_at = arrivals[served + batch - 1]
        now = time.perf_counter() - start
        if now < ready_at:
            time.sleep(ready_at - now)
            now = time.perf_counter() - start
        arrived = _count_le(arrivals, now)
        backlog.append((now, arrived - served))
        items = [pool[(served + j) % n_pool] for j in range(batch)]
        adapter.predict(items)
        done = time.perf_counter() - start
        sojourn.extend(done - arrivals[served + j] for j in range(batch))
        served += batch
        if done > 3 * duration:  # far behind: the queue grows without bound; stop
            break
    end = time.perf_counter() - start
    return {
        "batch": batch,
        "rate_rps": rate,
        "duration_s": duration,
        "n_arrivals": len(arrivals),
        "served": served,
        "elapsed_s": end,
        "backlog": backlog,
        "sojourn_s": sojourn,
    }


def _count_le(xs: list, t: float) -> int:
    import bisect

    return bisect.bisect_right(xs, t)


def main(job_path: str, result_path: str) -> int:
    result: dict = {"cells": [], "pid": os.getpid()}
    try:
        with open(job_path, "rb") as f:
            header = pickle.load(f)  # plain dict: cpus, cores (no imports needed)
            cpus = header["cpus"]
            if cpus and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, cpus)
            result["cpus"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            _pin_threads(header["cores"])
            job = pickle.load(f)  # the factory: unpickling imports the model's modules, now pinned
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent as a report
        _fail(result_path, result, "setup", e)
        return 1
    try:
        t = time.perf_counter()
        adapter = job["factory"]()
        adapter.load()
        result["load_time_s"] = time.perf_counter() - t
        _pin_threads(job_cores := header["cores"])  # a library the model imported is told directly too
        result["threads"] = job_cores
        result["memory_after_load_mb"] = _peak_rss_mb()
        result["name"] = getattr(adapter, "name", "")
    except BaseException as e:  # noqa: BLE001
        _fail(result_path, result, "load", e)
        return 1
    try:
        pool = adapter.sample_inputs(job["pool_size"])
        if len(pool) == 0:
            raise ValueError("sample_inputs returned no inputs")
    except BaseException as e:  # noqa: BLE001
        _fail(result_path, result, "sample_inputs", e)
        return 1
    _write(result_path, result)
    if job.get("mode") == "open_loop":
        try:
            result["open_loop"] = open_loop(adapter, pool, job)
        except BaseException as e:  # noqa: BLE001
            _fail(result_path, result, "open-loop run", e)
            return 1
        _write(result_path, result)
        return 0
    for batch in job["batches"]:
        try:
            result["cells"].append(measure_batch(adapter, pool, batch, job))
        except BaseException as e:  # noqa: BLE001
            _fail(result_path, result, f"predict at batch {batch}", e)
            return 1
        _write(result_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
