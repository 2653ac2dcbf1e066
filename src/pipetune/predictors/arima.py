"""ARIMA on IPA's 10-s maxima (statsmodels).

The series is the max of each 10 s; ARIMA(`order`) forecasts the next horizon/10 blocks and the prediction
is the largest of them. Estimating the parameters takes ~0.1 s, so they are re-estimated only every
`refit_every` seconds of history (on the last `lookback` seconds); in between, the fitted parameters are
applied to the newest blocks by the ARMA recursion (conditional residuals, then the forecast), which takes
microseconds where rebuilding a statsmodels model takes ~0.1 s. Between estimates only the AR/MA
coefficients are kept; the process mean is the mean of the current lookback. `fit(series)` estimates them once on a
training series instead, and then they stay fixed. Before `min_history` seconds, or if estimation fails,
the 120-s window max is used (IPA's fallback).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.predictors.base import HORIZON_S, IPA_BLOCK_S, Predictor, as_series


def _blocks(x: np.ndarray) -> np.ndarray:
    n = x.size // IPA_BLOCK_S
    return x[x.size - n * IPA_BLOCK_S :].reshape(n, IPA_BLOCK_S).max(axis=1)


class ARIMAParams(NamedTuple):
    """What an estimate keeps: the constant and the AR/MA coefficients of the d-times differenced blocks."""

    mean: float
    ar: np.ndarray
    ma: np.ndarray


class ARIMAPredictor(Predictor):
    name = "arima"

    def __init__(
        self,
        order: tuple[int, int, int] = (1, 1, 0),
        lookback: int = 600,
        refit_every: int = 600,
        min_history: int = 300,
        horizon: int = HORIZON_S,
    ):
        super().__init__(horizon)
        if lookback < 10 * IPA_BLOCK_S:
            raise PipetuneError(f"arima: lookback must be >= {10 * IPA_BLOCK_S} s, got {lookback}")
        self.order = tuple(order)
        self.lookback = lookback
        self.refit_every = refit_every
        self.min_history = min_history
        self.params_: ARIMAParams | None = None
        self._frozen = False
        self._fitted_at = -(10**9)

    def reset(self) -> None:
        if not self._frozen:
            self.params_ = None
            self._fitted_at = -(10**9)

    def _estimate(self, blocks: np.ndarray) -> ARIMAParams:
        """(mean, AR coefficients, MA coefficients) of the d-times differenced blocks, by statsmodels."""
        from statsmodels.tsa.arima.model import ARIMA

        p, d, q = self.order
        y = np.diff(blocks, n=d) if d else blocks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ARIMA(y, order=(p, 0, q), trend="c").fit()
        names = list(res.model.param_names)
        params = np.asarray(res.params)
        mean = float(params[names.index("const")]) if "const" in names else 0.0
        return ARIMAParams(mean, np.asarray(res.arparams, dtype=float), np.asarray(res.maparams, dtype=float))

    def _forecast(self, blocks: np.ndarray, steps: int) -> np.ndarray:
        if self.params_ is None:
            raise PipetuneError("arima: no parameters estimated yet; fit(series) or predict on enough history first")
        _, ar, ma = self.params_
        d = self.order[1]
        y = np.diff(blocks, n=d) if d else blocks
        # The level is re-read from the current lookback at every call (the fitted constant is as old as
        # the last estimate, and a surge moves the level within seconds); the AR/MA shape is kept.
        mean = float(y.mean())
        y = y - mean
        p, q = ar.size, ma.size
        eps = np.zeros(y.size)
        for t in range(y.size):  # conditional residuals (pre-sample values taken as 0)
            pred = sum(ar[i] * y[t - 1 - i] for i in range(p) if t - 1 - i >= 0)
            pred += sum(ma[j] * eps[t - 1 - j] for j in range(q) if t - 1 - j >= 0)
            eps[t] = y[t] - pred
        hist: list[float] = list(y)
        errs: list[float] = list(eps)
        out: list[float] = []
        for _ in range(steps):
            nxt = sum(ar[i] * hist[-1 - i] for i in range(p)) + sum(ma[j] * errs[-1 - j] for j in range(q))
            hist.append(nxt)
            errs.append(0.0)
            out.append(nxt + mean)
        fc = np.asarray(out)
        for _ in range(d):  # integrate the differences back onto the last observed level
            fc = blocks[-1] + np.cumsum(fc)
        return fc

    def fit(self, series: np.ndarray) -> ARIMAPredictor:
        s = as_series(series)
        s = s[s > 0]
        blocks = _blocks(s)
        if blocks.size < 20:
            raise PipetuneError(f"arima: fit series too short ({s.size} non-zero s); need >= {20 * IPA_BLOCK_S}")
        self.params_ = self._estimate(blocks[-5000:])
        self._frozen = True
        return self

    def _predict(self, history: np.ndarray) -> float:
        fallback = float(history[-120:].max())
        if history.size < self.min_history:
            return fallback
        blocks = _blocks(history[-self.lookback :])
        if np.ptp(blocks) == 0:
            return float(blocks[-1])
        try:
            if not self._frozen and history.size - self._fitted_at >= self.refit_every:
                self.params_ = self._estimate(blocks)
                self._fitted_at = history.size
            fc = self._forecast(blocks, max(1, self.horizon // IPA_BLOCK_S))
        except (ValueError, np.linalg.LinAlgError):
            return fallback
        if not np.all(np.isfinite(fc)):
            return fallback
        return float(fc.max())
