"""Run tasks in worker processes (or in this one) with a progress bar: `run_pool`."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from pipetune.experiments.tasks import Task
from pipetune.experiments.worker import run_task


def run_pool(tasks: Sequence[Task], workers: int, description: str, progress=None, pool=None) -> list[dict]:
    """Run tasks in `workers` processes (1: in this process) with a rich progress bar; `pool` reuses an
    executor (worker start-up and imports are paid once per experiment)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: list[dict] = []
    if not tasks:
        return results
    own = progress is None
    prog = progress or Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )
    if own:
        prog.start()
    try:
        bar = prog.add_task(description, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1 and pool is None:
            for t in tasks:
                results.append(run_task(t))
                prog.advance(bar)
        else:
            ex = pool or ProcessPoolExecutor(max_workers=workers)
            try:
                futs = [ex.submit(run_task, t) for t in tasks]
                for f in as_completed(futs):
                    results.append(f.result())
                    prog.advance(bar)
            finally:
                if pool is None:
                    ex.shutdown()
    finally:
        if own:
            prog.stop()
    return results
