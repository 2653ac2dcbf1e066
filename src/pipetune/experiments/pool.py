"""Run tasks in worker processes (or in this one) with a progress bar: `run_pool`; and stop at once on Ctrl-C.

Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): the parent alone handles it, cancels
what has not started, terminates the workers and hands back the results completed so far (`Interrupted`)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed

from pipetune.experiments.tasks import Task
from pipetune.experiments.worker import run_task


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (KeyboardInterrupt) during `run_pool`; `results` holds the tasks completed before it."""

    def __init__(self, results: list[dict]):
        super().__init__()
        self.results = results


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes that leave Ctrl-C to the parent."""
    return ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)


def stop_pool(ex: Executor) -> None:
    """Stop now: tasks not started are cancelled, running workers terminated and reaped (none is left behind)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
    ex.shutdown(wait=True)


def run_pool(
    tasks: Sequence[Task],
    workers: int,
    description: str,
    progress=None,
    pool: Executor | None = None,
    on_progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run tasks in `workers` processes (1: in this process) with a rich progress bar; `pool` reuses an
    executor (worker start-up and imports are paid once per experiment). `on_progress(result)` is called after
    each task. A KeyboardInterrupt stops the pool (a shared one too) and raises `Interrupted(results so far)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    results: list[dict] = []
    if not tasks:
        return results
    own = progress is None
    prog = progress or Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )

    def done(result: dict) -> None:
        results.append(result)
        prog.advance(bar)
        if on_progress is not None:
            on_progress(result)

    if own:
        prog.start()
    ex: Executor | None = None
    futs: list[Future] = []
    collected: set[Future] = set()
    try:
        bar = prog.add_task(description, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1 and pool is None:
            for t in tasks:
                done(run_task(t))
        else:
            ex = pool or make_pool(workers)
            futs = [ex.submit(run_task, t) for t in tasks]
            for f in as_completed(futs):
                collected.add(f)
                done(f.result())
            if pool is None:
                ex.shutdown()
    except KeyboardInterrupt:
        # runs that finished while the interrupt arrived are kept too
        results += [f.result() for f in futs if f not in collected and f.done() and not f.cancelled()]
        if ex is not None:
            stop_pool(ex)
        raise Interrupted(results) from None
    except BaseException:
        if ex is not None and pool is None:
            ex.shutdown(cancel_futures=True)
        raise
    finally:
        if own:
            prog.stop()
    return results
