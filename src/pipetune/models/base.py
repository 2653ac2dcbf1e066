"""The interface a user implements to bring a model (modelled on MLServer's load/predict runtime).

A `ModelAdapter` is constructed cheaply (no weights yet), then `load()` is called once in the process that will
serve it, after `pin_threads(cores)` has limited the math libraries to the cores the replica gets. `predict()`
takes a batch (a list of inputs) and returns one output per input. `sample_inputs(n)` returns n representative
inputs for profiling and smoke tests.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class ModelAdapter(ABC):
    """Bring a model to pipetune: implement `load`, `predict` and `sample_inputs`."""

    #: a short name, used in reports
    name: str = "model"

    @abstractmethod
    def load(self) -> None:
        """Load weights / build the model. Called once per replica, after threads are pinned."""

    @abstractmethod
    def predict(self, batch: Sequence[Any]) -> list[Any]:
        """Run the model on a batch; return exactly one output per input, in order."""

    @abstractmethod
    def sample_inputs(self, n: int) -> list[Any]:
        """n representative inputs (deterministic), for profiling."""

    # ---- optional: accuracy measurement (`pipetune accuracy`) ---------------------------------------------
    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        """Held-out (inputs, labels) this variant's accuracy is measured on; `limit` keeps the first n.

        Optional: adapters without labelled data simply cannot be scored by `pipetune accuracy`.
        """
        raise NotImplementedError(f"{type(self).__name__} has no labelled data; implement labelled_data()")

    def score(self, outputs: Sequence[Any], labels: Sequence[Any]) -> float:
        """Accuracy in [0, 1] of `outputs` against `labels` (default: the fraction exactly equal)."""
        if len(outputs) != len(labels):
            raise ValueError(f"{len(outputs)} outputs for {len(labels)} labels")
        if not labels:
            raise ValueError("no labelled examples to score")
        return sum(1 for o, y in zip(outputs, labels) if o == y) / len(labels)


def pin_threads(cores: int) -> None:
    """Limit every math library in this process to `cores` threads (call before loading the model).

    The environment variables reach libraries that read them at start-up (OpenMP, MKL, OpenBLAS, and torch,
    which sizes its pool from OMP_NUM_THREADS when first imported). Libraries already imported are told
    directly. torch is not imported here: that would add seconds and ~150 MB to every non-torch model.
    """
    if cores < 1:
        raise ValueError(f"cores={cores} must be >= 1")
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(cores)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cores)
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(cores)
        except ImportError:
            pass
