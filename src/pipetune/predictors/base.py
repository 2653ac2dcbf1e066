"""The predictor interface (scikit-learn-like) and IPA's features.

A predictor answers one question every decision interval: how many requests per second to provision for
over the next `horizon` seconds, given the per-second counts observed so far. The target it is scored
against is IPA's: the maximum per-second count over the next `horizon` (20) seconds.

    p = SomePredictor(**params)        # hyper-parameters only, as in scikit-learn
    p.fit(series)                      # per-second counts; returns p (a no-op for predictors needing no fit)
    p.predict(history) -> float        # history: per-second counts observed so far (1-D array)

`get_params()` / `set_params()` / `clone()` follow scikit-learn. Predictors with learned state also have
`save(path)` and the class method `load(path)`; files carry metadata (kind, params, training trace, date).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from pipetune.errors import PipetuneError

HORIZON_S = 20  # IPA provisions for the max over the next 20 s
INTERVAL_S = 10  # IPA re-decides every 10 s
IPA_BLOCK_S = 10  # IPA's features: the max of each 10 s ...
IPA_LOOKBACK_S = 120  # ... over the last 120 s (12 values)


class NotFittedError(PipetuneError):
    """predict() called on a predictor that needs fit() or load() first."""


class Predictor:
    """Base class. Subclasses set `name`, take only hyper-parameters in __init__, and implement `_predict`."""

    name: ClassVar[str] = "base"
    needs_fit: ClassVar[bool] = False

    def __init__(self, horizon: int = HORIZON_S):
        self.horizon = horizon

    # -- scikit-learn conventions -------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            name
            for name, param in sig.parameters.items()
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params: Any) -> Predictor:
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise PipetuneError(f"predictor {self.name!r} has no parameter {k!r}; valid: {', '.join(valid)}")
            setattr(self, k, v)
        self.reset()
        return self

    def clone(self) -> Predictor:
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- the contract ---------------------------------------------------------------------------------
    def fit(self, series: np.ndarray) -> Predictor:
        """Learn from per-second counts. Stateless predictors only check the series."""
        as_series(series, "fit series")
        return self

    def reset(self) -> None:
        """Forget online state (a new trace starts). Learned weights are kept."""

    def predict(self, history: np.ndarray) -> float:
        """Load (rps) to provision for over the next `horizon` seconds; 0.0 for an empty history."""
        h = np.asarray(history, dtype=np.float64)
        if h.ndim != 1:
            raise PipetuneError(f"history must be a 1-D array of per-second counts, got shape {h.shape}")
        if h.size == 0:
            return 0.0
        return max(float(self._predict(h)), 0.0)

    def _predict(self, history: np.ndarray) -> float:
        raise NotImplementedError


def as_series(series: np.ndarray, what: str = "series") -> np.ndarray:
    s = np.asarray(series, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise PipetuneError(f"{what}: expected a non-empty 1-D array of per-second counts, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        i = int(np.flatnonzero(~np.isfinite(s) | (s < 0))[0])
        raise PipetuneError(f"{what}: second {i} holds {s[i]!r}; counts must be finite and >= 0")
    return s


def ipa_features(history: np.ndarray, lookback: int = IPA_LOOKBACK_S, block: int = IPA_BLOCK_S) -> np.ndarray:
    """IPA's input: the max of each `block` seconds over the last `lookback` seconds (oldest first).

    A history shorter than `lookback` is padded at the front with its first block's max (callers use the
    cold-start fallback before that point anyway)."""
    h = np.asarray(history, dtype=np.float64)[-lookback:]
    n = lookback // block
    if h.size < lookback:
        pad = h[:block].max() if h.size else 0.0
        h = np.concatenate([np.full(lookback - h.size, pad), h])
    return h.reshape(n, block).max(axis=1)


def training_pairs(
    series: np.ndarray,
    lookback: int = IPA_LOOKBACK_S,
    block: int = IPA_BLOCK_S,
    horizon: int = HORIZON_S,
    drop_zeros: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """IPA's training set: X = 12 block maxima, y = max over the next `horizon` s, one sample per block.

    Zero seconds are removed first (IPA does; in the Twitter trace they are recording gaps, not idle time)."""
    s = as_series(series, "training series")
    if drop_zeros:
        s = s[s > 0]
    n_blocks = s.size // block
    m = s[: n_blocks * block].reshape(n_blocks, block).max(axis=1)
    k = lookback // block
    f = horizon // block
    if n_blocks < k + f + 1:
        raise PipetuneError(
            f"training series too short: {s.size} non-zero seconds; need at least {(k + f + 1) * block}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(m, k + f)
    X = windows[:, :k].copy()
    y = windows[:, k:].max(axis=1)
    return X, y
