"""`pipetune trace ...`: build, inspect, cut and plot per-second request traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import POSITIVE, SEED, Range, number, out_file
from pipetune.cli.options import out_dir as out_dir_option
from pipetune.errors import PipetuneError

trace_app = typer.Typer(
    help="Per-second request traces: build from tweets, cut, damp, find patterns.", no_args_is_help=True
)
app.add_typer(trace_app, name="trace")
console = Console()


@trace_app.command("build")
def build(
    directory: Path = typer.Argument(
        ..., help="Root of an Archive Team twitter-stream tree (YYYY/MM/DD/HH/MM.json.bz2)."
    ),
    output: Path = out_file(..., "-o", "--output", help="Counts file to write (one integer a line; .gz gzips)."),
) -> None:
    """Count tweets and deletions per second; damaged files are counted as far as they read, and reported."""
    from pipetune.workloads import build_counts, save_trace

    with Progress(
        TextColumn("reading minute files"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("files", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        counts, report = build_counts(directory, progress=step)
    save_trace(counts, output)
    tweets = sum(f.tweets for f in report.files)
    deletions = sum(f.deletions for f in report.files)
    console.print(
        f"wrote {output}: {counts.size} s from epoch {report.start_epoch_s}, {int(counts.sum())} requests "
        f"({tweets} tweets + {deletions} deletions) from {len(report.files)} files"
    )
    if report.out_of_range:
        console.print(
            f"[yellow]warning:[/] skipped {report.out_of_range} events whose timestamp lies outside their file's "
            "minute (more than 600 s off): "
            + ", ".join(f"{f.path} ({f.out_of_range})" for f in report.files if f.out_of_range)
        )
    for f in report.incomplete:
        console.print(
            f"[yellow]warning:[/] {f.path}: {f.problem or 'unreadable lines'}; counted {f.tweets + f.deletions} "
            f"events from {f.lines} lines ({f.bad_lines} unreadable)"
        )


@trace_app.command("info")
def info(
    trace: Path = typer.Argument(..., help="Counts file (plain, .gz or .csv)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Length, mean, percentiles and zero seconds of a trace."""
    from pipetune.workloads import load_trace

    x = load_trace(trace)
    stats = {
        "seconds": int(x.size),
        "total": float(x.sum()),
        "mean": float(x.mean()),
        "max": float(x.max()),
        "p50": float(np.percentile(x, 50)),
        "p95": float(np.percentile(x, 95)),
        "zero_seconds": int((x == 0).sum()),
    }
    if json_out:
        print(jsonio.dumps(stats))
    else:
        for k, v in stats.items():
            console.print(f"{k:>13}: {v:g}")


@trace_app.command("cut")
def cut(
    trace: Path = typer.Argument(..., help="Counts file."),
    output: Path = out_file(..., "-o", "--output", help="Where to write the result."),
    window: list[str] = typer.Option(
        [], "--window", "-w", help="START:STOP or START+DURATION seconds; repeat to concatenate."
    ),
    damping: float = number(1.0, allowed=POSITIVE, help="Divide counts by this (IPA uses 8)."),
    peak: float | None = number(None, allowed=POSITIVE, help="Rescale so the busiest second is PEAK rps."),
) -> None:
    """Slice windows, concatenate them, damp and rescale (IPA's steady-high is one 600-s window twice)."""
    from pipetune.workloads import concat, damp, load_trace, parse_range, rescale, save_trace, slice_trace

    x = load_trace(trace)
    parts = [slice_trace(x, *parse_range(w)) for w in window] or [x]
    y = concat(parts)
    if damping != 1:
        y = damp(y, damping)
    if peak is not None:
        y = rescale(y, peak)
    save_trace(y, output)
    console.print(f"wrote {output}: {y.size} s, mean {y.mean():.2f}, max {y.max():.2f} rps")


@trace_app.command("patterns")
def patterns(
    trace: Path = typer.Argument(..., help="Counts file to search."),
    duration: int = number(
        1200, allowed=Range(int, ge=120, le=10_000_000), help="Window length in seconds (at most the trace's)."
    ),
    stride: int = number(
        60, allowed=Range(int, ge=1, le=10_000_000), help="Search step in seconds (rounded down to 10)."
    ),
    plot: Path | None = out_file(None, "--plot", help="PNG with the four windows found."),
    out_dir: Path | None = out_dir_option(None, "--out-dir", help="Also write each window as NAME.txt here."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Find bursty, steady-low, steady-high and fluctuating windows by the documented rules."""
    from pipetune.workloads import find_patterns, load_trace, save_trace

    x = load_trace(trace)
    found = find_patterns(x, duration=duration, stride=stride)
    rows = {
        k: {
            "start": v.start,
            "stop": v.start + duration,
            "mean": round(v.mean, 3),
            "cv": round(v.cv, 4),
            "episodes": v.episodes,
            "surge_ratio": round(v.surge_ratio, 3),
        }
        for k, v in found.items()
    }
    if json_out:
        print(jsonio.dumps({"duration": duration, "windows": rows}))
    else:
        table = Table("pattern", "start", "stop", "mean rps", "cv", "surges", "surge ratio")
        for k, r in rows.items():
            table.add_row(
                k,
                str(r["start"]),
                str(r["stop"]),
                f"{r['mean']:.1f}",
                f"{r['cv']:.3f}",
                str(r["episodes"]),
                f"{r['surge_ratio']:.2f}",
            )
        console.print(table)
        missing = [p for p in ("bursty", "steady-low", "steady-high", "fluctuating") if p not in found]
        if missing:
            console.print(f"[yellow]no window matches: {', '.join(missing)}[/]")
    if out_dir is not None:
        for k, v in found.items():
            save_trace(x[v.start : v.start + duration], out_dir / f"{k}.txt")
    if plot is not None:
        _plot_windows({k: x[v.start : v.start + duration] for k, v in found.items()}, plot, f"patterns in {trace.name}")
        if not json_out:
            console.print(f"plot: {plot}")


@trace_app.command("synth")
def synth(
    pattern: str = typer.Argument(..., help="bursty, steady-low, steady-high or fluctuating."),
    output: Path = out_file(..., "-o", "--output", help="Counts file to write."),
    seconds: int = number(1200, allowed=Range(int, ge=120, le=10_000_000), help="Length in seconds."),
    peak: float = number(30.0, allowed=POSITIVE, help="Peak rate in rps."),
    seed: int = number(0, allowed=SEED),
) -> None:
    """Write a seeded synthetic window of a pattern (the default workload when there is no trace)."""
    from pipetune.workloads import save_trace, synthetic_pattern

    y = synthetic_pattern(pattern, seconds=seconds, seed=seed, peak=peak)
    save_trace(y, output)
    console.print(f"wrote {output}: {y.size} s, mean {y.mean():.2f}, max {y.max():.0f} rps")


def _plot_windows(windows: dict[str, np.ndarray], path: Path, title: str) -> None:
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()

    if not windows:
        raise PipetuneError("nothing to plot: no window matched any pattern")
    fig, axes = plt.subplots(len(windows), 1, figsize=(10, 2.2 * len(windows)), squeeze=False)
    for ax, (name, w) in zip(axes[:, 0], windows.items()):
        ax.plot(np.arange(w.size), w, lw=0.6, color="tab:gray", label="per second")
        n = w.size // 10 * 10
        ax.plot(np.arange(0, n, 10) + 5, w[:n].reshape(-1, 10).mean(1), lw=1.4, color="tab:blue", label="10-s mean")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("rps")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("second in window")
    fig.suptitle(title)
    save_figure(fig, path)
