"""`pipetune suggest-sla PIPELINE [--rps R] [--capture C] [--json]`: which SLAs the pipeline can promise at a
load, per variant set, and which one to promise (pipetune.optimizer.sla_suggest)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import FRACTION, RPS, number

DEFAULT_RPS = 10.0


@app.command("suggest-sla")
def suggest_sla_cmd(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    rps: float = number(DEFAULT_RPS, "--rps", allowed=RPS, help="the load the SLA must hold at (requests/s)"),
    capture: float = number(
        0.99,
        "--capture",
        allowed=FRACTION,
        help="recommend the tightest SLA at which the planner's objective has gained this share of what "
        "loosening the SLA can buy",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the suggestion as JSON"),
) -> None:
    """Per variant set that matters (the most accurate, the cheapest, the planner's frontier between), the SLAs
    at which it is feasible at RPS (bisection with the real planner), and a recommended SLA with the reasoning.

    Exit 1 when no configuration serves RPS at any SLA (the load is beyond the caps)."""
    from pipetune.optimizer.sla_suggest import suggest_sla
    from pipetune.spec import load_pipeline

    p = load_pipeline(pipeline)
    s = suggest_sla(p, rps, capture=capture)
    if as_json:
        print(jsonio.dumps(s.to_dict(), indent=2))
    else:
        con = Console()
        t = Table(title=f"{s.pipeline} at {s.rps:g} rps: feasible SLAs (p{s.percentile:g}) per variant set")
        for col in ("set", "variants", "accuracy", "feasible SLA", "cores at its min", "planner picks it at"):
            t.add_column(col, justify="right" if col in ("accuracy", "cores at its min") else "left")
        for v in s.sets:
            t.add_row(
                v.label,
                "\n".join(f"{k}={n}" for k, n in v.variants.items()),
                f"{v.accuracy:.4f}",
                "never (load beyond the caps)" if v.min_sla_s is None else f">= {v.min_sla_s:g} s",
                "-" if v.cores_at_min is None else str(v.cores_at_min),
                "-" if v.chosen_from_s is None else f"{v.chosen_from_s:g} .. {v.chosen_to_s:g} s (sampled)",
            )
        con.print(t)
        if s.recommended_sla_s is not None:
            con.print(f"[bold]recommended SLA: {s.recommended_sla_s:g} s[/] (p{s.percentile:g}, at {s.rps:g} rps)")
        for line in s.reasoning:
            con.print(f"- {line}")
    if s.min_sla_s is None:
        raise typer.Exit(1)  # the answer is negative: no SLA holds at this load
