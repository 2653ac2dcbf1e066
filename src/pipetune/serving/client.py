"""A small open-loop V2 sender used in-process by the benchmarks and the live demo (the full load generator
with its reports is `pipetune loadtest`). Each request leaves at its planned time whatever earlier ones do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One request: planned send time (perf_counter clock), HTTP status (0: no answer), error, variants, latency."""

    planned: float
    status: int
    error: str
    variants: dict | None
    latency_s: float


def open_loop_at(
    url: str,
    body: dict | Callable[[int], dict],
    offsets_s: Sequence[float],
    timeout_s: float = 30.0,
    t0: float | None = None,
) -> list[Outcome]:
    """Send one request per offset (seconds after `t0`, default: now + 50 ms) and wait for every answer."""
    import httpx

    out: list[Outcome] = []

    async def one(client: httpx.AsyncClient, i: int, t_send: float) -> None:
        await asyncio.sleep(max(0.0, t_send - time.perf_counter()))
        t1 = time.perf_counter()
        try:
            r = await client.post(url, json=body(i) if callable(body) else body)
            j = r.json()
            out.append(Outcome(t_send, r.status_code, j.get("error", ""), (j.get("parameters") or {}).get("variants"),
                               time.perf_counter() - t1))  # fmt: skip
        except (httpx.HTTPError, ValueError) as e:
            out.append(Outcome(t_send, 0, f"{type(e).__name__}: {e}", None, time.perf_counter() - t1))

    async def main() -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
            start = (time.perf_counter() + 0.05) if t0 is None else t0
            await asyncio.gather(*(one(client, i, start + float(t)) for i, t in enumerate(offsets_s)))

    asyncio.run(main())
    out.sort(key=lambda o: o.planned)
    return out


def open_loop(url: str, body: dict, rps: float, seconds: float) -> list[Outcome]:
    """`rps` evenly spaced requests per second for `seconds`."""
    return open_loop_at(url, body, [i / rps for i in range(int(rps * seconds))])
