"""`pipetune bench ...`: benchmarks that print their figures (and ratios to a peer or bound)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import (
    BENCH_STAGES,
    BENCH_VARIANTS,
    COUNT,
    COUNT_OR_ZERO,
    HARD_MAX_REQUESTS,
    LOADGEN_RATE,
    PORT,
    SEED,
    Range,
    number,
    out_file,
)
from pipetune.tooling.reliability_bench import SCENARIOS

bench_app = typer.Typer(help="Benchmarks: figures and ratios, never pass/fail.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("optimizer")
def bench_optimizer(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    instances: int = number(20, allowed=COUNT, help="random instances per (stages, variants) cell"),
    oracle: int = number(500, allowed=COUNT_OR_ZERO, help="random small instances checked against brute force"),
    seed: int = number(0, allowed=SEED),
    stages: Any = typer.Option(
        "1-9,15,25", parser=BENCH_STAGES, metavar="COUNTS", help=f"stage counts, e.g. '1-9,15,25' ({BENCH_STAGES})"
    ),
    variants: Any = typer.Option(
        "1-9", parser=BENCH_VARIANTS, metavar="COUNTS", help=f"variant counts, e.g. '1-9' ({BENCH_VARIANTS})"
    ),
    repeats: int = number(
        3, allowed=Range(int, ge=1, le=100), help="cold decisions timed per instance (their median counts)"
    ),
    mix_stages: Any = typer.Option(
        "9,25",
        "--mix-stages",
        parser=BENCH_STAGES,
        metavar="COUNTS",
        help="stage counts whose cells at the most variants are also timed with variant mixing (k=2)",
    ),
    plot: Path | None = out_file(None, "--plot", help="PNG: median decision time per stages x variants."),
    from_json: Path | None = typer.Option(None, "--from-json", help="redraw a saved --json result; no timing"),
) -> None:
    """Decision time (build + solve) on IPA's grid and beyond, and agreement with the brute-force oracle."""
    from rich.progress import Progress

    from pipetune.optimizer.bench import run_optimizer_benchmark

    err = Console(stderr=True)
    if from_json is not None:
        result = _read_result(from_json)
    else:
        cells = [(s, v) for s in stages for v in variants]  # parsed (and bounded) into lists of ints
        with Progress(console=err, transient=True) as prog:
            task = prog.add_task("optimizer benchmark", total=len(cells) * instances + oracle)
            mix_cells = frozenset((s, max(variants)) for s in mix_stages if s in stages)
            result = run_optimizer_benchmark(
                cells,
                instances,
                oracle,
                seed,
                advance=lambda: prog.advance(task),
                repeats=repeats,
                mix_cells=mix_cells,
            )
    if plot is not None:
        _plot_optimizer(result, plot)
        err.print(f"wrote {plot}")
    if as_json:
        print(jsonio.dumps(result))
        return
    from rich.table import Table

    con = Console()
    vs = sorted({c["variants"] for c in result["cells"]})
    for mode, title in ((None, "cold"), ("replan", "re-plan")):
        # (p95), not [p95]: rich would read the brackets as markup and drop them
        t = Table(title=f"decision time (ms), {title}: median (p95)")
        t.add_column("stages", justify="right")
        for v in vs:
            t.add_column(f"V={v}", justify="right")
        for s in sorted({c["stages"] for c in result["cells"]}):
            row = [str(s)]
            for v in vs:
                c = next((c for c in result["cells"] if c["stages"] == s and c["variants"] == v), None)
                c = c if mode is None or c is None else c.get(mode)
                row.append("" if not c or "median_ms" not in c else f"{c['median_ms']:.1f} ({c['p95_ms']:.0f})")
            t.add_row(*row)
        con.print(t)
    for c in result["cells"]:
        m = c.get("mix2")
        if m and "median_ms" in m:
            r = m.get("replan") or {}
            again = f"; re-plan median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.0f} ms" if "median_ms" in r else ""
            con.print(
                f"{c['stages']}x{c['variants']} with mixing (k=2): median {m['median_ms']:.1f} ms, p95 "
                f"{m['p95_ms']:.0f} ms{again}; a split beat one variant per stage in {m['improved']}/{m['instances']}"
            )
    o = result["oracle"]
    con.print(f"oracle: {o['agree']}/{o['instances']} agree within 1e-6 relative")
    for k, v in result.get("summary", {}).items():
        con.print(f"{k}: {v}")


def _read_result(path: Path) -> dict:
    from pipetune.errors import PipetuneError

    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PipetuneError(
            f"--from-json {path}: cannot read a benchmark result ({e}); give the file that "
            "`pipetune bench optimizer --json` printed"
        ) from None
    if not isinstance(result, dict) or not isinstance(result.get("cells"), list) or "oracle" not in result:
        raise PipetuneError(f"--from-json {path}: not a `bench optimizer --json` result (needs 'cells' and 'oracle')")
    return result


def _plot_optimizer(result: dict, path: Path) -> None:
    """Heatmap of the median decision time per (stages, variants) cell, log colour scale, values written in."""
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()
    import numpy as np
    from matplotlib.colors import LogNorm

    cells = result["cells"]
    ss = sorted({c["stages"] for c in cells})
    vs = sorted({c["variants"] for c in cells})
    grid = np.full((len(ss), len(vs)), np.nan)
    for c in cells:
        grid[ss.index(c["stages"]), vs.index(c["variants"])] = c["median_ms"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(vs), 1.2 + 0.42 * len(ss)))
    im = ax.imshow(grid, cmap="viridis", norm=LogNorm(vmin=np.nanmin(grid), vmax=np.nanmax(grid)), aspect="auto")
    for i in range(len(ss)):
        for j in range(len(vs)):
            if np.isfinite(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0f}" if grid[i, j] >= 10 else f"{grid[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < np.sqrt(np.nanmax(grid)) else "black",
                )
    ax.set_xticks(range(len(vs)), [str(v) for v in vs])
    ax.set_yticks(range(len(ss)), [str(s) for s in ss])
    ax.set_xlabel("variants per stage")
    ax.set_ylabel("stages")
    fig.colorbar(im, ax=ax, label="median decision time (ms)")
    o, summ = result["oracle"], result.get("summary", {})
    title = f"decision time, median of {cells[0].get('instances', '?')} random instances per cell"
    if "median_ms_9x9" in summ:
        title += f"\n9x9: {summ['median_ms_9x9']:.1f} ms ({summ['speedup_vs_ipa_9x9']:.0f}x faster than IPA's 2.1 s)"
    title += f"; oracle {o['agree']}/{o['instances']}"
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


@bench_app.command("serving")
def bench_serving(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    num_cpus: int = number(8, "--num-cpus", allowed=Range(int, ge=3, le=1024), help="logical CPUs of the local Ray"),
    port: int = number(8765, allowed=PORT, help="HTTP port of the endpoint under test"),
    step_s: float = number(
        8.0, allowed=Range(float, ge=1, le=3600), help="seconds per offered rate when finding the ceiling"
    ),
    noop: bool = typer.Option(True, "--noop/--no-noop", help="the no-op figures (hop, ceiling, applies, lost)"),
    text: bool = typer.Option(True, "--text/--no-text", help="the text pipeline: CPU per request, max rate held"),
    text_rps: float = number(20.0, "--text-rps", allowed=Range(float, ge=1, le=500), help="text: offered load"),
    text_seconds: float = number(
        30.0, "--text-seconds", allowed=Range(float, ge=5, le=3600), help="text: seconds of measured load"
    ),
    trial_s: float = number(
        12.0, "--trial-s", allowed=Range(float, ge=3, le=600), help="text: seconds per rate tried for the max"
    ),
    systems: str = typer.Option(
        "pipetune,before,peer",
        "--systems",
        help="text: which of pipetune, before, peer, direct, direct+batching (comma-separated)",
    ),
) -> None:
    """The live runtime: on no-op models (hop overhead, 2-stage ceiling, apply times, load generator, lost) and
    on the text pipeline against the idiomatic Ray Serve peer and the path before (CPU ms per request by role,
    the highest rate held)."""
    import os

    from pipetune import jsonio
    from pipetune.tooling.serving_bench import run_serving_benchmark

    err = Console(stderr=True)
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    import contextlib
    import sys

    # Ray prints its own messages (e.g. "(raylet) Task ServeController... failed" at shutdown) to stdout:
    # while it runs, stdout is stderr, so that --json prints one JSON object and nothing else.
    from pipetune.errors import PipetuneError
    from pipetune.tooling.serving_bench import TEXT_SYSTEMS, run_text_benchmark

    chosen = [x.strip() for x in systems.split(",") if x.strip()]
    wrong = [x for x in chosen if x not in TEXT_SYSTEMS]
    if wrong or not chosen:
        raise PipetuneError(f"--systems {systems!r}: choose among {', '.join(TEXT_SYSTEMS)}, comma-separated")
    if not (noop or text):
        raise PipetuneError("--no-noop and --no-text leave nothing to measure: drop one of them")
    result: dict = {}
    with contextlib.redirect_stdout(sys.stderr):
        if noop:
            result = run_serving_benchmark(num_cpus=num_cpus, port=port, step_s=step_s, progress=err.print)
        if text:
            result["text"] = run_text_benchmark(
                rps=text_rps, seconds=text_seconds, trial_s=trial_s, port=port + 1, systems=chosen,
                progress=err.print,
            )  # fmt: skip
    if as_json:
        print(jsonio.dumps(result))
        return
    con = Console()
    if "text" in result:
        t = result["text"]
        con.print(f"text pipeline on {t['cpu_model']} ({t['offered_rps']:g} rps for {t['seconds']:g} s):")
        for name in chosen:
            c = t[name]["cpu_ms_per_request"]
            con.print(
                f"  {name:8s} CPU ms per request: models {c['models']:.2f}, runtime {c['runtime']:.2f} "
                f"({c['runtime_over_models']:.2f}x models), beside {c['beside']:.2f}, loadgen {c['loadgen']:.2f}; "
                f"max rate held {t[name]['max_rps']:.1f} rps"
            )
        for k in ("runtime_vs_peer", "max_rps_vs_peer", "max_rps_vs_before"):
            if k in t:
                con.print(f"  {k}: {t[k]:.2f}")
    if not noop:
        return
    h, a = result["hop_overhead_ms"], result["apply_s"]
    con.print(
        f"one stage hop: p50 {h['p50']:.2f} ms, p99 {h['p99']:.2f} ms (goal <= 3 / 7 ms); bare Ray Serve "
        f"deployment in the same run: {h['peer_p50']:.2f} / {h['peer_p99']:.2f} ms (ratio {h['ratio_p50']:.2f} / "
        f"{h['ratio_p99']:.2f})"
    )
    con.print(f"2-stage no-op ceiling: {result['noop_max_rps']:g} rps at p99 <= 200 ms (goal >= 90)")
    con.print(
        f"apply: batch {a['batch']:.2f} s (goal <= 0.5), replica {a['replicas']:.2f} s (goal <= 3 + load), "
        f"variant {a['variant']:.2f} s, of which after ready {a['variant_after_ready']:.2f} s (goal <= 0.5)"
    )
    con.print(
        f"lost during the applies: {result['lost']} of {result['apply_phase']['sent']} (goal 0); "
        f"dropped at the deadline (504, SLA violations): {result['dropped']}"
    )
    if result.get("loadgen") and "error" in result["loadgen"]:
        con.print(f"load generator: not measured ({result['loadgen']['error']})")
    elif result.get("loadgen"):
        g = result["loadgen"]
        con.print(
            f"load generator: {g['achieved_rps']:.0f} of {g['target_rps']:.0f} rps, send error p99 {g['send_error_p99_ms']:.2f} ms"
        )


@bench_app.command("loadgen")
def bench_loadgen_cmd(
    rate: float = number(500.0, "--rate", allowed=LOADGEN_RATE, help="target requests per second (Poisson arrivals)"),
    duration: float = number(10.0, "--duration", allowed=Range(float, ge=1, le=3600), help="seconds"),
    detail: bool = typer.Option(False, "--detail", help="add send-error p50/max, latency p99, CPU per request"),
) -> None:
    """The load generator alone against a trivial local V2 server (another process): rate and send accuracy."""
    from pipetune.errors import PipetuneError
    from pipetune.loadgen import bench_loadgen

    if rate * round(duration) > HARD_MAX_REQUESTS:
        raise PipetuneError(
            f"--rate {rate:g} x --duration {duration:g}: at most {HARD_MAX_REQUESTS:,} requests are sent in one run; "
            "lower one of them"
        )
    print(jsonio.dumps(bench_loadgen(rate, duration, detail=detail)))


@bench_app.command("reliability")
def bench_reliability(
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    short: bool = typer.Option(False, "--short", help="every scenario shortened (15-20 s; 2,000 malformed requests)"),
    rps: float | None = number(
        None,
        "--rps",
        allowed=Range(float, gt=0, le=1000),
        help="the sustainable rate offered (default: found first, the highest step rate served within the SLA)",
    ),  # fmt: skip
    sustain_s: float | None = number(
        None, "--sustain-s", allowed=Range(float, ge=1, le=86400), help="seconds at the sustainable rate (600)"
    ),
    overload_s: float | None = number(
        None, "--overload-s", allowed=Range(float, ge=1, le=3600), help="seconds at 2x the sustainable rate (120)"
    ),
    malformed: int | None = number(
        None, "--malformed", allowed=Range(int, ge=1, le=1_000_000), help="malformed requests sent (10,000)"
    ),
    num_cpus: int = number(8, "--num-cpus", allowed=Range(int, ge=4, le=1024), help="logical CPUs of the local Ray"),
    port: int = number(8766, allowed=PORT, help="HTTP port of the endpoint under test"),
    scenarios: str | None = typer.Option(
        None, "--scenarios", help="comma-separated scenarios to run (default: all): " + ", ".join(SCENARIOS)
    ),
) -> None:
    """The live digits pipeline under sustained load, 2x overload, a killed replica (one of two, and a stage's only
    one), a variant switch, Ray Serve's controller restarted, the adapter killed and restarted, and a flood of
    malformed requests: per scenario what was sent, completed, refused, failed (by reason) and lost."""
    import contextlib
    import os
    import sys

    from rich.progress import Progress
    from rich.table import Table

    from pipetune.tooling.reliability_bench import parse_scenarios, run_reliability_benchmark

    chosen = parse_scenarios(scenarios) if scenarios is not None else list(SCENARIOS)
    err = Console(stderr=True)
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    durations = {k: v for k, v in (("sustainable", sustain_s), ("overload-2x", overload_s)) if v is not None}
    # Ray prints to stdout; while it runs stdout is stderr, so that --json prints one JSON object and nothing else.
    with contextlib.redirect_stdout(sys.stderr), Progress(console=err) as prog:
        task = prog.add_task("reliability scenarios", total=len(chosen))
        result = run_reliability_benchmark(
            rps=rps, short=short, durations=durations, malformed=malformed, scenarios=chosen, port=port,
            num_cpus=num_cpus, progress=prog.console.print, advance=lambda: prog.advance(task),
        )  # fmt: skip
    if as_json:
        print(jsonio.dumps(result))
        return
    t = Table(title=f"reliability ({'short' if short else 'full'} run)")
    for col in ("scenario", "offered rps", "s", "sent", "completed", "refused", "failed", "lost", "p99 ok (s)"):
        t.add_column(col)
    for r in result["scenarios"]:
        p99 = r["p99_accepted_s"]
        t.add_row(
            r["scenario"], f"{r['offered_rps']:g}", f"{r['duration_s']:g}", str(r["sent"]), str(r["completed"]),
            str(r["refused"]), str(sum(r["failed"].values())), str(r["lost"]), "-" if p99 is None else f"{p99:.3f}",
        )  # fmt: skip
    Console().print(t)
