"""How accurately the load generator keeps its schedule: a constant Poisson rate against the echo server.

The echo server runs in its own process (`start_echo`), so what is measured is this process alone: the
achieved rate (completed requests per second of the run) and the send-time error (actual minus planned send
time, the actual one being when the request headers reached the socket). What bounds the figures: this
process's CPU per request (aiohttp with the tracing hook and the records: 0.16-0.24 ms measured here, so one
core tops out in the thousands of requests per second), the event loop's timer resolution (~1 ms, epoll's
millisecond timeout), and above all the CPU this process gets: on 2 cores shared with a busy Ray, stalls of
50-300 ms were seen in the send times. Measured here (load average 4-8 from other work): 500 rps -> p99
2.5-3.3 ms; 1000 rps -> 2.7-2.8 ms; 2000 rps -> 2.7 ms, all requests completed. httpx instead of aiohttp:
0.96 ms CPU per request at 500 rps, and at 1000 rps it delivered 106 rps.
"""

from __future__ import annotations

import numpy as np

from pipetune.loadgen.echo import start_echo
from pipetune.loadgen.report import summarise
from pipetune.loadgen.runner import RunOptions, run
from pipetune.loadgen.schedule import LoadgenError, encode_bodies, generated_items, make_plan
from pipetune.protocol import TensorSpec


def bench_loadgen(target_rps: float = 500.0, duration: float = 10.0, seed: int = 0, detail: bool = False) -> dict:
    """{"target_rps", "achieved_rps", "send_error_p99_ms"} at `target_rps` for `duration` seconds (detail=True
    adds the send-error p50/max, latency p99, client CPU per request and the outcome counts)."""
    if not target_rps > 0 or not duration >= 1:
        raise LoadgenError(f"bench loadgen: rate {target_rps} must be > 0 rps and duration {duration} >= 1 s")
    seconds = int(round(duration))
    counts = np.full(seconds, float(target_rps))
    plan = make_plan(counts, "constant", "poisson", seed, max_requests=int(target_rps * seconds) + 1)
    bodies, _ = encode_bodies(
        generated_items(TensorSpec("input", "BYTES", (-1,)), seed=seed), TensorSpec("input", "BYTES", (-1,))
    )
    with start_echo() as base:
        rec = run(plan.times, RunOptions(f"{base}/v2/models/echo/infer", bodies, concurrency=1024, timeout_s=10.0))
    s = summarise(rec, {})
    out = {
        "target_rps": float(target_rps),
        "achieved_rps": s["achieved_rps"],
        "send_error_p99_ms": s["send_error_ms"]["p99"],
    }
    if detail:
        out.update(
            send_error_p50_ms=s["send_error_ms"]["p50"],
            send_error_max_ms=s["send_error_ms"]["max"],
            latency_p99_ms=s["latency_ms"]["p99"],
            client_cpu_ms_per_request=s["client_cpu_ms_per_request"],
            outcomes=s["outcomes"],
        )
    return out
