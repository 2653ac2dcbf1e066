"""IPA's LSTM predictor (torch), and its quantile twin.

IPA's configuration (ipa.yaml `predictor.lstm`): input = the max of each 10 s over the last 120 s (12 values),
LSTM(25 units, ReLU, L1 1e-5) -> Dense(1), target = the max over the next 20 s, MSE, Adam, 30 epochs,
batch 64, trained on days 0-14 with zero seconds removed; before 120 s of history the `max` predictor is used.

One deviation, so one model serves any trace scale: inputs and target are divided by the mean of the 12
inputs (and the output multiplied back). A model trained on the raw Twitter counts then predicts a trace
damped by 8 exactly as it would the raw one scaled down.

`quantile-lstm` is the same network trained with the pinball loss at `quantile` (default 0.95) instead of
MSE: it learns a high quantile of the next 20-s max, not its mean, since under-provisioning costs SLA
violations and over-provisioning only cores.

Saved files (`.pt`) hold the weights plus metadata: kind, params, training trace, samples, epochs, loss,
date, torch version. `load()` checks the kind.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.predictors.base import (
    HORIZON_S,
    IPA_BLOCK_S,
    IPA_LOOKBACK_S,
    NotFittedError,
    Predictor,
    as_series,
    ipa_features,
    training_pairs,
)

if TYPE_CHECKING:
    from pipetune.predictors._lstm_net import IPANet

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def _torch():
    try:
        import torch
    except ImportError:  # torch is in the [ml] extra
        raise PipetuneError("the LSTM predictors need torch: pip install 'pipetune[ml]'") from None
    return torch


def _build_net(hidden: int) -> IPANet:
    _torch()  # the clear error where torch is missing
    from pipetune.predictors._lstm_net import IPANet

    return IPANet(hidden)


class IPALSTM(Predictor):
    name = "lstm"
    needs_fit = True
    loss_name = "mse"

    def __init__(
        self,
        hidden: int = 25,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        l1: float = 1e-5,
        quantile: float | None = None,
        seed: int = 0,
        fallback_window: int = IPA_LOOKBACK_S,
        horizon: int = HORIZON_S,
    ):
        super().__init__(horizon)
        if quantile is not None and not 0 < quantile < 1:
            raise PipetuneError(f"{self.name}: quantile must be in (0, 1), got {quantile}")
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l1 = l1
        self.quantile = quantile
        self.seed = seed
        self.fallback_window = fallback_window
        self.net_: IPANet | None = None
        self.metadata_: dict[str, Any] = {}

    # -- training -----------------------------------------------------------------------------------
    def fit(
        self,
        series: np.ndarray,
        progress: Callable[[int, int, float], None] | None = None,
        source: str = "array",
        max_samples: int | None = None,
        time_budget_s: float | None = None,
    ) -> IPALSTM:
        """Train on per-second counts. `progress(epoch, epochs, loss)` is called after each epoch.

        With `time_budget_s`, training stops after the epoch that would overrun it (the metadata records
        how many epochs ran), so a shared machine cannot turn a 3-minute job into a 15-minute one."""
        import time

        torch = _torch()
        started = time.perf_counter()
        X, y = training_pairs(as_series(series), horizon=self.horizon)
        scale = X.mean(axis=1, keepdims=True)
        keep = scale[:, 0] > 0
        X, y, scale = X[keep] / scale[keep], y[keep] / scale[keep, 0], scale[keep]
        rng = np.random.default_rng(self.seed)
        if max_samples is not None and X.shape[0] > max_samples:
            pick = np.sort(rng.choice(X.shape[0], max_samples, replace=False))
            X, y = X[pick], y[pick]
        torch.manual_seed(self.seed)
        net = _build_net(self.hidden)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        Xt = torch.tensor(X, dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.float32)
        n = Xt.shape[0]
        last = float("nan")
        epochs_done = 0
        for epoch in range(self.epochs):
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for i in range(0, n, self.batch_size):
                idx = order[i : i + self.batch_size]
                pred = net(Xt[idx])
                err = yt[idx] - pred
                if self.quantile is None:
                    loss = (err * err).mean()
                else:  # pinball: under-predictions weigh q, over-predictions 1 - q
                    loss = torch.maximum(self.quantile * err, (self.quantile - 1) * err).mean()
                if self.l1:
                    loss = loss + self.l1 * sum(p.abs().sum() for p in net.lstm.parameters())
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * idx.numel()
            last = total / n
            epochs_done = epoch + 1
            if progress is not None:
                progress(epoch + 1, self.epochs, last)
            spent = time.perf_counter() - started
            if time_budget_s is not None and spent * (epoch + 2) / (epoch + 1) > time_budget_s:
                break  # the next epoch would overrun the budget
        net.eval()
        self.net_ = net
        self.metadata_ = {
            "kind": self.name,
            "params": self.get_params(),
            "trained_on": source,
            "samples": int(n),
            "epochs_run": epochs_done,
            "train_seconds": round(time.perf_counter() - started, 1),
            "final_loss": last,
            "loss": "pinball" if self.quantile is not None else "mse",
            "features": f"max of each {IPA_BLOCK_S} s over the last {IPA_LOOKBACK_S} s, divided by their mean",
            "target": f"max over the next {self.horizon} s",
            "trained_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "torch": str(_torch().__version__),
        }
        return self

    # -- inference ----------------------------------------------------------------------------------
    def _predict(self, history: np.ndarray) -> float:
        if self.net_ is None:
            raise NotFittedError(
                f"{self.name} predictor is not trained: call fit(series), or load a model with "
                f"make_predictor({self.name!r}, model='model.pt') (train one with `pipetune predictor train`)"
            )
        if history.size < IPA_LOOKBACK_S:
            return float(history[-self.fallback_window :].max())  # IPA's cold start: the max predictor
        torch = _torch()
        f = ipa_features(history)
        scale = f.mean()
        if scale <= 0:
            return 0.0
        with torch.no_grad():
            out = self.net_(torch.from_numpy((f / scale).astype(np.float32))[None, :])
        return float(out[0]) * scale

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        if self.net_ is None:
            raise NotFittedError(f"{self.name}: nothing to save; fit the predictor first")
        torch = _torch()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"metadata": self.metadata_, "state_dict": self.net_.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> IPALSTM:
        torch = _torch()
        path = Path(path)
        if not path.exists():
            raise PipetuneError(f"model file {path} does not exist; train one with `pipetune predictor train`")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta = blob["metadata"]
            state = blob["state_dict"]
        except Exception as e:  # a file that is not ours
            raise PipetuneError(f"{path}: not a pipetune predictor model ({type(e).__name__}: {e})") from None
        kind = meta.get("kind")
        if kind not in (IPALSTM.name, QuantileLSTM.name):
            raise PipetuneError(f"{path}: holds a {kind!r} model, not an LSTM predictor")
        klass = QuantileLSTM if kind == QuantileLSTM.name else IPALSTM
        if cls is not IPALSTM and klass is not cls:
            raise PipetuneError(f"{path}: holds a {kind!r} model, expected {cls.name!r}")
        p = klass(**meta["params"])
        p.net_ = _build_net(p.hidden)
        p.net_.load_state_dict(state)
        p.net_.eval()
        p.metadata_ = meta
        return p


class QuantileLSTM(IPALSTM):
    name = "quantile-lstm"

    def __init__(
        self,
        hidden: int = 25,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        l1: float = 1e-5,
        quantile: float | None = 0.95,
        seed: int = 0,
        fallback_window: int = IPA_LOOKBACK_S,
        horizon: int = HORIZON_S,
    ):
        super().__init__(hidden, epochs, batch_size, lr, l1, quantile, seed, fallback_window, horizon)


def pretrained_path(kind: str) -> Path:
    return PRETRAINED_DIR / f"{kind}.pt"
