"""Load predictors: how many requests per second to provision for over the next decision horizon.

from pipetune.predictors import make_predictor, DEFAULT_PREDICTOR
p = make_predictor("default")          # adaptive-quantile: no pre-trained file, calibrates online
p.fit(series)                          # optional for predictors that need no fitting
p.predict(history) -> float            # per-second counts so far -> rps for the next 20 s
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipetune.errors import PipetuneError
from pipetune.predictors.adaptive import AdaptiveQuantile
from pipetune.predictors.arima import ARIMAPredictor
from pipetune.predictors.base import (
    HORIZON_S,
    INTERVAL_S,
    NotFittedError,
    Predictor,
    ipa_features,
    training_pairs,
)
from pipetune.predictors.lstm import IPALSTM, QuantileLSTM, pretrained_path
from pipetune.predictors.simple import EWMA, MovingAverage, Reactive, WindowMax

PREDICTORS: dict[str, type[Predictor]] = {
    c.name: c
    for c in (Reactive, WindowMax, MovingAverage, EWMA, ARIMAPredictor, IPALSTM, QuantileLSTM, AdaptiveQuantile)
}
DEFAULT_PREDICTOR = AdaptiveQuantile.name


def make_predictor(
    name: str = "default", model: str | Path | None = None, pretrained: bool = False, **params: Any
) -> Predictor:
    """A predictor by name ("default" = adaptive-quantile) with hyper-parameters `params`.

    For the LSTM kinds, `model=` loads a trained file and `pretrained=True` the one shipped with pipetune."""
    if name == "default":
        name = DEFAULT_PREDICTOR
    if name not in PREDICTORS:
        raise PipetuneError(f"predictor {name!r} is unknown; use one of default, {', '.join(PREDICTORS)}")
    cls = PREDICTORS[name]
    if model is not None or pretrained:
        if not issubclass(cls, IPALSTM):
            raise PipetuneError(
                f"predictor {name!r} has no trained model file; model= applies to lstm and quantile-lstm"
            )
        path = Path(model) if model is not None else pretrained_path(name)
        if model is None and not path.exists():
            raise PipetuneError(f"no pre-trained {name} shipped at {path}; train one with `pipetune predictor train`")
        p = cls.load(path)
        if p.name != name:
            raise PipetuneError(f"{path} holds a {p.name!r} model, not {name!r}")
        return p
    try:
        return cls(**params)
    except TypeError as e:
        valid = ", ".join(cls._param_names())
        raise PipetuneError(f"predictor {name!r}: bad parameters {sorted(params)} ({e}); valid: {valid}") from None


__all__ = [
    "Predictor",
    "NotFittedError",
    "make_predictor",
    "PREDICTORS",
    "DEFAULT_PREDICTOR",
    "HORIZON_S",
    "INTERVAL_S",
    "Reactive",
    "WindowMax",
    "MovingAverage",
    "EWMA",
    "ARIMAPredictor",
    "IPALSTM",
    "QuantileLSTM",
    "AdaptiveQuantile",
    "ipa_features",
    "training_pairs",
]
