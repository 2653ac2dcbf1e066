"""Predictors that need no fitting: reactive (last value), window max, moving average, EWMA."""

from __future__ import annotations

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.predictors.base import HORIZON_S, Predictor


class Reactive(Predictor):
    """The last observed second's count (the 'reactive' baseline of IPA's ablation)."""

    name = "reactive"

    def _predict(self, history: np.ndarray) -> float:
        return float(history[-1])


class WindowMax(Predictor):
    """The max per-second count over the last `window` seconds (IPA's cold-start fallback, window = 120)."""

    name = "max"

    def __init__(self, window: int = 120, horizon: int = HORIZON_S):
        super().__init__(horizon)
        if window < 1:
            raise PipetuneError(f"max predictor: window must be >= 1 second, got {window}")
        self.window = window

    def _predict(self, history: np.ndarray) -> float:
        return float(history[-self.window :].max())


class MovingAverage(Predictor):
    """The mean of the last `window` seconds."""

    name = "moving-average"

    def __init__(self, window: int = 30, horizon: int = HORIZON_S):
        super().__init__(horizon)
        if window < 1:
            raise PipetuneError(f"moving-average predictor: window must be >= 1 second, got {window}")
        self.window = window

    def _predict(self, history: np.ndarray) -> float:
        return float(history[-self.window :].mean())


class EWMA(Predictor):
    """Exponentially weighted mean with smoothing `alpha` (weight of the newest second), over `window` s."""

    name = "ewma"

    def __init__(self, alpha: float = 0.1, window: int = 300, horizon: int = HORIZON_S):
        super().__init__(horizon)
        if not 0 < alpha <= 1:
            raise PipetuneError(f"ewma predictor: alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.window = window

    def _predict(self, history: np.ndarray) -> float:
        h = history[-self.window :]
        w = (1 - self.alpha) ** np.arange(h.size - 1, -1, -1)
        return float(np.dot(w, h) / w.sum())
