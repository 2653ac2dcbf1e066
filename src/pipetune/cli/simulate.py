"""`pipetune simulate`: one policy + predictor on one workload, on the discrete-event simulator."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import HOST_CORES, HOST_CPU_S, POSITIVE, SECONDS_SPAN, SEED, number, out_dir, out_file
from pipetune.errors import PipetuneError


@app.command("simulate")
def simulate_cmd(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    workload: str = typer.Option(
        "bursty",
        help="synthetic pattern (bursty, steady-low, steady-high, "
        "fluctuating), paper:NAME for IPA's window (needs ../shared), or a count file",
    ),
    policy: str = typer.Option(
        "ipa", help="ipa | fa2-low | fa2-high | rim | static-peak | ray-autoscale (Ray Serve's own autoscaler)"
    ),
    predictor: str = typer.Option("reactive", help="oracle or any predictor name (reactive, max, lstm, ...)"),
    seconds: int = number(1200, allowed=SECONDS_SPAN, help="synthetic pattern length / trace seconds to keep"),
    peak: float = number(30.0, allowed=POSITIVE, help="synthetic pattern peak (rps)"),
    seed: int = number(0, allowed=SEED, help="seed of the workload, arrivals and service times"),
    interval: float = number(10.0, allowed=POSITIVE, help="adaptation interval (s)"),
    drop_limit: float | None = number(
        None, allowed=POSITIVE, help="drop a request after waiting this long (default: the SLA)"
    ),
    host_cores: float | None = number(
        None, allowed=HOST_CORES, help="physical cores every replica shares (docs/simulator.md; default: none)"
    ),
    host_overhead: float = number(0.0, allowed=HOST_CPU_S, help="host CPU-s per request in its path (ingress, proxy)"),
    host_hop: float = number(0.0, allowed=HOST_CPU_S, help="host CPU-s per item per stage outside the model"),
    host_side: float = number(0.0, allowed=HOST_CPU_S, help="host CPU-s per request beside its path (load generator)"),
    host_load_cores: float = number(0.0, allowed=HOST_CPU_S, help="cores a loading replica keeps busy on the host"),
    log: Path | None = out_file(None, "--log", help="write the adapter's decisions here (JSON lines)"),
    out: Path | None = out_dir(None, "--out", help="folder for a time-series plot (sim-run.png) and summary.json"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Simulate the adapter driving POLICY with PREDICTOR over a workload; print SLA, cost and accuracy."""
    import numpy as np

    from pipetune.experiments.runner import simulate
    from pipetune.experiments.spec import Settings
    from pipetune.metrics import per_interval
    from pipetune.spec import load_pipeline
    from pipetune.workloads import PATTERNS, load_trace, paper_window, synthetic_pattern

    pipe = load_pipeline(pipeline)
    if workload in PATTERNS:
        counts = synthetic_pattern(workload, seconds=seconds, seed=seed, peak=peak)
    elif workload.startswith("paper:"):
        counts = paper_window(workload.split(":", 1)[1])[:seconds]
    elif Path(workload).exists():
        counts = load_trace(workload)[:seconds]
    else:
        raise PipetuneError(
            f"--workload {workload!r}: not a pattern ({', '.join(PATTERNS)}), paper:NAME, or an existing count file"
        )
    from rich.progress import Progress

    knobs = {"--host-overhead": host_overhead, "--host-hop": host_hop, "--host-side": host_side,
             "--host-load-cores": host_load_cores}  # fmt: skip
    if host_cores is None and any(v > 0 for v in knobs.values()):
        used = ", ".join(k for k, v in knobs.items() if v > 0)
        raise PipetuneError(f"{used}: CPU on a shared host; give --host-cores N too (the host's physical cores)")
    settings = Settings(interval_s=interval, drop_limit_s=drop_limit, host_cores=host_cores,
                        host_overhead_s=host_overhead, host_hop_s=host_hop, host_side_s=host_side,
                        host_load_cores=host_load_cores)  # fmt: skip
    with Progress(transient=True, disable=as_json) as prog:
        bar = prog.add_task("simulating", total=len(counts))
        run = simulate(
            pipe,
            counts,
            policy=policy,
            predictor=predictor,
            seed=seed,
            settings=settings,
            log=log,
            on_step=lambda d: prog.update(bar, completed=d.t),
        )
    s = run.summary
    who = policy if policy == "ray-autoscale" else f"{policy} + {predictor}"  # the autoscaler predicts nothing
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(jsonio.dumps(s, indent=1))
        _plot(
            per_interval(run.result, interval, float(len(counts))),
            pipe.sla.seconds,
            f"{pipe.name}: {who} on {workload}",
            out / "sim-run.png",
        )
    if as_json:
        print(jsonio.dumps(s, default=float))
        return
    t = Table(title=f"{pipe.name}: {who}, {workload} ({len(counts)} s, {s['requests']} requests)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k in ("sla_violation_rate", "drop_rate", "late_rate"):
        t.add_row(k, f"{100 * s[k]:.2f}%")
    for k in (
        "latency_p50_s",
        "latency_p95_s",
        "latency_p99_s",
        "pas_mean",
        "norm_acc_mean",
        "mean_cores",
        "core_seconds",
        "decisions",
        "applied",
        "switches",
        "solve_time_median_s",
    ):
        v = s[k]
        t.add_row(k, f"{v:.4g}" if isinstance(v, float) and not np.isnan(v) else str(v))
    Console().print(t)
    if out is not None:
        Console().print(f"wrote {out / 'sim-run.png'} and {out / 'summary.json'}")


def _plot(iv: dict, sla: float, title: str, path: Path) -> None:
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()

    t = iv["t_start_s"] / 60
    fig, axes = plt.subplots(4, 1, figsize=(7, 7), sharex=True)
    axes[0].plot(t, iv["rps"], color="0.3")
    axes[0].set_ylabel("load (rps)")
    axes[1].plot(t, iv["mean_cores"], color="C0")
    axes[1].set_ylabel("cores")
    axes[2].plot(t, iv["pas_mean"], color="C2")
    axes[2].set_ylabel("PAS")
    axes[3].plot(t, iv["latency_p99_s"], color="C3", label="p99")
    axes[3].axhline(sla, color="red", ls="--", lw=1, label="SLA")
    axes[3].set_ylabel("latency (s)")
    axes[3].set_xlabel("time (min)")
    axes[3].legend(fontsize=7)
    axes[0].set_title(title, fontsize=9)
    save_figure(fig, path)
