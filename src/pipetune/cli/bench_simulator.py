"""`pipetune bench simulator`: simulator speed and validation against queueing theory (M/D/1, M/M/c)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.bench import bench_app
from pipetune.cli.options import Range, number


@bench_app.command("simulator")
def bench_simulator(
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    requests: int = number(
        400_000,
        allowed=Range(int, ge=1_000, le=5_000_000),
        help="requests per run (x4 at rho 0.9, whose mean wait converges slowest)",
    ),
    seeds: int = number(3, allowed=Range(int, ge=1, le=100), help="independent runs per queueing-theory point"),
) -> None:
    """Simulated requests per wall-clock second (goal >= 200,000, one core) and mean waits against
    Pollaczek-Khinchine (M/D/1) and Erlang C (M/M/c)."""
    from rich.progress import Progress

    from pipetune.backends.simulator.bench import run_simulator_benchmark

    with Progress(transient=True, disable=as_json) as prog:
        task = prog.add_task("simulating", total=5 * seeds)
        res = run_simulator_benchmark(n=requests, seeds=seeds, progress=lambda: prog.advance(task))
    if as_json:
        print(jsonio.dumps(res))
        return
    con = Console()
    con.print(
        f"speed: {res['requests_per_s']:,.0f} simulated requests/s (goal 200,000; ratio "
        f"{res['speed_ratio_to_goal']:.2f})"
    )
    t = Table(title="mean wait in queue: simulation vs theory")
    for c in ("model", "rho", "sim wait (ms)", "theory (ms)", "rel. error"):
        t.add_column(c, justify="right")
    for r in res["md1"] + res["mmc"]:
        t.add_row(
            r["model"],
            f"{r['rho']:.2f}",
            f"{1e3 * r['sim_wait_s']:.3f}",
            f"{1e3 * r['theory_wait_s']:.3f}",
            f"{100 * r['rel_err']:.2f}%",
        )
    con.print(t)
