"""Service-time distributions for the simulator, fitted to a profile row's mean, p50 and p99.

Choice (documented in docs/simulator.md): a **shifted log-normal** T = shift + exp(mu + sigma*Z), Z ~ N(0, 1).
Its three parameters are solved so that T's mean, median and 99th percentile equal the row's
latency_mean_s, latency_p50_s and latency_p99_s exactly:

    median:  shift + e^mu                 = p50
    p99:     shift + e^(mu + z99*sigma)   = p99          z99 = 2.3263
    mean:    shift + e^(mu + sigma^2/2)   = mean

so (mean - p50) / (p99 - p50) = (e^(sigma^2/2) - 1) / (e^(z99*sigma) - 1), which is increasing in sigma and solved
by bisection. A service time is then bounded below by `shift` (the irreducible compute) and right-skewed, as
measured inference latencies are. When the row cannot be matched that way we fall back, in order:

* p99 == p50 (no spread measured): deterministic at the mean;
* mean <= p50 (not right-skewed) or the solved shift < 0: a log-normal without shift matched to p50 and p99
  (its mean then differs from the row's; we report the mismatch in `fit_error`).

`deterministic` and `exponential` families exist for validation against queueing theory (M/D/1, M/M/c).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z99 = 2.3263478740408408


@dataclass(frozen=True)
class ServiceDist:
    """T = shift + scale * exp(sigma * Z) (lognormal family), or mean * Exp(1) when `exponential`."""

    shift: float
    scale: float
    sigma: float
    exponential: bool = False

    @property
    def mean(self) -> float:
        if self.exponential:
            return self.scale
        return self.shift + self.scale * math.exp(self.sigma**2 / 2)

    def quantile(self, p: float) -> float:
        if self.exponential:
            return -self.scale * math.log(1 - p)
        from statistics import NormalDist

        return self.shift + self.scale * math.exp(self.sigma * NormalDist().inv_cdf(p))


def deterministic(mean: float) -> ServiceDist:
    return ServiceDist(0.0, mean, 0.0)


def exponential(mean: float) -> ServiceDist:
    return ServiceDist(0.0, mean, 0.0, exponential=True)


def _ratio(sigma: float) -> float:
    return math.expm1(sigma * sigma / 2) / math.expm1(Z99 * sigma)


def fit_shifted_lognormal(mean: float, p50: float, p99: float) -> ServiceDist:
    """The shifted log-normal with exactly this mean, median and p99 (or the documented fallback)."""
    if not (mean > 0 and p50 > 0 and p99 > 0):
        raise ValueError(f"service times must be positive (mean={mean}, p50={p50}, p99={p99})")
    if p99 <= p50 * (1 + 1e-9):
        return deterministic(mean)
    if mean > p50:
        target = (mean - p50) / (p99 - p50)
        lo, hi = 1e-6, 8.0
        if _ratio(hi) > target > _ratio(lo):
            for _ in range(80):
                mid = (lo + hi) / 2
                if _ratio(mid) < target:
                    lo = mid
                else:
                    hi = mid
            sigma = (lo + hi) / 2
            scale = (p99 - p50) / math.expm1(Z99 * sigma)
            shift = p50 - scale
            if shift >= 0:
                return ServiceDist(shift, scale, sigma)
    # Fallback: plain log-normal through p50 and p99.
    sigma = math.log(p99 / p50) / Z99
    return ServiceDist(0.0, p50, sigma)


def fit_error(d: ServiceDist, mean: float, p50: float, p99: float) -> float:
    """Largest relative mismatch of mean, p50, p99 between the distribution and the row."""
    return max(abs(d.mean - mean) / mean, abs(d.quantile(0.5) - p50) / p50, abs(d.quantile(0.99) - p99) / p99)
