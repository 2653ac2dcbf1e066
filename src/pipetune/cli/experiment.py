"""`pipetune experiment run FILE`: a grid of simulated runs in parallel processes, with figures and a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipetune.cli.app import app

experiment_app = typer.Typer(
    help="Reproduce IPA-style evaluations on the simulator (see docs/experiments.md).", no_args_is_help=True
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def run_cmd(
    file: Path = typer.Argument(..., help="experiment YAML (see experiments/*.yaml)"),
    out: Path = typer.Option(None, help="output folder (default: results/<experiment name>)"),
    workers: int = typer.Option(0, help="worker processes (0: min(CPUs, 2))"),
    no_figures: bool = typer.Option(False, "--no-figures", help="skip the PNG figures"),
) -> None:
    """Run every (workload × system × seed) run, the ablation, the sweep and the calibration; write results
    (CSV/JSON), figures (PNG) and report.md / report.html into OUT."""
    from pipetune.experiments import load_experiment
    from pipetune.experiments.report import calibration_summary, system_table
    from pipetune.experiments.runner import ExperimentInterrupted, run_experiment

    exp = load_experiment(file)
    out = out or Path("results") / exp.name
    con = Console()
    try:
        data = run_experiment(exp, out, workers=workers or None, figures=not no_figures)
    except ExperimentInterrupted as e:
        p = e.data["partial"]
        con.print(
            f"[yellow]interrupted[/]: {p['runs_done']} of {p['runs_planned']} runs completed; their results and a "
            f"partial report are in {e.out / 'report.md'}"
        )
        raise typer.Exit(130) from None
    grid = [r for r in data["runs"] if r["kind"] == "grid"]
    for row in system_table(grid):
        con.print(
            f"{row['system']:>14}: SLA violations {100 * row['sla_violation_rate']:.2f}%  "
            f"mean cores {row['mean_cores']:.2f}  mean PAS {row['pas_mean']:.3f}"
        )
    cal = calibration_summary(data.get("calibration", []))
    if cal:
        con.print(
            f"calibration: {cal['plans']} plans, simulated/predicted p99 median {cal['ratio_median']:.2f}, "
            f"max SLA violations {100 * cal['sla_violation_rate_max']:.2f}%"
        )
    for e in data.get("errors") or []:
        con.print(f"[red]failed[/]: {e.get('pipeline')} / {e.get('workload')} / {e.get('system')}: {e['error']}")
    con.print(
        f"{len(data['runs'])} runs in {data['wall_s']:.1f} s on {data['workers']} processes -> {out / 'report.md'}"
    )


@experiment_app.command("report")
def report_cmd(
    folder: Path = typer.Argument(..., help="an output folder of `pipetune experiment run` (holds results.json)"),
) -> None:
    """Re-render figures and report.md/report.html from FOLDER/results.json (no simulation)."""
    import json

    from pipetune.errors import PipetuneError
    from pipetune.experiments.report import write_outputs

    src = folder / "results.json"
    if not src.exists():
        raise PipetuneError(f"{src} does not exist; give the --out folder of `pipetune experiment run`")
    data = json.loads(src.read_text())
    write_outputs(data, folder)
    Console().print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}")
