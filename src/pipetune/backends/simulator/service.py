"""Service-time distributions for the simulator, fitted to a profile row's mean, p50 and p99.

Choice (docs/simulator.md): a **shifted gamma** T = shift + theta * G, G ~ Gamma(k, 1). Its three parameters
are solved so that T's mean, median and 99th percentile equal the row's latency_mean_s, latency_p50_s and
latency_p99_s:

    r = (mean - p50) / (p99 - p50) = (k - med(k)) / (q99(k) - med(k))      solved for k (bisection)
    theta = (p99 - p50) / (q99(k) - med(k)),   shift = p50 - theta * med(k)

Why a gamma: the family holds the shifted exponential (k = 1: a fixed compute floor plus memoryless jitter,
which is what measured inference latencies and our synthetic profiles look like, and what the latency
model's service-variability term assumes) and tends to a normal as k grows, so both skewed and near-symmetric
rows fit with a light tail. (A shifted log-normal, tried first, matches the same three numbers only with
sigma ~ 3 for an exponential-like row: exact at p50/p99 but with an absurd tail beyond p99 — one service in
10^4 took 20x its mean, which broke the queues.)

r(k) rises to a maximum of ~0.088 near k = 0.4 and then falls; we take the root on the light-tailed side
(k >= 0.4). Where no gamma matches all three (e.g. mean < p50, measured rows with a few fast batches), the
mean and p99 are kept exactly and the median is approximated: the mean is a replica's capacity (b / mean)
and must never drift — an earlier fallback through p50 and p99 overstated resnet18's batch-8 mean by 7% and
turned a plan at 97% utilisation into an overloaded one. Fallbacks, in order: p99 <= p50 or p99 <= mean ->
deterministic at the mean; r outside the reachable range -> the nearest k; a negative shift -> no shift,
the gamma with the row's mean whose p99 matches. `fit_error` reports the remaining mismatch. `deterministic` and `exponential` exist for validation against queueing theory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from scipy.special import gammaincinv

K_PEAK = 0.4
K_MAX = 1e4


@dataclass(frozen=True)
class ServiceDist:
    """T = shift + scale * G with G ~ Gamma(shape, 1); shape = inf means deterministic (T = shift + scale)."""

    shift: float
    scale: float
    shape: float

    @property
    def deterministic(self) -> bool:
        return math.isinf(self.shape)

    @property
    def mean(self) -> float:
        return self.shift + self.scale * (1.0 if self.deterministic else self.shape)

    def quantile(self, p: float) -> float:
        if self.deterministic:
            return self.shift + self.scale
        return self.shift + self.scale * float(gammaincinv(self.shape, p))


def deterministic(mean: float) -> ServiceDist:
    return ServiceDist(0.0, mean, math.inf)


def exponential(mean: float) -> ServiceDist:
    return ServiceDist(0.0, mean, 1.0)


@lru_cache(maxsize=4096)
def _q(k: float, p: float) -> float:
    return float(gammaincinv(k, p))


def _r(k: float) -> float:
    med = _q(k, 0.5)
    return (k - med) / (_q(k, 0.99) - med)


def _bisect(f, target: float, lo: float, hi: float) -> float:
    """Root of decreasing f on [lo, hi] in log space."""
    a, b = math.log(lo), math.log(hi)
    for _ in range(60):
        m = (a + b) / 2
        if f(math.exp(m)) > target:
            a = m
        else:
            b = m
    return math.exp((a + b) / 2)


def fit_shifted_gamma(mean: float, p50: float, p99: float) -> ServiceDist:
    """The shifted gamma with this mean, median and p99; where no such gamma exists, the mean and p99 are kept
    exactly (the mean sets a replica's capacity, p99 the tail) and the median is approximated."""
    if not (mean > 0 and p50 > 0 and p99 > 0):
        raise ValueError(f"service times must be positive (mean={mean}, p50={p50}, p99={p99})")
    if p99 <= p50 * (1 + 1e-9) or p99 <= mean * (1 + 1e-9):
        return deterministic(mean)
    target = (mean - p50) / (p99 - p50)
    if target >= _r(K_PEAK):
        k = K_PEAK
    elif target <= _r(K_MAX):
        k = K_MAX
    else:
        k = _bisect(_r, target, K_PEAK, K_MAX)
    # Through the mean and p99 (identical to the three-point fit when r was reachable).
    theta = (p99 - mean) / (_q(k, 0.99) - k)
    shift = mean - theta * k
    if shift >= 0:
        return ServiceDist(shift, theta, k)
    # No shift: the gamma with this mean whose p99 matches (q99(k)/k is decreasing in k).
    ratio = p99 / mean
    k = _bisect(lambda kk: _q(kk, 0.99) / kk, ratio, 0.05, K_MAX)
    return ServiceDist(0.0, mean / k, k)


def fit_error(d: ServiceDist, mean: float, p50: float, p99: float) -> float:
    """Largest relative mismatch of mean, p50, p99 between the distribution and the row."""
    return max(abs(d.mean - mean) / mean, abs(d.quantile(0.5) - p50) / p50, abs(d.quantile(0.99) - p99) / p99)
