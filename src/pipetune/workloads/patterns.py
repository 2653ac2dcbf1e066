"""The four load patterns of IPA's evaluation: find them in a trace, load IPA's own windows, or synthesise them.

Rules (explicit, so any trace yields the same kind of windows). A candidate window of `duration` seconds is
summarised on its 10-s means m10 and 60-s means m60:

* variability  cv = sqrt(max(var(m10) - mean/10, 0)) / mean(m10), the spread of the 10-s means beyond what
               Poisson noise alone gives (so a steady low-rate window is not called variable for its noise)
* baseline     b  = 20th percentile of m60
* episodes     the number of times m60 rises from below 1.25 b to above 1.5 b (a load surge; the 1.25 band
               is hysteresis so noise around one threshold does not count twice)
* surge ratio  r  = max(m10) / median(m10)
* contained    the first and the last minute are both below 1.25 b (every surge starts and ends inside the
               window, so a window cut at the top of a surge does not pass for a burst)

and classified as

* steady     cv <= 0.10                       (steady-low: the lowest-mean such window; steady-high: the highest)
* bursty     contained, episodes == 1, r >= 2 (the largest r wins: one surge at least doubling the load)
* fluctuating contained, episodes >= 2        (the most episodes wins, then the largest cv)

Windows holding a 10-s block with no request at all are skipped: that is a gap in the recording.
On IPA's published windows these rules return exactly their labels (checked in the tests): bursty has one
surge to 4.7x, fluctuating two surges, steady-low cv 0.06 at a low level, steady-high cv 0.02 at a high one.
`find_patterns` scans a trace with a stride and picks, per pattern, the best window by the rules above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.workloads.trace import TraceError, concat, damp, load_trace, validate_counts

PATTERNS = ("bursty", "steady-low", "steady-high", "fluctuating")

# IPA's windows: index ranges into the per-second Twitter trace (ipa.yaml `workload_windows`).
IPA_WINDOWS: dict[str, list[tuple[int, int]]] = {
    "bursty": [(1301160, 1302360)],
    "steady-low": [(1299600, 1300800)],
    "steady-high": [(1768800, 1769400), (1768800, 1769400)],
    "fluctuating": [(1301400, 1302000), (1308600, 1309200)],
}
IPA_DAMPING = 8

STEADY_CV = 0.10
BURST_RATIO = 2.0
EPISODE_HIGH = 1.5
EPISODE_LOW = 1.25


@dataclass(frozen=True)
class WindowStats:
    start: int
    mean: float
    cv: float
    episodes: int
    surge_ratio: float
    contained: bool = True


def window_stats(counts: np.ndarray, start: int = 0) -> WindowStats:
    x = validate_counts(counts)
    if x.size < 120:
        raise TraceError(f"a pattern window needs at least 120 seconds, got {x.size}")
    n10 = x.size // 10 * 10
    m10 = x[:n10].reshape(-1, 10).mean(1)
    n60 = x.size // 60 * 60
    m60 = x[:n60].reshape(-1, 60).mean(1)
    mean = float(m10.mean())
    cv = _excess_cv(m10)
    med = float(np.median(m10))
    ratio = float(m10.max() / med) if med > 0 else (np.inf if m10.max() > 0 else 1.0)
    return WindowStats(start, mean, cv, _episodes(m60), ratio, _contained(m60))


def _excess_cv(m10: np.ndarray) -> float:
    mean = float(m10.mean())
    if mean <= 0:
        return 0.0
    return float(np.sqrt(max(float(m10.var()) - mean / 10.0, 0.0)) / mean)


def _baseline(m60: np.ndarray) -> float:
    base = float(np.percentile(m60, 20))
    if base <= 0:
        base = float(m60[m60 > 0].min()) if np.any(m60 > 0) else 0.0
    return base


def _contained(m60: np.ndarray) -> bool:
    low = EPISODE_LOW * _baseline(m60)
    return bool(m60[0] < low and m60[-1] < low)


def _episodes(m60: np.ndarray) -> int:
    base = float(np.percentile(m60, 20))
    if base <= 0:
        base = float(m60[m60 > 0].min()) if np.any(m60 > 0) else 0.0
    if base <= 0:
        return 0
    high, low = EPISODE_HIGH * base, EPISODE_LOW * base
    count, above = 0, False
    for v in m60:
        if not above and v > high:
            count, above = count + 1, True
        elif above and v < low:
            above = False
    return count


def classify_window(counts: np.ndarray, reference_level: float) -> str | None:
    """Which pattern a window is by the rules above; steady windows split at `reference_level` (rps)."""
    s = window_stats(counts)
    if s.cv <= STEADY_CV:
        return "steady-low" if s.mean < reference_level else "steady-high"
    if s.episodes >= 2 and s.contained:
        return "fluctuating"
    if s.episodes == 1 and s.contained and s.surge_ratio >= BURST_RATIO:
        return "bursty"
    return None


def find_patterns(counts: np.ndarray, duration: int = 1200, stride: int = 60) -> dict[str, WindowStats]:
    """Best window of each pattern in `counts` (keys: the patterns found; a trace may lack some)."""
    x = validate_counts(counts, "trace")
    if duration < 120 or duration > x.size:
        raise TraceError(f"window duration {duration} s must be between 120 and the trace length {x.size} s")
    if stride < 1:
        raise TraceError(f"stride must be >= 1 second, got {stride}")
    n10 = x.size // 10
    m10_all = x[: n10 * 10].reshape(-1, 10).mean(1)
    w10 = duration // 10
    starts = np.arange(0, x.size - duration + 1, stride)
    stats = []
    for s in starts:
        i = s // 10  # windows aligned to 10 s so the 10-s means are shared (stride rounded down)
        if i + w10 > m10_all.size:
            break
        m10 = m10_all[i : i + w10]
        mean = m10.mean()
        if mean <= 0 or m10.min() <= 0:
            continue  # a 10-s block with no request is a gap in the data (an outage), not a load pattern
        cv = _excess_cv(m10)
        med = np.median(m10)
        ratio = m10.max() / med if med > 0 else np.inf
        m60 = m10[: w10 // 6 * 6].reshape(-1, 6).mean(1)
        stats.append(WindowStats(int(i * 10), float(mean), float(cv), _episodes(m60), float(ratio), _contained(m60)))
    found: dict[str, WindowStats] = {}
    steady = [s for s in stats if s.cv <= STEADY_CV]
    if steady:
        found["steady-low"] = min(steady, key=lambda s: s.mean)
        found["steady-high"] = max(steady, key=lambda s: s.mean)
    bursty = [s for s in stats if s.contained and s.episodes == 1 and s.surge_ratio >= BURST_RATIO]
    if bursty:
        found["bursty"] = max(bursty, key=lambda s: s.surge_ratio)
    fluct = [s for s in stats if s.contained and s.episodes >= 2]
    if fluct:
        found["fluctuating"] = max(fluct, key=lambda s: (s.episodes, s.cv))
    return {p: found[p] for p in PATTERNS if p in found}


def default_shared_dir() -> Path:
    """`../shared` next to the repository (the data folder of a development checkout)."""
    return Path(__file__).resolve().parents[3].parent / "shared"


def paper_window(name: str, shared_dir: str | Path | None = None, damping: float = IPA_DAMPING) -> np.ndarray:
    """IPA's evaluation window `name` (raw counts from shared/traces/paper-windows, divided by `damping`)."""
    if name not in PATTERNS:
        raise PipetuneError(f"paper window {name!r} is unknown; use one of {', '.join(PATTERNS)}")
    base = Path(shared_dir) if shared_dir is not None else default_shared_dir()
    path = base / "traces" / "paper-windows" / f"{name}.txt"
    if not path.exists():
        raise PipetuneError(
            f"paper window file {path} is missing; pass shared_dir= (the folder holding traces/paper-windows) "
            "or use synthetic_pattern(name) instead"
        )
    counts = load_trace(path)
    return damp(counts, damping) if damping != 1 else counts


def ipa_windows_from_trace(counts: np.ndarray, name: str, damping: float = IPA_DAMPING) -> np.ndarray:
    """Cut IPA's window `name` out of a full per-second Twitter trace (needs >= 1,769,400 seconds)."""
    x = validate_counts(counts)
    parts = []
    for a, b in IPA_WINDOWS[name]:
        if b > x.size:
            raise TraceError(f"IPA's {name} window needs seconds up to {b}; the trace has {x.size}")
        parts.append(x[a:b])
    return damp(concat(parts), damping)


def _smooth_step(t: np.ndarray, t0: float, rise: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(t - t0) / max(rise / 6.0, 1e-9)))


def synthetic_rate(name: str, seconds: int = 1200, seed: int = 0, peak: float = 30.0) -> np.ndarray:
    """The expected rate (rps) of a synthetic pattern; `synthetic_pattern` draws counts around it."""
    if name not in PATTERNS:
        raise PipetuneError(f"pattern {name!r} is unknown; use one of {', '.join(PATTERNS)}")
    if seconds < 120:
        raise PipetuneError(f"seconds must be >= 120 for a pattern, got {seconds}")
    if not peak > 0:
        raise PipetuneError(f"peak must be > 0 rps, got {peak}")
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=np.float64)
    base = 0.2 * peak  # IPA's bursty/fluctuating windows sit at ~1/5 of their peak between surges
    slow = 1.0 + 0.03 * np.sin(2 * np.pi * (t / seconds + rng.uniform()))  # a slow drift, as in real traffic
    if name == "steady-low":
        return base * slow
    if name == "steady-high":
        return 0.85 * peak * slow
    surges = 1 if name == "bursty" else int(rng.integers(2, 4))
    rate = np.full(seconds, base)
    span = seconds / surges
    for k in range(surges):
        lo = k * span
        rise = rng.uniform(30, 60)
        # the surge starts and ends well inside its share of the window (the 'contained' rule)
        start = lo + rise + rng.uniform(0.1, 0.2) * span
        hold = rng.uniform(0.2, 0.3) * span
        height = (peak - base) * (1.0 if k == 0 else rng.uniform(0.7, 1.0))
        bump = _smooth_step(t, start, rise) * (1 - _smooth_step(t, start + hold, rise * 2))
        rate = np.maximum(rate, base + height * bump)
    return rate * slow


def synthetic_pattern(name: str, seconds: int = 1200, seed: int = 0, peak: float = 30.0) -> np.ndarray:
    """Seeded per-second counts of pattern `name`: Poisson draws around `synthetic_rate` (peak in rps)."""
    rate = synthetic_rate(name, seconds, seed, peak)
    rng = np.random.default_rng(np.random.SeedSequence([seed, PATTERNS.index(name)]))
    return rng.poisson(rate).astype(np.float64)
