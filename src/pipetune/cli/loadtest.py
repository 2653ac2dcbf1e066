"""`pipetune loadtest`: open-loop V2 load against any Open Inference Protocol server (pipetune's, Triton, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import (
    HARD_MAX_REQUESTS,
    MAX_CONCURRENCY,
    POSITIVE,
    SECONDS_SPAN,
    SEED,
    Range,
    number,
    out_dir,
)

if TYPE_CHECKING:
    from rich.progress import TaskID


class _Bar:
    """A rich progress bar over the planned requests, refreshed by the load generator ~4 times a second."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("loadtest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            auto_refresh=False,  # refreshed from the event loop: no thread competing with the sender
        )
        self.task: TaskID | None = None

    def start(self, plan) -> None:
        self.progress.start()
        self.task = self.progress.add_task("load", total=int(plan.times.size), detail="")

    def update(self, rec, sent: int, due: int) -> None:
        c = rec.counts()
        answered = c["completed"] + c["refused"] + c["dropped"] + c["failed"] + c["timeout"]
        open_now = sent - answered
        errors = c["failed"] + c["timeout"]
        detail = f"ok {c['completed']} 503 {c['refused']} 504 {c['dropped']} err {errors} open {max(open_now, 0)}"
        if due > sent:
            detail += f" not-sent {due - sent}"
        # done: answered, plus those that fell due and were not sent (the concurrency cap)
        assert self.task is not None, "start() first"
        self.progress.update(self.task, completed=answered + due - sent, detail=detail)
        self.progress.refresh()

    def stop(self) -> None:
        self.progress.stop()


@app.command("loadtest")
def loadtest_cmd(
    url: str = typer.Option(..., "--url", help="server base URL (http://127.0.0.1:8000) or a V2 model URL"),
    trace: Path | None = typer.Option(None, "--trace", help="per-second request counts file (plain, .gz, .csv)"),
    pattern: str | None = typer.Option(None, "--pattern", help="bursty, steady-low, steady-high or fluctuating"),
    scale: float = number(
        1.0, "--scale", allowed=POSITIVE, help="multiply every per-second count (a pattern peaks at 30 x S)"
    ),
    duration: int | None = number(
        None,
        "--duration",
        allowed=SECONDS_SPAN,
        help="seconds to run (default: the whole trace; a pattern: 120 s, its shape drawn over D)",
    ),
    seed: int = number(0, "--seed", allowed=SEED, help="seed of the pattern, the arrival times and generated inputs"),
    model: str | None = typer.Option(None, "--model", help="model name on the server (default: the pipeline's)"),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="pipeline YAML: send its source stage's example data (else: generated inputs)"
    ),
    out: Path = out_dir(Path("results/loadtest"), "--out", help="folder for summary.json, timeline.csv, ..."),
    sla: float | None = number(
        None, "--sla", allowed=POSITIVE, help="SLA in seconds: count the requests not served within it"
    ),
    max_requests: int = number(
        100_000,
        "--max-requests",
        allowed=Range(int, ge=1, le=HARD_MAX_REQUESTS),
        help="send at most this many (the plan is cut)",
    ),
    concurrency: int = number(
        512,
        "--concurrency",
        allowed=Range(int, ge=1, le=MAX_CONCURRENCY),
        help="open requests at most; one falling due above it is counted not_sent",
    ),
    timeout: float = number(10.0, "--timeout", allowed=POSITIVE, help="per-request timeout (s)"),
    process: str = typer.Option("poisson", "--process", help="arrivals within a second: poisson, uniform, step"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON (and no progress bar)"),
    no_plot: bool = typer.Option(False, "--no-plot", help="skip the PNG"),
    binary: bool = typer.Option(
        False,
        "--binary",
        help="send the V2 binary tensor extension and ask for binary outputs (tritonclient's default)",
    ),
) -> None:
    """Send a trace or pattern of V2 inference requests open loop; write a summary, a timeline and a plot."""
    from pipetune.loadgen.loadtest import loadtest

    if pipeline is not None:  # read it now: the load generator reads it only after reaching the server
        from pipetune.spec import load_pipeline

        load_pipeline(pipeline, check_profiles=False)
    err = Console(stderr=True)
    bar = None if as_json else _Bar(err)
    summary, _, paths = loadtest(
        url,
        trace=trace,
        pattern=pattern,
        scale=scale,
        duration=duration,
        seed=seed,
        model=model,
        pipeline=pipeline,
        out=out,
        sla_s=sla,
        max_requests=max_requests,
        concurrency=concurrency,
        timeout_s=timeout,
        process=process,
        progress=bar,
        plot=not no_plot,
        binary=binary,
    )
    if as_json:
        print(jsonio.dumps(summary))
        if summary["interrupted"]:
            raise typer.Exit(130)
        return
    con = Console()
    o, lat, se = summary["outcomes"], summary["latency_ms"], summary["send_error_ms"]
    con.print(
        f"{summary['planned']} planned over {summary['workload']['duration_s']} s ({summary['offered_rps']:.1f} rps): "
        f"completed {o['completed']}, refused {o['refused']}, dropped {o['dropped']}, failed {o['failed']}, "
        f"timeout {o['timeout']}, not sent {o['not_sent']}"
    )
    if lat["p50"] is not None:
        con.print(
            f"achieved {summary['achieved_rps']:.1f} rps; latency p50 {lat['p50']:.1f} / p90 {lat['p90']:.1f} / "
            f"p99 {lat['p99']:.1f} ms"
        )
    if se["p99"] is not None:
        con.print(f"send-time error p50 {se['p50']:.2f} ms, p99 {se['p99']:.2f} ms")
    if "sla" in summary:
        s = summary["sla"]
        con.print(f"SLA {s['seconds']:g} s: {s['violations']} violations ({100 * s['violation_rate']:.2f}%)")
    for reason, n in list(summary["reasons"].items())[:3]:
        con.print(f"  {n} x {reason}", highlight=False)
    con.print("wrote " + ", ".join(str(p) for p in paths.values()))
    if summary["interrupted"]:
        err.print("[yellow]interrupted:[/] sending stopped; the outputs hold what was sent and answered until then")
        raise typer.Exit(130)
