"""Simulator benchmark: speed (simulated requests per wall-clock second) and validation against queueing theory.

* M/D/1 (one stage, batch 1, Poisson arrivals, deterministic service) at rho in {0.5, 0.8, 0.9}: the mean wait
  in queue against Pollaczek-Khinchine, Wq = rho * S / (2 * (1 - rho)).
* M/M/c (exponential service, c replicas): mean wait against Erlang C, Wq = C(c, a) / (c*mu - lambda).

The simulated wait is the mean sojourn minus the service time's mean (the service distribution is known
exactly), averaged over independent seeds; the first 2% of each run is discarded as warm-up.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from pipetune.backends.simulator.engine import SimSettings, Simulator
from pipetune.configs import StageConfig
from pipetune.profiles import PipelineProfiles, ProfileRow, VariantProfile
from pipetune.spec import parse_pipeline


def single_stage(service_s: float, sla_s: float = 1e9):
    """A one-stage pipeline whose only variant takes `service_s` per item (no batching gain, no load time)."""
    pipe = parse_pipeline(
        {
            "name": "bench-single",
            "sla": {"seconds": sla_s},
            "caps": {"batch_sizes": [1], "cores": [1]},
            "stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 1.0}]}],
        }
    )
    rows = [
        ProfileRow("v", b, 1, service_s * b, service_s * b, service_s * b, 1 / service_s, 0.0, 0.0)
        for b in (1, 2, 4, 8)
    ]
    return pipe, PipelineProfiles({("s", "v"): VariantProfile("v", rows)})


def poisson_arrivals(rate: float, n: int, seed: int) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, n))


def simulate_wait(
    service_s: float, rate: float, replicas: int, service: str, n: int, seed: int, cpu: list | None = None
) -> tuple[float, float]:
    """(mean wait in queue, wall seconds) for one run of n requests; appends CPU seconds to `cpu`."""
    pipe, prof = single_stage(service_s)
    arr = poisson_arrivals(rate, n, seed)
    sim = Simulator(
        pipe,
        prof,
        arr,
        {"s": StageConfig("v", 1, 1, replicas)},
        SimSettings(seed=seed, service=service, drop_limit_s=1e18),
    )
    t0, c0 = time.perf_counter(), time.process_time()
    sim.close()
    wall = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(time.process_time() - c0)
    res = sim.result()
    lat = (res.finish_s - res.arrival_s)[n // 50 :]
    return float(lat.mean() - service_s), wall


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a = lambda/mu (< c)."""
    s = sum(a**k / math.factorial(k) for k in range(c))
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (s + top)


def run_simulator_benchmark(n: int = 400_000, seeds: int = 3, progress=None) -> dict:
    """Speed and queueing-theory validation; returns the dict `pipetune bench simulator --json` prints."""
    service_s = 0.01
    walls: list[float] = []
    cpus: list[float] = []
    counts = 0
    md1: list[dict[str, Any]] = []
    tasks = [("md1", rho, 1) for rho in (0.5, 0.8, 0.9)] + [("mmc", rho, c) for rho, c in ((0.8, 4), (0.85, 8))]
    for kind, rho, c in tasks:
        rate = rho * c / service_s
        waits = []
        # The sample mean's variance grows like 1/(1-rho)^2: heavier loads get more requests.
        n_run = int(n * max(1.0, ((1 - 0.8) / (1 - rho)) ** 2))
        for seed in range(seeds):
            w, wall = simulate_wait(
                service_s, rate, c, "deterministic" if kind == "md1" else "exponential", n_run, seed, cpus
            )
            waits.append(w)
            walls.append(wall)
            counts += n_run
            if progress:
                progress()
        sim_w = float(np.mean(waits))
        if kind == "md1":
            theory = rho * service_s / (2 * (1 - rho))
        else:
            theory = erlang_c(c, rho * c) / (c / service_s - rate)
        md1.append(
            {
                "model": "M/D/1" if kind == "md1" else f"M/M/{c}",
                "rho": rho,
                "replicas": c,
                "sim_wait_s": sim_w,
                "theory_wait_s": theory,
                "rel_err": abs(sim_w - theory) / theory,
                "requests": n_run * seeds,
            }
        )
    speed = counts / sum(cpus)
    return {
        "requests_per_s": speed,
        "requests_per_wall_s": counts / sum(walls),
        "goal_requests_per_s": 200_000,
        "speed_ratio_to_goal": speed / 200_000,
        "md1": [r for r in md1 if r["model"] == "M/D/1"],
        "mmc": [r for r in md1 if r["model"] != "M/D/1"],
        "max_rel_err": max(r["rel_err"] for r in md1),
        "tolerance": 0.03,
        "requests_per_run": n,
        "seeds": seeds,
        "note": "requests_per_s = simulated requests per second of one core running the event loop (its CPU "
        "time, i.e. wall time on a dedicated core); requests_per_wall_s = the same over wall time, lower "
        "when the machine is shared; wait = mean sojourn - service mean, first 2% discarded",
    }
