"""`pipetune profile` (measure real models into ProfileTables), `pipetune profile import` (profiles made by other
tools) and `pipetune accuracy` (score every variant)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from pipetune.cli.app import app
from pipetune.cli.options import COUNT, PORT, POSITIVE, THREADS, Range, number, out_file
from pipetune.errors import PipetuneError


class _MeasureByDefault(TyperGroup):
    """`pipetune profile SPEC ...` measures (as before); `pipetune profile import ...` imports; `pipetune profile
    --runtime SPEC` measures the runtime (`profile runtime`)."""

    def parse_args(self, ctx, args):  # noqa: ANN001, ANN201
        if "--runtime" in args:  # `pipetune profile --runtime SPEC` is `pipetune profile runtime SPEC`
            args = ["runtime", *(a for a in args if a != "--runtime")]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["measure", *args]
        return super().parse_args(ctx, args)


profile_app = typer.Typer(
    cls=_MeasureByDefault,
    no_args_is_help=True,
    help="Measure real models into a ProfileTable (`profile SPEC`, i.e. `profile measure SPEC`), the serving "
    "runtime's own CPU on this machine (`profile runtime SPEC`), or import a profile made by another tool "
    "(`profile import FORMAT FILE ...`).",
)
app.add_typer(profile_app, name="profile")

# Wide enough for the result tables when stdout is a file or a pipe (rich would fold them at 80 columns).
console = Console() if sys.stdout.isatty() else Console(width=150)


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if not text:
        return None
    try:
        vals = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise PipetuneError(f"{flag} {text!r}: give comma-separated positive integers, e.g. 1,2,4,8") from None
    if not vals or any(v < 1 for v in vals):
        raise PipetuneError(f"{flag} {text!r}: give comma-separated positive integers, e.g. 1,2,4,8")
    return vals


def _names(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _check_names(pipeline, stages: list[str] | None, variants: list[str] | None):  # noqa: ANN001, ANN202
    """(stages, variants) as given, once each names a stage / a variant of the chosen stages; a usage error names
    the unknown one and the known ones (else an unknown variant would silently measure nothing)."""
    for s in stages or []:
        if s not in pipeline.stage_names:
            raise PipetuneError(f"--stages: unknown stage {s!r}; the pipeline has {', '.join(pipeline.stage_names)}")
    known = [v.name for s in (stages or pipeline.stage_names) for v in pipeline.stage(s).variants]
    for v in variants or []:
        if v not in known:
            where = f" of stage(s) {', '.join(stages)}" if stages else ""
            raise PipetuneError(f"--variants: unknown variant {v!r}; the variants{where} are {', '.join(known)}")
    return stages, variants


def _load(spec: Path):  # noqa: ANN202
    from pipetune.spec import load_pipeline

    return load_pipeline(spec, check_profiles=False)


@profile_app.command("measure")
def profile_cmd(
    spec: Path = typer.Argument(..., help="pipeline YAML whose variants name their models (`model:`)"),
    stages: str = typer.Option(None, "--stages", help="comma-separated stages (default: all)"),
    variants: str = typer.Option(None, "--variants", help="comma-separated variant names (default: all)"),
    batches: str = typer.Option(None, "--batches", help="batch sizes, e.g. 1,2,4,8 (default: the spec's)"),
    cores: str = typer.Option(None, "--cores", help="cores per replica, e.g. 1,2 (default: the spec's)"),
    budget: str = typer.Option(None, "--budget", help="time budget for the whole run, e.g. 90s, 20m"),
    cell_budget: float | None = number(
        None, "--cell-budget", allowed=POSITIVE, help="seconds of timed batches per cell"
    ),
    min_batches: int = number(
        100, "--min-batches", allowed=COUNT, help="timed batches per cell where the budget allows"
    ),
    force: bool = typer.Option(False, "--force", help="re-measure cells already in the table"),
    out: Path | None = out_file(None, "--out", help="write every row here instead of the spec's profile files"),
    no_plot: bool = typer.Option(False, "--no-plot", help="skip the latency/throughput PNG"),
    refuse_unclean: bool = typer.Option(
        False, "--refuse-unclean", help="do not write cells still contended or unphysical after re-measuring"
    ),
    retries: int = number(
        2, "--retries", allowed=Range(int, ge=0, le=100), help="re-measurements of a contended or unphysical cell"
    ),
) -> None:
    """Measure latency (p50/p99), saturation throughput, load time and memory per (variant, batch, cores).

    Resumable: cells already measured are skipped. A variant that fails is reported and skipped; exit 1 when
    one failed.
    """
    from pipetune.profiler.pipeline import parse_budget, profile_pipeline

    budget_s = parse_budget(budget)
    if budget_s is not None and not math.isfinite(budget_s):
        raise PipetuneError(f"--budget {budget!r}: write a finite duration such as 90s, 20m or 1h")
    batch_list, core_list = _int_list(batches, "--batches"), _int_list(cores, "--cores")
    pipeline = _load(spec)
    stage_names, variant_names = _check_names(pipeline, _names(stages), _names(variants))
    report = profile_pipeline(
        pipeline,
        stages=stage_names,
        variants=variant_names,
        batches=batch_list,
        cores=core_list,
        budget_s=budget_s,
        cell_budget_s=cell_budget,
        min_batches=min_batches,
        force=force,
        out=out,
        plot=not no_plot,
        refuse_unclean=refuse_unclean,
        retries=retries,
    )
    t = Table(title=f"{pipeline.name}: {len(report.measured)} cell(s) measured in {report.elapsed_s:.0f} s")
    for col in ("stage", "variant", "cores", "batch", "p50 ms", "p95 ms", "p99 ms", "items/s", "load s", "MB", "n"):
        t.add_column(col, justify="right" if col not in ("stage", "variant") else "left")
    for stage, m in report.measured:
        t.add_row(
            stage,
            m.variant,
            str(m.cores),
            str(m.batch),
            f"{m.latency_p50_s * 1e3:.3g}",
            f"{m.latency_p95_s * 1e3:.3g}",
            f"{m.latency_p99_s * 1e3:.3g}",
            f"{m.throughput_rps:.4g}",
            f"{m.load_time_s:.2f}",
            f"{m.memory_mb:.0f}",
            str(m.n_batches),
        )
    console.print(t)
    for s, m in report.flagged():
        what = "refused" if refuse_unclean else "flagged"
        flags = escape(f"{s}/{m.variant} b{m.batch} c{m.cores}: {'; '.join(m.flags)}")
        console.print(f"[yellow]{what}[/] {flags}", highlight=False)
    for s, v, why in report.skipped:
        console.print(f"[dim]skipped {escape(f'{s}/{v}: {why}')}[/]", highlight=False)
    for s, v, c, todo in report.out_of_budget:
        console.print(f"[yellow]out of budget[/] {escape(f'{s}/{v} cores={c} batches={todo}')}: run again to resume")
    for s, v, c, msg in report.failed:
        console.print(f"[red]FAILED[/] {escape(f'{s}/{v} on {c} core(s): {msg}')}", highlight=False)
    for f in report.files:
        console.print(f"wrote {f}")
    for f in report.plots:
        console.print(f"plot  {f}")
    if report.failed:
        raise typer.Exit(1)


@profile_app.command("runtime")
def runtime_cmd(
    spec: Path = typer.Argument(..., help="pipeline YAML (its models are served live on a local Ray)"),
    rps: float = number(20.0, "--rps", allowed=Range(float, ge=1, le=500), help="requests per second while measuring"),
    seconds: float = number(30.0, "--seconds", allowed=Range(float, ge=5, le=600), help="seconds of measured load"),
    num_cpus: int = number(16, "--num-cpus", allowed=Range(int, ge=3, le=1024), help="logical CPUs of the local Ray"),
    port: int = number(8790, "--port", allowed=PORT, help="HTTP port of the endpoint while measuring"),
    out: Path | None = out_file(None, "--out", help="write here instead of runtime.json beside the model profile"),
) -> None:
    """Measure the serving runtime's own CPU on this machine (per request, per stage call, beside the path) and
    its cores: the RuntimeProfile the planner counts against the host and the simulator twin charges."""
    import os

    from pipetune import jsonio
    from pipetune.profiles import load_profiles
    from pipetune.runtime_profile import runtime_path
    from pipetune.serving.runtime_probe import measure_runtime

    pipeline = _load(spec)
    target = out or runtime_path(pipeline)
    if target is None:
        raise PipetuneError(f"{spec}: the pipeline names no profile, so there is no place beside it; give --out FILE")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    err = Console(stderr=True)
    rt = measure_runtime(
        pipeline, load_profiles(pipeline), rps=rps, seconds=seconds, num_cpus=num_cpus, port=port, progress=err.print
    )
    Path(target).write_text(jsonio.dumps(rt.to_dict(), indent=2) + "\n")
    c = rt.conditions
    console.print(
        f"runtime on {rt.host_cores:g} cores ({c.get('cpu_model')}): {rt.request_cpu_s * 1e3:.2f} ms per request in "
        f"the ingress, {rt.call_cpu_s * 1e3:.2f} ms per stage call, {rt.side_cpu_s * 1e3:.2f} ms per request "
        f"beside the path; models {c.get('models_cpu_ms_per_request', 0):.2f} ms per request; inline stages "
        f"{c.get('inline_stages')}"
    )
    console.print(f"wrote {target}")


@profile_app.command("import")
def import_cmd(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="triton (perf_analyzer -f CSV) | capacity | generic"),
    files: list[str] = typer.Argument(..., help="files to import; FILE=VARIANT:BATCH:CORES names a file's cell"),
    out: Path = out_file(..., "-o", "--out", help="the ProfileTable CSV to write"),
    variant: str = typer.Option(None, "--variant", help="variant of every file that does not name one"),
    batch: int | None = number(
        None, "--batch", allowed=COUNT, help="batch size (perf_analyzer's -b) of files that do not name one"
    ),
    cores: int | None = number(
        None, "--cores", allowed=Range(int, ge=1, le=1024), help="cores per replica of files that do not name them"
    ),
    mapping: str = typer.Option(None, "--map", help="generic: OURS=THEIRS column names, e.g. latency_p99_s=p99"),
    unit: str = typer.Option("s", "--unit", help="generic: latency unit of the file (s, ms, us)"),
    prefix: str = typer.Option("resnet", "--prefix", help="capacity: variant name = PREFIX + ARCH"),
    p99_ratio: float = number(
        1.0,
        "--p99-ratio",
        allowed=Range(float, ge=1, le=1000),
        help="capacity: p99 = mean x this (the table has no tails)",
    ),
    force: bool = typer.Option(False, "--force", help="overwrite OUT if it exists"),
) -> None:
    """Convert profiles made by other tools into a validated ProfileTable, provenance in its header.

    triton: one perf_analyzer -f CSV per (variant, batch, cores) cell; latency from the lowest concurrency, throughput
    the highest Inferences/Second (see docs/profiles.md). capacity: InfAdapter's capacity table (one cell per ARCH,
    BATCH, CPU). generic: any CSV with --map and --unit.
    """
    from pipetune.profiler.importers import import_profiles

    if out.exists() and not force:
        raise PipetuneError(f"-o {out}: the file exists; pass --force to overwrite it or choose another path")
    table = import_profiles(
        fmt,
        files,
        variant=variant,
        batch=batch,
        cores=cores,
        mapping=mapping,
        unit=unit,
        prefix=prefix,
        p99_ratio=p99_ratio,
    )
    table.to_csv(out)
    t = Table(title=f"imported {len(table.rows)} cell(s) from {len(files)} file(s) -> {out}")
    for col in ("variant", "batch", "cores", "mean ms", "p50 ms", "p99 ms", "items/s"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in sorted(table.rows, key=lambda r: (r.variant, r.cores, r.batch)):
        t.add_row(
            r.variant,
            str(r.batch),
            str(r.cores),
            f"{r.latency_mean_s * 1e3:.4g}",
            f"{r.latency_p50_s * 1e3:.4g}",
            f"{r.latency_p99_s * 1e3:.4g}",
            f"{r.throughput_rps:.4g}",
        )
    console.print(t)
    console.print(f"wrote {out}")


@app.command("accuracy")
def accuracy_cmd(
    spec: Path = typer.Argument(..., help="pipeline YAML whose variants name their models (`model:`)"),
    stages: str = typer.Option(None, "--stages", help="comma-separated stages (default: all)"),
    variants: str = typer.Option(None, "--variants", help="comma-separated variant names (default: all)"),
    limit: int | None = number(
        None, "--limit", allowed=COUNT, help="score only the first N labelled examples (quick check)"
    ),
    write: bool = typer.Option(False, "--write", help="write the measured accuracies into the spec file"),
    threads: int = number(1, "--threads", allowed=THREADS, help="math-library threads (1 avoids oversubscription)"),
) -> None:
    """Measure each variant's accuracy on the labelled data its adapter ships; optionally write it into the spec.

    Exit 1 when a variant could not be scored (its error is in the table)."""
    from pipetune.profiler.accuracy import measure_accuracy, write_accuracies

    if write and limit is not None:
        raise PipetuneError("--write with --limit would store a subset's accuracy; drop --limit to write")
    pipeline = _load(spec)
    stage_names, variant_names = _check_names(pipeline, _names(stages), _names(variants))
    from pipetune.models.base import pin_threads

    pin_threads(threads)
    results = measure_accuracy(pipeline, stages=stage_names, variants=variant_names, limit=limit)
    declared = {(s.name, v.name): v.accuracy for s in pipeline.stages for v in s.variants}
    t = Table(title=f"{pipeline.name}: accuracy on held-out labelled data")
    for col in ("stage", "variant", "measured", "in spec", "n", "seconds"):
        t.add_column(col)
    for r in results:
        acc = f"{r.accuracy:.4f}" if r.accuracy is not None else f"[red]{escape(str(r.error))}[/]"
        t.add_row(r.stage, r.variant, acc, f"{declared[(r.stage, r.variant)]:.4f}", str(r.n), f"{r.seconds:.1f}")
    console.print(t)
    if write:
        good = {(r.stage, r.variant): r.accuracy for r in results if r.accuracy is not None}
        write_accuracies(spec, good)  # type: ignore[arg-type]
        console.print(f"wrote {len(good)} accuracies into {spec}")
    if any(r.accuracy is None for r in results):
        raise typer.Exit(1)
