"""`pipetune demo`: the main job on the embedded default (a local Ray; no data, no cluster needed).

Live (default): the text pipeline served on a local Ray through the V2 endpoint under a compressed bursty load
scaled to this host (its peak `--peak-share` of what the fastest configuration holds here, its trough
`--trough-share` of what the accurate one holds), by pipetune's
adapter, by Ray Serve's own autoscaling on the accurate variants and by the best static configuration that holds
the peak, plus the simulator twin; a report (PNG, HTML, JSON) and one line per criterion saying who won. `--sim`: the simulator-only demo (plans the synthetic DAG, then IPA and its three baselines
under two load patterns).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipetune.cli.app import app
from pipetune.cli.options import PORT, Range, number, out_dir
from pipetune.tooling.demo import DEMO_SECONDS, PEAK_SHARE, TROUGH_SHARE


@app.command("demo")
def demo_cmd(
    out: Path = out_dir(Path("runs/demo"), "--out", help="where the results, figures and report go"),
    sim: bool = typer.Option(False, "--sim", help="the simulator-only demo (no Ray)"),
    seconds: int | None = number(
        None,
        allowed=Range(int, ge=60, le=86_400),
        help=f"length of the load pattern (s); default {DEMO_SECONDS} per live run (three runs share one Ray), 600 per "
        "pattern with --sim (at least 120)",
    ),
    peak_share: float = number(
        PEAK_SHARE,
        "--peak-share",
        allowed=Range(float, ge=0.05, le=1.0),
        help="live: the load's peak at most this share of the rate the fastest configuration holds on this host",
    ),
    trough_share: float = number(
        TROUGH_SHARE,
        "--trough-share",
        allowed=Range(float, ge=0.0, le=1.0),
        help="live: the load's trough as a share of the rate the accurate configuration holds on this host",
    ),
    peak: float | None = number(
        None, allowed=Range(float, ge=1, le=10_000), help="live: the load's peak in rps (instead of --peak-share)"
    ),
    trough: float | None = number(
        None, allowed=Range(float, ge=0, le=10_000), help="live: the load's trough in rps (instead of --trough-share)"
    ),
    num_cpus: int = number(
        16, "--num-cpus", allowed=Range(int, ge=6, le=4096), help="live: logical CPUs of the local Ray"
    ),
    port: int = number(8000, allowed=PORT, help="live: HTTP port of the endpoint"),
) -> None:
    """Serve the text example live under pipetune and under Ray's autoscaling; report both (--sim: simulate)."""
    if not sim:
        _live(out, seconds or DEMO_SECONDS, peak_share, trough_share, peak, trough, num_cpus, port)
        return
    seconds = seconds or 600
    if seconds < 120:
        from pipetune.errors import PipetuneError

        raise PipetuneError(f"--seconds {seconds} with --sim: a synthetic load pattern needs at least 120 s")
    from pipetune.cli.plan import render_plan
    from pipetune.experiments.report import system_table
    from pipetune.experiments.runner import run_experiment
    from pipetune.experiments.spec import parse_experiment
    from pipetune.optimizer import plan_pipeline
    from pipetune.spec import example_path, load_pipeline

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


def _live(
    out: Path,
    seconds: int,
    peak_share: float,
    trough_share: float,
    peak: float | None,
    trough: float | None,
    num_cpus: int,
    port: int,
) -> None:
    from pipetune.tooling.demo import run_live_demo

    con = Console()
    res = run_live_demo(
        out, seconds=seconds, peak_share=peak_share, trough_share=trough_share, peak=peak, trough=trough,
        num_cpus=num_cpus, port=port, say=con.print,
    )  # fmt: skip
    for name, s in res["summaries"].items():
        p99 = s.get("latency_p99_s")
        con.print(
            f"{name:>16}: {s['requests']} requests, SLA violations {100 * s['sla_violation_rate']:.1f}%, "
            f"p99 {p99 if p99 is None else round(p99, 3)} s, accuracy served {s.get('pas_mean') or 0:.3f}, "
            f"mean cores {s.get('mean_cores') or 0:.1f}"
        )
    con.rule("[bold]who won[/]")
    for line in res["verdict"]:
        con.print(line, markup=False, highlight=False)
    con.print(f"report: {out / 'live-demo.html'} (figure {out / 'live-demo.png'}, data {out / 'live-demo.json'})")
