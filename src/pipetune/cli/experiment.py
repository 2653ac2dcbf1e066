"""`pipetune experiment run FILE`: a grid of simulated runs in parallel processes, with figures and a report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pipetune.cli.app import app
from pipetune.cli.options import WORKERS, number, out_dir

experiment_app = typer.Typer(
    help="Reproduce IPA-style evaluations on the simulator (see docs/experiments.md).", no_args_is_help=True
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("run")
def run_cmd(
    file: Path = typer.Argument(..., help="experiment YAML (see experiments/*.yaml)"),
    out: Path | None = out_dir(None, "--out", help="output folder (default: results/<experiment name>)"),
    workers: int = number(0, allowed=WORKERS, help="worker processes (0: min(CPUs, 2))"),
    no_figures: bool = typer.Option(False, "--no-figures", help="skip the PNG figures"),
) -> None:
    """Run every (workload × system × seed) run, the ablation, the sweep and the calibration; write results
    (CSV/JSON), figures (PNG) and report.md / report.html into OUT. Exit 1 when a run failed (the others are
    reported; the failures are listed in the report), 130 when interrupted (a partial report is written)."""
    from pipetune.experiments import load_experiment
    from pipetune.experiments.report import calibration_summary, system_table
    from pipetune.experiments.runner import ExperimentInterrupted, run_experiment

    exp = load_experiment(file)
    out = out or Path("results") / exp.name
    con = Console()
    try:
        data = run_experiment(exp, out, workers=workers or None, figures=not no_figures)
    except ExperimentInterrupted as stop:
        p = stop.data["partial"]
        con.print(
            f"[yellow]interrupted[/]: {p['runs_done']} of {p['runs_planned']} runs completed; their results and a "
            f"partial report are in {stop.out / 'report.md'}"
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
    failed = data.get("errors") or []
    for err in failed:
        con.print(
            "[red]failed[/]: "
            + escape(f"{err.get('pipeline')} / {err.get('workload')} / {err.get('system')}: {err.get('error')}"),
            highlight=False,
        )
    con.print(
        f"{len(data['runs'])} runs in {data['wall_s']:.1f} s on {data['workers']} processes -> {out / 'report.md'}"
    )
    if failed:
        total = len(data["runs"]) + len(data.get("calibration") or []) + len(failed)
        Console(stderr=True).print(
            f"[bold red]{len(failed)} of {total} runs failed[/] (listed above and in {out / 'report.md'})",
            highlight=False,
        )
        raise typer.Exit(1)


@experiment_app.command("report")
def report_cmd(
    folder: Path = typer.Argument(..., help="an output folder of `pipetune experiment run` (holds results.json)"),
) -> None:
    """Re-render figures and report.md/report.html from FOLDER/results.json (no simulation)."""
    import json

    from pipetune.errors import PipetuneError
    from pipetune.experiments.report import write_outputs

    src = folder / "results.json"
    if not src.is_file():
        raise PipetuneError(f"{src} does not exist; give the --out folder of `pipetune experiment run`")
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise PipetuneError(f"{src}: not UTF-8 text ({e.reason} at byte {e.start}); not a results file") from None
    except json.JSONDecodeError as e:
        raise PipetuneError(
            f"{src}: corrupt JSON ({e.msg}, line {e.lineno} column {e.colno}); run the experiment again"
        ) from None
    if not isinstance(data, dict) or not {"experiment", "runs"} <= data.keys() or not isinstance(data["runs"], list):
        raise PipetuneError(f"{src}: not the results.json of `pipetune experiment run` (needs 'experiment' and 'runs')")
    try:
        write_outputs(data, folder)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        # a hand-edited or truncated file; PIPETUNE_TRACEBACK=1 shows where the report code tripped over it
        raise PipetuneError(
            f"{src}: a field is missing or malformed ({type(e).__name__}: {e}); not a complete results file of "
            "`pipetune experiment run`"
        ) from e
    Console().print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}")
