"""`pipetune demo`: the main job on the embedded default (no data, no cluster needed).

Until the live Ray Serve demo lands, this is the best end-to-end job the project has: it plans the bundled
synthetic DAG at a few loads, then lets the adapter drive the discrete-event simulator with IPA and its three
baselines under a bursty and a fluctuating load pattern, and writes figures and a report.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipetune.cli.app import app


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), help="where the results, figures and report go"),
    seconds: int = typer.Option(600, help="length of each simulated load pattern (s)"),
) -> None:
    """Plan the bundled example, then simulate IPA vs FA2-low / FA2-high / RIM on it; write a report."""
    from pipetune import example_path
    from pipetune.cli.plan import render_plan
    from pipetune.experiments.report import system_table
    from pipetune.experiments.runner import run_experiment
    from pipetune.experiments.spec import parse_experiment
    from pipetune.optimizer import plan_pipeline
    from pipetune.spec import load_pipeline

    con = Console()
    path = example_path("synthetic")
    pipeline = load_pipeline(path)
    con.rule(f"[bold]1. plans for {pipeline.name}[/] ({path}; its profile is synthetic)")
    for rps in (5, 30):
        render_plan(plan_pipeline(pipeline, rps), con)
    con.rule("[bold]2. the adapter on the simulator[/] (decide every 10 s on the predicted load)")
    exp = parse_experiment(
        {
            "name": "demo",
            "description": "pipetune demo: the synthetic DAG under two synthetic load patterns",
            "pipeline": "example:synthetic",
            "workloads": [
                {"name": "bursty", "synthetic": "bursty", "peak": 30, "seconds": seconds},
                {"name": "fluctuating", "synthetic": "fluctuating", "peak": 30, "seconds": seconds},
            ],
            "systems": [
                {"name": "IPA", "policy": "ipa", "predictor": "default"},
                {"name": "FA2-low", "policy": "fa2-low", "predictor": "default"},
                {"name": "FA2-high", "policy": "fa2-high", "predictor": "default"},
                {"name": "RIM", "policy": "rim", "predictor": "default", "params": {"replicas": 3}},
            ],
            "calibration": None,
        },
        base_dir=Path.cwd(),
        where="(demo)",
    )
    data = run_experiment(exp, out)
    for row in system_table([r for r in data["runs"] if r["kind"] == "grid"]):
        con.print(
            f"{row['system']:>10}: SLA violations {100 * row['sla_violation_rate']:.2f}%  "
            f"mean cores {row['mean_cores']:.2f}  mean PAS {row['pas_mean']:.3f}"
        )
    con.print(f"report: {out / 'report.html'} (and report.md, figures *.png)")
