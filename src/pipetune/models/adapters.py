"""Ready adapters: a Python callable, a scikit-learn estimator, a torch module, a sentence-transformers model.

Each one is cheap to construct (nothing heavy happens before `load()`), so a profiler or a replica can build it
in the process that will run it, after `pin_threads(cores)`. Heavy libraries are imported inside `load()` for
the same reason: importing torch or numpy before the thread limits are set would fix their pool sizes.

Inputs can be given as a list (cycled to any n) or as a callable `n -> list`; labelled data as a callable
`limit -> (inputs, labels)`.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipetune.models.base import ModelAdapter

InputSource = Sequence[Any] | Callable[[int], Sequence[Any]]
LabelledSource = Callable[[int | None], tuple[list[Any], list[Any]]]


def _take(source: InputSource | None, n: int, who: str) -> list[Any]:
    if source is None:
        raise NotImplementedError(f"{who}: no sample inputs given; pass inputs= (a list or a callable n -> list)")
    if callable(source):
        out = list(source(n))
    else:
        if len(source) == 0:
            raise ValueError(f"{who}: inputs= is empty; give at least one representative input")
        out = list(itertools.islice(itertools.cycle(source), n))
    if len(out) != n:
        raise ValueError(f"{who}: the inputs callable returned {len(out)} items for n={n}")
    return out


class _Common(ModelAdapter):
    def __init__(self, inputs: InputSource | None = None, labelled: LabelledSource | None = None, name: str = ""):
        self._inputs = inputs
        self._labelled = labelled
        if name:
            self.name = name

    def sample_inputs(self, n: int) -> list[Any]:
        return _take(self._inputs, n, self.name)

    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        if self._labelled is None:
            return super().labelled_data(limit)
        xs, ys = self._labelled(limit)
        return list(xs), list(ys)

    def _require_loaded(self, attr: str) -> Any:
        obj = getattr(self, attr, None)
        if obj is None:
            raise RuntimeError(f"{self.name}: predict() called before load(); call load() once first")
        return obj


class CallableAdapter(_Common):
    """Wrap a function `fn(batch) -> outputs`. `setup()` (optional) runs in `load()` and its result is passed
    to `fn` as the first argument (for a model object you build once)."""

    name = "callable"

    def __init__(
        self,
        fn: Callable[..., Sequence[Any]],
        inputs: InputSource | None = None,
        setup: Callable[[], Any] | None = None,
        labelled: LabelledSource | None = None,
        name: str = "",
    ):
        super().__init__(inputs, labelled, name or getattr(fn, "__name__", "callable"))
        self._fn = fn
        self._setup = setup
        self._state: Any = None
        self._loaded = False

    def load(self) -> None:
        self._state = self._setup() if self._setup is not None else None
        self._loaded = True

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if not self._loaded:
            raise RuntimeError(f"{self.name}: predict() called before load(); call load() once first")
        out = self._fn(self._state, batch) if self._setup is not None else self._fn(batch)
        out = list(out)
        if len(out) != len(batch):
            raise ValueError(f"{self.name}: returned {len(out)} outputs for a batch of {len(batch)}")
        return out


class SklearnAdapter(_Common):
    """A scikit-learn estimator (anything with `predict`/`transform`): a fitted estimator, a path to a joblib
    file, or a zero-argument factory that builds (and may fit) one — the factory runs in `load()`."""

    name = "sklearn"

    def __init__(
        self,
        estimator: Any,
        inputs: InputSource | None = None,
        method: str = "predict",
        labelled: LabelledSource | None = None,
        name: str = "",
    ):
        super().__init__(inputs, labelled, name or "sklearn")
        self._source = estimator
        self.method = method
        self.estimator: Any = None

    def load(self) -> None:
        src = self._source
        if isinstance(src, (str, Path)):
            import joblib

            path = Path(src)
            if not path.exists():
                raise FileNotFoundError(f"{self.name}: estimator file {path} does not exist")
            est = joblib.load(path)
        elif callable(src) and not hasattr(src, self.method):
            est = src()
        else:
            est = src
        if not hasattr(est, self.method):
            raise TypeError(f"{self.name}: {type(est).__name__} has no method {self.method!r}")
        self.estimator = est

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        import numpy as np

        est = self._require_loaded("estimator")
        out = getattr(est, self.method)(np.asarray(batch))
        return list(out)


class TorchAdapter(_Common):
    """A torch module built by `module_factory()` in `load()`, run in eval mode under `inference_mode` on a
    batch stacked into one tensor; returns one output tensor (or `postprocess` of it) per input."""

    name = "torch"

    def __init__(
        self,
        module_factory: Callable[[], Any],
        inputs: InputSource | None = None,
        postprocess: Callable[[Any], Any] | None = None,
        labelled: LabelledSource | None = None,
        name: str = "",
    ):
        super().__init__(inputs, labelled, name or "torch")
        self._factory = module_factory
        self._post = postprocess
        self.module: Any = None

    def load(self) -> None:
        module = self._factory()
        module.eval()
        self.module = module

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        import torch

        module = self._require_loaded("module")
        x = torch.stack([torch.as_tensor(b) for b in batch])
        with torch.inference_mode():
            y = module(x)
        rows = list(y.unbind(0))
        return [self._post(r) for r in rows] if self._post else rows


class SentenceTransformerAdapter(_Common):
    """A sentence-transformers encoder loaded from a local folder (never a hub: HF_HUB_OFFLINE is forced).

    `layers` keeps only the first k transformer layers (a cheaper, less accurate variant); `quantize="int8"`
    applies torch dynamic int8 quantisation to the Linear layers. `head(embeddings) -> outputs` (optional)
    turns the (n, d) embedding array into one output per input, e.g. a classifier.
    """

    name = "sentence-transformer"

    def __init__(
        self,
        model_dir: str | Path,
        inputs: InputSource | None = None,
        layers: int | None = None,
        quantize: str | None = None,
        max_seq_length: int | None = 128,
        head: Callable[[Any], Sequence[Any]] | None = None,
        labelled: LabelledSource | None = None,
        name: str = "",
    ):
        super().__init__(inputs, labelled, name or "sentence-transformer")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize={quantize!r}; use None or 'int8'")
        if layers is not None and layers < 1:
            raise ValueError(f"layers={layers} must be >= 1")
        self.model_dir = Path(model_dir)
        self.layers = layers
        self.quantize = quantize
        self.max_seq_length = max_seq_length
        self.head = head
        self.model: Any = None

    def load(self) -> None:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"  # the model ships in a package; never reach for a hub
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"{self.name}: {self.model_dir} holds no model (config.json missing)")
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(self.model_dir), device="cpu")
        if self.max_seq_length:
            model.max_seq_length = self.max_seq_length
        if self.layers is not None:
            truncate_layers(model, self.layers)
        if self.quantize == "int8":
            import torch
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():  # eager dynamic quantisation is deprecated in favour of torchao
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.eval()
        self.model = model

    def encode(self, batch: Sequence[str]) -> Any:
        model = self._require_loaded("model")
        return model.encode(list(batch), batch_size=max(1, len(batch)), convert_to_numpy=True, show_progress_bar=False)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        emb = self.encode(batch)
        return list(self.head(emb)) if self.head else list(emb)


def truncate_layers(model: Any, k: int) -> None:
    """Keep the first k transformer layers of a sentence-transformers BERT-style model, in place."""
    auto = model[0].auto_model
    layers = auto.encoder.layer
    if k > len(layers):
        raise ValueError(f"layers={k} but the model has only {len(layers)} layers")
    auto.encoder.layer = layers[:k]
    auto.config.num_hidden_layers = k
