"""`adaptive-quantile`: the default predictor. A level + trend + noise forecast of the 20-s max, with its
safety margin calibrated online so that under-predictions stay near a target rate `alpha`.

Why this shape: what the adapter must provision for is the *maximum* per-second load of the next 20 s.
For a load at level L with per-second noise sigma, that max sits a few sigma above L, plus whatever a rising
trend adds. So

    base  = mean(last `level_window` s) + max(slope, 0) * (horizon + level_window) / 2
    sigma = sqrt(mean(diff(last `noise_window` s)^2) / 2)      (differences cancel the level and slow trends)
    predict = base + z * sigma

The slope is a least-squares fit over the last `noise_window` seconds; only rises are extrapolated (a falling
load is met by the margin, and under-provisioning is the expensive error). `z` starts at `z0` and is
adjusted online by adaptive conformal inference (Gibbs & Candes, 2021): after each decision whose 20-s
outcome is known, z += gamma * (1[realised > predicted] - alpha). In the long run the share of
under-predictions converges to alpha whatever the trace, and z rises quickly after a miss, e.g. in a surge.

The state is a deterministic function of the history: decisions are replayed on a fixed internal grid (every
`interval` s of the history), not at the times predict() happens to be called, and a history that is not an
extension of the last one restarts the calibration. No pre-trained file: the only constants are the
hyper-parameters below, chosen on 40 random 20-min windows of the 14-day training trace (days 0-14; IPA's
paper windows lie after day 15 and were not used to choose them).
"""

from __future__ import annotations

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.predictors.base import HORIZON_S, INTERVAL_S, Predictor


class AdaptiveQuantile(Predictor):
    name = "adaptive-quantile"

    def __init__(
        self,
        alpha: float = 0.05,
        z0: float = 3.0,
        gamma: float = 0.1,
        level_window: int = 30,
        noise_window: int = 60,
        trend: bool = True,
        interval: int = INTERVAL_S,
        calibration_s: int = 3600,
        horizon: int = HORIZON_S,
    ):
        super().__init__(horizon)
        if not 0 < alpha < 1:
            raise PipetuneError(
                f"adaptive-quantile: alpha (target under-prediction rate) must be in (0, 1), got {alpha}"
            )
        if gamma < 0:
            raise PipetuneError(f"adaptive-quantile: gamma (calibration step) must be >= 0, got {gamma}")
        if level_window < 1 or noise_window < 3 or interval < 1:
            raise PipetuneError("adaptive-quantile: level_window >= 1, noise_window >= 3 and interval >= 1 seconds")
        self.alpha = alpha
        self.z0 = z0
        self.gamma = gamma
        self.level_window = level_window
        self.noise_window = noise_window
        self.trend = trend
        self.interval = interval
        self.calibration_s = calibration_s
        self.reset()

    def reset(self) -> None:
        self.z_ = float(self.z0)
        self._pending: list[tuple[int, float]] = []  # (decision second, prediction) awaiting its outcome
        self._next_grid = self.interval  # next grid second to replay a decision at
        self._seen = 0  # length of the history seen last
        self._last_value = np.nan  # its last value, to tell an extension from a new trace
        self.misses_ = 0
        self.decisions_ = 0

    def base_and_sigma(self, history: np.ndarray) -> tuple[float, float]:
        """The forecast's centre and the per-second noise, from the history alone."""
        h = history
        level = float(h[-self.level_window :].mean())
        w = h[-self.noise_window :]
        if w.size >= 3:
            d = np.diff(w)
            sigma = float(np.sqrt(np.dot(d, d) / (2 * d.size)))
        else:
            sigma = 0.0
        # Floor: a perfectly flat history still has some noise ahead (5% of the level, or 1 request).
        sigma = max(sigma, 0.05 * level, 1e-9 if level > 0 else 0.0)
        base = level
        if self.trend and w.size >= 20:
            k = np.arange(w.size, dtype=np.float64)
            k -= k.mean()
            slope = float(np.dot(k, w) / np.dot(k, k))
            if slope > 0:
                base += slope * (self.horizon + min(self.level_window, h.size)) / 2.0
        return base, sigma

    def _forecast(self, history: np.ndarray) -> float:
        base, sigma = self.base_and_sigma(history)
        return base + self.z_ * sigma

    def _settle(self, h: np.ndarray, now: int) -> None:
        """Score every pending decision whose horizon has passed by second `now`; adapt z."""
        if not self._pending:
            return
        keep = []
        for t0, pred in self._pending:
            if t0 + self.horizon <= now:
                realised = float(h[t0 : t0 + self.horizon].max())
                miss = 1.0 if realised > pred else 0.0
                self.misses_ += int(miss)
                self.decisions_ += 1
                self.z_ = float(np.clip(self.z_ + self.gamma * (miss - self.alpha), 0.0, 10.0))
            else:
                keep.append((t0, pred))
        self._pending = keep

    def _predict(self, history: np.ndarray) -> float:
        n = history.size
        if n < self._seen or (self._seen and history[self._seen - 1] != self._last_value):
            self.reset()  # not an extension of what we saw: a new trace
        if self._next_grid < n - self.calibration_s:
            # A long history seen for the first time: calibrate on its recent part only (bounded cost).
            self._next_grid = (n - self.calibration_s) // self.interval * self.interval
        while self._next_grid <= n:
            g = self._next_grid
            self._settle(history, g)
            self._pending.append((g, self._forecast(history[:g])))
            self._next_grid += self.interval
        self._settle(history, n)
        self._seen, self._last_value = n, float(history[-1])
        if n < 3:
            return float(history.max()) * 1.5  # cold start: nothing to estimate noise from yet
        return self._forecast(history)
