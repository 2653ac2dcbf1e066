"""The profiler: measure real models per (variant, batch, cores) and write ProfileTables.

* `profile_variant(factory, batch, cores)` / `measure_variant(factory, batches, cores)` — one model, in a fresh
  subprocess pinned to `cores` CPUs (see `pipetune.profiler.measure`).
* `profile_pipeline(pipeline, ...)` — every variant with a `model:` mapping, resumable, with progress and plots.
* `measure_accuracy(pipeline, ...)` — every variant's accuracy on its labelled data.

Names are imported lazily so that `python -m pipetune.profiler.worker` starts without numpy (the worker pins
its CPUs and thread pools before any math library loads).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Measurement": "pipetune.profiler.measure",
    "ProfilingError": "pipetune.profiler.measure",
    "measure_variant": "pipetune.profiler.measure",
    "profile_variant": "pipetune.profiler.measure",
    "choose_cpus": "pipetune.profiler.measure",
    "profile_pipeline": "pipetune.profiler.pipeline",
    "ProfileReport": "pipetune.profiler.pipeline",
    "plot_profile": "pipetune.profiler.plots",
    "measure_accuracy": "pipetune.profiler.accuracy",
    "write_accuracies": "pipetune.profiler.accuracy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipetune.profiler' has no attribute {name!r}")
