"""Profile every variant of a pipeline that names a real model, into its ProfileTable(s). Resumable.

For each (stage, variant, cores) one measuring subprocess loads the model once and measures every batch size
not yet in the table. The table is rewritten after every cell, so an interrupted run loses at most the cell in
flight, and re-running skips what is there (`force=True` re-measures). A variant that fails to load or run is
reported and skipped; the others go on.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipetune.errors import PipetuneError
from pipetune.models.registry import ModelSpecError, variant_model_ref
from pipetune.profiler.measure import Measurement, measure_variant
from pipetune.profiles import ProfileTable

METHOD_HEADER = [
    "MEASURED by `pipetune profile` (pipetune.profiler): each (variant, cores) runs in a fresh subprocess pinned to",
    "`cores` CPUs (sched_setaffinity + OMP/MKL/OpenBLAS/torch thread limits); after a warm-up, back-to-back batches",
    "are timed: latency_* = per-batch wall time (mean, p50, p99); throughput_rps = items / wall time with the model",
    "kept busy (saturation, one replica); load_time_s = construct + load(); memory_mb = peak resident memory",
    "(VmHWM: the Python runtime, the libraries the model imports, the model). One dated line per run follows;",
    "a later run's measurements replace earlier ones of the same (variant, batch, cores).",
]

DEFAULT_CELL_BUDGET_S = 2.0


@dataclass
class ProfileReport:
    measured: list[tuple[str, Measurement]] = field(default_factory=list)  # (stage, cell)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, variant, reason): nothing to do
    failed: list[tuple[str, str, int, str]] = field(default_factory=list)  # (stage, variant, cores, message)
    files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    elapsed_s: float = 0.0
    out_of_budget: list[tuple[str, str, int, list[int]]] = field(default_factory=list)
    refused: list[tuple[str, Measurement]] = field(default_factory=list)  # flagged cells not written (refuse=True)

    def flagged(self) -> list[tuple[str, Measurement]]:
        return [(s, m) for s, m in self.measured if m.flags] + self.refused

    @property
    def ok(self) -> bool:
        return not self.failed


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    cpu = cpu_name()
    try:  # the version only: importing torch here would bloat this process for nothing
        from importlib.metadata import version

        tv = f", torch {version('torch')}"
    except Exception:  # noqa: BLE001
        tv = ""
    return (
        f"machine: {socket.gethostname()}, {cpu}, {len(_cpus())} CPU(s) usable, Python {platform.python_version()}{tv}"
    )


def _cpus() -> list[int]:
    from pipetune.profiler.measure import available_cpus

    return available_cpus()


def parse_budget(text: str | float | int | None) -> float | None:
    """'20m', '90s', '1h', '1.5m' or a number of seconds -> seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        return float(text)
    t = text.strip().lower()
    mult = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        if t[-1] in mult:
            v = float(t[:-1]) * mult[t[-1]]
        else:
            v = float(t)
    except (ValueError, IndexError):
        raise PipetuneError(f"--budget {text!r}: write a duration such as 90s, 20m or 1h") from None
    if v <= 0:
        raise PipetuneError(f"--budget {text!r} must be positive")
    return v


# A header line an earlier run wrote: its dated lines, its flags and refusals, and a note on runs before it.
_EARLIER_RUN = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? UTC:|flagged |refused |\(earlier runs )")


def _update_header(table: ProfileTable, stamp: str, run_id: str) -> None:
    keep = [
        h for h in table.header if h not in METHOD_HEADER and not h.startswith("machine: ") and not h.startswith(run_id)
    ]
    # Each run adds one dated line; the method text and the machine line are kept once, at the top.
    table.header = METHOD_HEADER + [machine_line()] + keep + [stamp]


def profile_pipeline(
    pipeline: Any,
    *,
    stages: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    batches: Sequence[int] | None = None,
    cores: Sequence[int] | None = None,
    budget_s: float | None = None,
    cell_budget_s: float | None = None,
    min_batches: int = 100,
    force: bool = False,
    out: str | Path | None = None,
    plot: bool = True,
    console: Console | None = None,
    progress: bool = True,
    refuse_unclean: bool = False,
    max_wait_share: float = 0.10,
    retries: int = 2,
) -> ProfileReport:
    """Measure the missing (variant, batch, cores) cells of `pipeline` and write them to its profile file(s).

    batches/cores default to each stage's options (`batch_sizes`/`cores` of the stage or the pipeline's caps),
    cores limited to the CPUs present. `budget_s` is the whole run's time budget: it sets the per-cell budget
    (unless `cell_budget_s` is given) and, once spent, the remaining cells are left for a later run.
    Cells measured while the process was descheduled (wait share > `max_wait_share`) or that break physics are
    re-measured up to `retries` times; what stays unclean is written with its reason in the file's header, or,
    with `refuse_unclean`, not written at all (the reason still in the header; the cell is fitted).
    """
    console = console or Console(stderr=True)
    report = ProfileReport()
    t_start = time.perf_counter()
    names = list(stages) if stages else pipeline.topological_order()
    for s in names:
        if s not in pipeline.stage_names:
            raise PipetuneError(f"--stages: unknown stage {s!r}; the pipeline has {pipeline.stage_names}")

    # ---- plan the work: (stage, variant, cores, missing batches, file) --------------------------------------
    tables: dict[Path, ProfileTable] = {}
    work: list[tuple[str, str, int, list[int], Path, Any]] = []
    for s in names:
        for v in pipeline.stage(s).variants:
            if variants and v.name not in variants:
                continue
            where = f"stages[{s}].variants[{v.name}]"
            try:
                ref = variant_model_ref(pipeline, s, v.name)
            except ModelSpecError as e:
                report.skipped.append((s, v.name, str(e)))
                continue
            path = Path(out) if out else pipeline.profile_path(s, v.name)
            if path is None:
                raise PipetuneError(
                    f"{where}.profile: no profile file is named; set `profile:` in the spec or pass --out FILE"
                )
            if path not in tables:
                tables[path] = ProfileTable.read_csv(path) if path.exists() else ProfileTable()
            table = tables[path]
            bs = sorted(set(batches)) if batches else pipeline.batch_sizes_for(s)
            cs = sorted(set(cores)) if cores else pipeline.cores_for(s)
            usable = len(_cpus())
            for c in cs:
                if c > usable:
                    report.skipped.append((s, v.name, f"cores={c}: only {usable} CPU(s) here; not measured"))
                    continue
                todo = [b for b in bs if force or not _measured(table, v.name, b, c)]
                if todo:
                    work.append((s, v.name, c, todo, path, ref))
                else:
                    report.skipped.append((s, v.name, f"cores={c}: all batches already measured"))

    n_cells = sum(len(w[3]) for w in work)
    if cell_budget_s is None:
        if budget_s is not None and n_cells:
            # Loading, warm-up and process start take about as long again as the timed phase on small models.
            cell_budget_s = max(0.2, min(10.0, 0.5 * budget_s / n_cells))
        else:
            cell_budget_s = DEFAULT_CELL_BUDGET_S
    run_id = f"{_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M:%S} UTC:"
    stamp = (
        run_id + " measured {cells} cell(s) of this file ({what}); "
        f"per-cell timed budget {cell_budget_s:.2g} s, >= {min_batches} batches where the budget allows; "
        "the machine's conditions are on this run's contention line"
    )

    # ---- measure ------------------------------------------------------------------------------------------------
    done_cells = 0
    prog = Progress(
        TextColumn("[bold]profile[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )
    written: set[Path] = set()
    with prog:
        task = prog.add_task("", total=n_cells)
        for s, vname, c, todo, path, ref in work:
            if budget_s is not None and time.perf_counter() - t_start > budget_s:
                report.out_of_budget.append((s, vname, c, todo))
                prog.advance(task, len(todo))
                continue
            prog.update(task, description=f"{s}/{vname} c={c} b={todo}")
            table = tables[path]

            def save(m: Measurement, _s: str = s, _table: ProfileTable = table, _path: Path = path) -> None:
                nonlocal done_cells
                key = (_s, m.variant, m.batch, m.cores)
                again = [i for i, (st, x) in enumerate(report.measured) if (st, x.variant, x.batch, x.cores) == key]
                if refuse_unclean and m.flags:
                    _table.rows = [r for r in _table.rows if (r.variant, r.batch, r.cores) != key[1:]]
                    report.measured = [x for i, x in enumerate(report.measured) if i not in again]
                    report.refused.append((_s, m))
                else:
                    _table.upsert(m.row)
                    if again:
                        report.measured[again[0]] = (_s, m)
                    else:
                        report.measured.append((_s, m))
                _update_header(_table, stamp.format(cells="some", what="in progress"), run_id)
                _table.to_csv(_path)
                written.add(_path)
                if not again:
                    done_cells += 1
                    prog.advance(task)

            try:
                measure_variant(
                    ref,
                    todo,
                    c,
                    variant=vname,
                    budget_s=cell_budget_s,
                    min_batches=min_batches,
                    on_cell=save,
                    max_wait_share=max_wait_share,
                    retries=retries,
                )
            except PipetuneError as e:
                msg = str(e)
                report.failed.append((s, vname, c, msg))
                console.print(f"[yellow]skipped[/] {s}/{vname} on {c} core(s): {msg}", highlight=False)
                measured_here = sum(1 for st, m in report.measured if st == s and m.variant == vname and m.cores == c)
                prog.advance(task, len(todo) - measured_here)

    # Final header: the real count of this run's cells.
    def file_of(st: str, m: Measurement) -> Path:
        return Path(out) if out else pipeline.profile_path(st, m.variant)

    for path in written:
        table = tables[path]
        mine = [m for st, m in report.measured if file_of(st, m) == path]
        refused = [m for st, m in report.refused if file_of(st, m) == path]
        what = ", ".join(sorted({m.variant for m in mine}))
        # Flag lines of cells this run measured again are stale: drop them, then add this run's.
        redone = {f"{m.variant} b{m.batch} c{m.cores}:" for m in mine + refused}
        header = [h for h in table.header[:-1] if " ".join(h.split(" ")[1:4]) not in redone]
        lines = []
        ours = {(m.variant, m.batch, m.cores) for m in mine + refused}
        if {(r.variant, r.batch, r.cores) for r in table.rows if r.source == "measured"} <= ours:
            # Every measured cell is this run's: earlier runs' lines describe cells no longer in the file.
            old = [h for h in header if _EARLIER_RUN.match(h)]
            if old:
                header = [h for h in header if not _EARLIER_RUN.match(h)]
                lines.append(f"{run_id} measured every cell again: the {len(old)} line(s) of earlier runs were dropped")
        lines.append(_contention_line(run_id, mine + refused))
        lines += [
            f"flagged {m.variant} b{m.batch} c{m.cores}: {'; '.join(m.flags)} ({run_id[:-1]})" for m in mine if m.flags
        ]
        lines += [
            f"refused {m.variant} b{m.batch} c{m.cores}: not written, fitted instead: {'; '.join(m.flags)} ({run_id[:-1]})"
            for m in refused
        ]
        table.header = header + lines + [stamp.format(cells=len(mine), what=what)]
        table.to_csv(path)
    report.files = sorted(written)
    if plot:
        from pipetune.profiler.plots import plot_profile

        for path in report.files:
            png = path.with_suffix(".png")
            plot_profile(tables[path], png, title=f"{pipeline.name}: {path.name}", stage_of=_stage_map(pipeline))
            report.plots.append(png)
    report.elapsed_s = time.perf_counter() - t_start
    return report


def _contention_line(run_id: str, cells: list[Measurement]) -> str:
    """One line of contention figures for a run's cells: wait share, CPU per wall second per core, load."""
    ws = sorted(m.wait_share for m in cells if m.wait_share is not None)
    per_core = sorted(m.cpu_per_wall / m.cores for m in cells)
    loads = [m.loadavg for m in cells if m.loadavg == m.loadavg]
    wtxt = f"median {ws[len(ws) // 2]:.0%}, max {ws[-1]:.0%}" if ws else "not observable (no schedstat)"
    ptxt = f"{per_core[0]:.2f}-{per_core[-1]:.2f}" if per_core else "n/a"
    ltxt = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
    n_rep = sum(1 for m in cells if m.attempts > 1)
    return (
        f"{run_id} contention: runnable time spent waiting for a CPU {wtxt}; CPU s per wall s per core {ptxt}; "
        f"1-min load {ltxt}; {n_rep} of {len(cells)} cell(s) re-measured, {sum(1 for m in cells if m.flags)} flagged"
    )


def _measured(table: ProfileTable, variant: str, batch: int, cores: int) -> bool:
    return any((r.variant, r.batch, r.cores) == (variant, batch, cores) and r.source == "measured" for r in table.rows)


def _stage_map(pipeline: Any) -> dict[str, str]:
    return {v.name: s.name for s in pipeline.stages for v in s.variants}
