"""Per-second counts -> request timestamps (seconds from the start of the trace), sorted and seeded.

* `poisson`: within each second the n requests fall where a Poisson process conditioned on n events in that
  second puts them: cumulative sums of n+1 exponential gaps, normalised by their total, i.e. the order
  statistics of n uniforms. Gaps are exponential-like and requests are spread over the whole second.
  (IPA's tester draws n *independent* exponential offsets from the second's start, which bunches requests at
  the start of every second; we do not copy that.)
* `uniform`: evenly spaced, the k-th of n at k/n.
* `step`: all n at the start of the second (a batch arrival, the worst case for queues).

Fractional counts (a damped trace) are rounded with carry: second i gets floor(C_i) - floor(C_{i-1}) requests
where C is the running total, so the total is kept and no second is biased. Zero-count seconds add nothing.
"""

from __future__ import annotations

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.workloads.trace import validate_counts

PROCESSES = ("poisson", "uniform", "step")
# The simulator materialises every request (a timestamp and its per-stage records): a workload holding more
# is refused before anything is allocated, whatever one huge count or --peak asks for.
MAX_REQUESTS = 20_000_000


def integer_counts(counts: np.ndarray) -> np.ndarray:
    """Round fractional per-second counts to integers, carrying the remainder (keeps the running total)."""
    arr = validate_counts(counts)
    if np.all(arr == np.floor(arr)):
        return arr.astype(np.int64)
    # A tiny epsilon so exact values (e.g. 2.0 after float division) are not floored to 1.999.. -> 1.
    running = np.floor(np.cumsum(arr) + 1e-9).astype(np.int64)
    return np.diff(np.concatenate([[0], running]))


def arrival_times(counts: np.ndarray, process: str = "poisson", seed: int = 0) -> np.ndarray:
    """Sorted request timestamps (float64 seconds) for per-second `counts` under `process`."""
    if process not in PROCESSES:
        raise PipetuneError(f"arrival process {process!r} is unknown; use one of {', '.join(PROCESSES)}")
    arr = validate_counts(counts)
    asked = float(arr.sum())
    if asked > MAX_REQUESTS:
        i = int(np.argmax(arr))
        raise PipetuneError(
            f"the workload holds {asked:.4g} requests (its busiest second, {i}, holds {arr[i]:.4g}); the simulator "
            f"replays at most {MAX_REQUESTS:,} requests, each one materialised: lower the peak (--peak, damp) or "
            "shorten the trace"
        )
    n = integer_counts(arr)
    total = int(n.sum())
    if total == 0:
        return np.zeros(0)
    second = np.repeat(np.arange(n.size, dtype=np.float64), n)
    # rank of each request within its second: 0..n_i-1
    starts = np.repeat(np.cumsum(n) - n, n)
    rank = np.arange(total) - starts
    per = np.repeat(n, n).astype(np.float64)
    if process == "uniform":
        return second + rank / per
    if process == "step":
        return second
    rng = np.random.default_rng(seed)
    # n+1 gaps per non-empty second; the first n cumulative sums over the total give the offsets.
    gaps = rng.exponential(1.0, size=total + int((n > 0).sum()))
    group = np.repeat(np.arange(n.size), n + (n > 0))
    cum = np.cumsum(gaps)
    group_end = np.cumsum(n + (n > 0)) - 1  # index of the last gap in each second (valid where n > 0)
    group_start_cum = np.concatenate([[0.0], cum])[np.concatenate([[0], group_end[:-1] + 1])]
    total_per_second = cum[group_end] - group_start_cum
    keep = np.ones(cum.size, dtype=bool)
    keep[group_end[n > 0]] = False  # the (n+1)-th sum is the normaliser, not an arrival
    g = group[keep]
    offsets = (cum[keep] - group_start_cum[g]) / total_per_second[g]
    return second + np.minimum(offsets, np.nextafter(1.0, 0.0))
