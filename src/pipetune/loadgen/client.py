"""Requests sent open loop, as the benchmarks, the live demo and the serving tests read them: a thin view over
the load generator's runner (`runner.py`, the one home of sending), one `Outcome` per planned request."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipetune import jsonio
from pipetune.loadgen.runner import RunOptions, run


@dataclass(frozen=True)
class Outcome:
    """One request: planned send time (s from the run's start), HTTP status (0: no answer), error, variants
    served (stage -> variant, for a 200), latency (s)."""

    planned: float
    status: int
    error: str
    variants: dict | None
    latency_s: float


def _variants(text: str | None) -> dict | None:
    if not text:
        return None
    return dict(kv.split("=", 1) for kv in text.split(";") if "=" in kv)


def open_loop_at(
    url: str,
    body: dict | Callable[[int], dict],
    offsets_s: Sequence[float] | np.ndarray,
    timeout_s: float = 30.0,
    n_bodies: int = 200,
) -> list[Outcome]:
    """Send one request per offset (seconds from the start) and wait for every answer."""
    if callable(body):
        bodies = [jsonio.dumps(body(i)).encode() for i in range(min(n_bodies, max(1, len(offsets_s))))]
    else:
        bodies = [jsonio.dumps(body).encode()]
    rec = run(np.asarray(offsets_s, dtype=float), RunOptions(url=url, bodies=bodies, timeout_s=timeout_s))
    out = []
    for i in range(rec.planned.size):
        lat = float(rec.latency[i])
        out.append(
            Outcome(
                float(rec.planned[i]), int(rec.status[i]), rec.reasons[i] or "", _variants(rec.variants[i]),
                lat if math.isfinite(lat) else float("nan"),
            )
        )  # fmt: skip
    return out


def open_loop(url: str, body: dict, rps: float, seconds: float) -> list[Outcome]:
    """`rps` evenly spaced requests per second for `seconds`."""
    return open_loop_at(url, body, [i / rps for i in range(int(rps * seconds))])
