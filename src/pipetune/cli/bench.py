"""`pipetune bench ...`: benchmarks that print their figures (and ratios to a peer or bound)."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from pipetune.cli.main import app

bench_app = typer.Typer(help="Benchmarks: figures and ratios, never pass/fail.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("optimizer")
def bench_optimizer(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    instances: int = typer.Option(20, help="random instances per (stages, variants) cell"),
    oracle: int = typer.Option(500, help="random small instances checked against brute force"),
    seed: int = typer.Option(0),
    stages: str = typer.Option("1-9,15,25", help="stage counts, e.g. '1-9,15,25'"),
    variants: str = typer.Option("1-9", help="variant counts, e.g. '1-9'"),
    repeats: int = typer.Option(3, min=1, help="cold decisions timed per instance (their median counts)"),
) -> None:
    """Decision time (build + solve) on IPA's grid and beyond, and agreement with the brute-force oracle."""
    from rich.progress import Progress

    from pipetune.optimizer.bench import parse_range, run_optimizer_benchmark

    err = Console(stderr=True)
    cells = [(s, v) for s in parse_range(stages) for v in parse_range(variants)]
    with Progress(console=err, transient=True) as prog:
        task = prog.add_task("optimizer benchmark", total=len(cells) * instances + oracle)
        result = run_optimizer_benchmark(cells, instances, oracle, seed, advance=lambda: prog.advance(task),
                                         repeats=repeats)
    if as_json:
        print(json.dumps(result))
        return
    from rich.table import Table

    con = Console()
    t = Table(title="decision time (ms): median [p95] per stages x variants")
    vs = sorted({c["variants"] for c in result["cells"]})
    t.add_column("stages", justify="right")
    for v in vs:
        t.add_column(f"V={v}", justify="right")
    for s in sorted({c["stages"] for c in result["cells"]}):
        row = [str(s)]
        for v in vs:
            c = next((c for c in result["cells"] if c["stages"] == s and c["variants"] == v), None)
            row.append("" if c is None else f"{c['median_ms']:.1f} [{c['p95_ms']:.0f}]")
        t.add_row(*row)
    con.print(t)
    o = result["oracle"]
    con.print(f"oracle: {o['agree']}/{o['instances']} agree within 1e-6 relative")
    for k, v in result.get("summary", {}).items():
        con.print(f"{k}: {v}")
