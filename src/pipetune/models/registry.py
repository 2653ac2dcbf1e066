"""How a pipeline spec names the real model behind a variant.

A variant's `model:` mapping is

    model:
      adapter: "package.module:Name"     # a ModelAdapter subclass, or a function returning a ModelAdapter
      params: {key: value, ...}          # keyword arguments for it (optional)

e.g. `model: {adapter: "pipetune.examples.digits.models:Classifier", params: {kind: svc}}`. `Name` is imported
and called with `**params` in the process that serves or profiles the variant. A `ModelRef` is that recipe as a
small picklable object, so it can be sent to a fresh (pinned) subprocess and built there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from pipetune.errors import PipetuneError
from pipetune.models.base import ModelAdapter


class ModelSpecError(PipetuneError):
    """A variant's `model:` mapping is missing or does not name a loadable adapter."""


@dataclass(frozen=True)
class ModelRef:
    """`adapter` ("module:Name") + `params`: a picklable zero-argument factory of a ModelAdapter."""

    adapter: str
    params: dict[str, Any] = field(default_factory=dict)
    where: str = "model"  # the spec field, for error messages

    def __call__(self) -> ModelAdapter:
        target = resolve_adapter(self.adapter, self.where)
        try:
            obj = target(**self.params)
        except TypeError as e:
            raise ModelSpecError(
                f"{self.where}.params: {self.adapter} does not accept {sorted(self.params)}: {e}; "
                "fix the parameter names"
            ) from None
        if not isinstance(obj, ModelAdapter):
            raise ModelSpecError(
                f"{self.where}.adapter: {self.adapter} returned {type(obj).__name__}, not a ModelAdapter; "
                "point it at a ModelAdapter subclass or a function that returns one"
            )
        return obj

    @property
    def label(self) -> str:
        return self.adapter.rsplit(":", 1)[-1]


def resolve_adapter(path: str, where: str = "model.adapter") -> Any:
    if not isinstance(path, str) or path.count(":") != 1:
        raise ModelSpecError(f"{where}: {path!r} must look like 'package.module:Name'")
    mod_name, attr = path.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ModelSpecError(f"{where}: cannot import {mod_name!r} ({e}); install it or fix the module path") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ModelSpecError(f"{where}: module {mod_name!r} has no {attr!r}; fix the name after ':'") from None


def model_ref(spec: dict | None, where: str = "model") -> ModelRef:
    """Validate a `model:` mapping and return its ModelRef (without importing anything yet)."""
    if spec is None:
        raise ModelSpecError(
            f"{where}: this variant has no `model:` mapping, so it cannot be run or profiled; add "
            "`model: {adapter: 'package.module:Name', params: {...}}`"
        )
    if not isinstance(spec, dict):
        raise ModelSpecError(f"{where}: must be a mapping with `adapter` and optional `params`")
    unknown = sorted(set(spec) - {"adapter", "params"})
    if unknown:
        raise ModelSpecError(f"{where}: unknown key(s) {unknown}; only `adapter` and `params` are allowed")
    if "adapter" not in spec:
        raise ModelSpecError(f"{where}.adapter: is required; give 'package.module:Name'")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise ModelSpecError(f"{where}.params: must be a mapping of keyword arguments")
    adapter = spec["adapter"]
    if not isinstance(adapter, str) or adapter.count(":") != 1:
        raise ModelSpecError(f"{where}.adapter: {adapter!r} must look like 'package.module:Name'")
    return ModelRef(adapter, dict(params), where)


def variant_model_ref(pipeline: Any, stage: str, variant: str) -> ModelRef:
    """The ModelRef of `stage`/`variant` in a Pipeline; errors name the spec field."""
    st = pipeline.stage(stage)
    v = next((x for x in st.variants if x.name == variant), None)
    if v is None:
        raise ModelSpecError(f"stage {stage!r} has no variant {variant!r}; known: {[x.name for x in st.variants]}")
    return model_ref(v.model, f"stages[{stage}].variants[{variant}].model")


def load_adapter(pipeline: Any, stage: str, variant: str) -> ModelAdapter:
    """Build and load the adapter of one variant in this process (threads are NOT pinned here)."""
    adapter = variant_model_ref(pipeline, stage, variant)()
    adapter.load()
    return adapter
