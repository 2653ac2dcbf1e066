"""pipetune: serve multi-model inference pipelines and keep re-configuring them under an end-to-end SLA.

import pipetune
p = pipetune.load_pipeline("pipeline.yaml")
plan = pipetune.plan(p, rps=30)            # Plan, or Infeasible with a fallback
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError, SolverError, SpecError
from pipetune.spec import Pipeline, example_path, load_pipeline

if TYPE_CHECKING:
    from pipetune.optimizer.plan import Infeasible, Plan

__all__ = [
    "PipetuneError",
    "SolverError",
    "Plan",
    "Infeasible",
    "StageConfig",
    "Pipeline",
    "SpecError",
    "load_pipeline",
    "plan",
    "example_path",
]
__version__ = "0.1.0"


def plan(pipeline, rps: float, policy: str = "ipa", current=None, **params):
    """Decide per stage (variant, batch, cores, replicas) at `rps`; see `pipetune.optimizer.plan_pipeline`."""
    from pipetune.optimizer import plan_pipeline

    if not isinstance(pipeline, Pipeline):
        pipeline = load_pipeline(pipeline)
    return plan_pipeline(pipeline, rps, policy=policy, current=current, **params)


def __getattr__(name: str):
    # Plan and Infeasible load on first use, so that `import pipetune` does not pull in the solver (scipy, HiGHS).
    if name in ("Plan", "Infeasible"):
        from pipetune.optimizer import plan as _plan_module

        return getattr(_plan_module, name)
    raise AttributeError(f"module 'pipetune' has no attribute {name!r}")
