"""The load generator (`pipetune loadtest`): open-loop async HTTP load in the Open Inference Protocol (V2).

Arrivals come from `pipetune.workloads` (a trace file or a built-in pattern); bodies from the pipeline's example
data or the server's metadata; outputs are a strict-JSON summary, a per-second timeline CSV, per-request
records and a plot. `echo` is a trivial V2 server to measure the generator against (`bench_loadgen`).
"""

from typing import Any

from pipetune.loadgen.loadtest import Endpoint, loadtest, parse_url
from pipetune.loadgen.runner import Records, RunOptions, run
from pipetune.loadgen.schedule import LoadgenError, Plan, make_plan, workload_counts
from pipetune.metrics import OUTCOMES

__all__ = [
    "OUTCOMES",
    "Endpoint",
    "LoadgenError",
    "Plan",
    "Records",
    "RunOptions",
    "bench_loadgen",
    "loadtest",
    "make_plan",
    "parse_url",
    "run",
    "workload_counts",
]


def __getattr__(name: str) -> Any:
    # lazily, so that `python -m pipetune.loadgen.echo` does not find its module already imported by the package
    if name == "bench_loadgen":
        from pipetune.loadgen.bench import bench_loadgen

        return bench_loadgen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
