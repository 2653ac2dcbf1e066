"""Model adapters: the interface (`ModelAdapter`, `pin_threads`), ready adapters, and the spec's `model:` recipe."""

from pipetune.models.adapters import CallableAdapter, SentenceTransformerAdapter, SklearnAdapter, TorchAdapter
from pipetune.models.base import ModelAdapter, pin_threads
from pipetune.models.registry import ModelRef, ModelSpecError, load_adapter, model_ref, variant_model_ref

__all__ = [
    "CallableAdapter",
    "ModelAdapter",
    "ModelRef",
    "ModelSpecError",
    "SentenceTransformerAdapter",
    "SklearnAdapter",
    "TorchAdapter",
    "load_adapter",
    "model_ref",
    "pin_threads",
    "variant_model_ref",
]
