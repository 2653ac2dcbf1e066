"""How accurately the load generator keeps its schedule: a constant Poisson rate against the echo server.

The echo server runs in its own process (`start_echo`), so what is measured is this process alone: the
achieved rate (completed requests per second of the run) and the send-time error (actual minus planned send
time, the actual one being when the request headers reached the socket). What bounds the figures: this
process's CPU per request (aiohttp with the tracing hook and the records, a fraction of a millisecond, so one
core tops out in the thousands of requests per second), the event loop's timer resolution (~1 ms, epoll's
millisecond timeout), and above all the CPU this process gets: on cores shared with a busy Ray, stalls of tens
to hundreds of milliseconds show up in the send times. The figures, and the command that measures them
(`pipetune bench loadgen --rate R --detail`), are in docs/serving.md (Load generator).
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
