"""`pipetune predictor ...`: train the LSTM predictors, score every predictor on pattern windows."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import (
    BATCH,
    COUNT_OR_ZERO,
    EPOCHS,
    FRACTION,
    LEARNING_RATE,
    POSITIVE,
    SEED,
    STEP_S,
    THREADS,
    number,
    out_file,
)
from pipetune.errors import PipetuneError

predictor_app = typer.Typer(help="Load predictors: train, evaluate, list.", no_args_is_help=True)
app.add_typer(predictor_app, name="predictor")
console = Console()
err_console = Console(stderr=True)

EVAL_DEFAULT = ["reactive", "max", "moving-average", "ewma", "arima", "lstm", "quantile-lstm", "adaptive-quantile"]


@predictor_app.command("list")
def list_predictors() -> None:
    """Every predictor, its parameters, and whether it needs training."""
    from pipetune.predictors import DEFAULT_PREDICTOR, PREDICTORS

    table = Table("name", "needs fit", "parameters (defaults)")
    for name, cls in PREDICTORS.items():
        p = cls()
        label = name + (" (default)" if name == DEFAULT_PREDICTOR else "")
        table.add_row(label, "yes" if cls.needs_fit else "no", ", ".join(f"{k}={v}" for k, v in p.get_params().items()))
    console.print(table)


@predictor_app.command("train")
def train(
    trace: Path = typer.Option(..., "--trace", help="Per-second counts to train on (e.g. twitter-train-14d.txt.gz)."),
    kind: str = typer.Option("lstm", "--kind", help="lstm (IPA's, MSE) or quantile-lstm (pinball loss)."),
    output: Path = out_file(..., "-o", "--output", help="Model file to write (.pt, weights + metadata)."),
    epochs: int = number(30, allowed=EPOCHS, help="IPA trains 30 epochs."),
    batch_size: int = number(
        512,
        allowed=BATCH,
        help="IPA uses 64; 512 cuts the optimiser steps 8x so 30 epochs of 14 days fit ~5 min on 2 cores.",
    ),
    lr: float = number(
        3e-3,
        allowed=LEARNING_RATE,
        help="Adam learning rate (IPA: 1e-3 at batch 64; larger batches take larger steps).",
    ),
    quantile: float | None = number(
        None, allowed=FRACTION, help="Pinball-loss quantile (quantile-lstm; default 0.95)."
    ),
    time_budget: float = number(
        270.0, allowed=POSITIVE, help="Stop after the epoch that would pass this many seconds."
    ),
    seed: int = number(0, allowed=SEED),
    threads: int = number(1, allowed=THREADS, help="torch threads (the machine is shared)."),
) -> None:
    """Train an LSTM predictor with a progress bar; the file records its metadata."""
    from pipetune.workloads import load_trace

    if kind not in ("lstm", "quantile-lstm"):
        raise PipetuneError(f"--kind {kind!r}: only lstm and quantile-lstm are trained; the others need no file")
    if quantile is not None and kind != "quantile-lstm":
        raise PipetuneError(f"--quantile {quantile:g}: only --kind quantile-lstm trains for a quantile")
    series = load_trace(trace)  # a bad trace is refused before torch is even imported

    import torch

    from pipetune.predictors import IPALSTM, make_predictor

    torch.set_num_threads(threads)
    p = (
        make_predictor(kind, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, quantile=quantile)
        if quantile is not None
        else make_predictor(kind, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    )
    assert isinstance(p, IPALSTM)
    with Progress(
        TextColumn("training {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(kind, total=epochs, loss="-")

        def step(epoch: int, total: int, loss: float) -> None:
            bar.update(task, completed=epoch, loss=f"{loss:.4f}")

        p.fit(series, progress=step, source=str(trace), time_budget_s=time_budget)
    p.save(output)
    meta = p.metadata_
    console.print(
        f"wrote {output}: {meta['kind']}, {meta['samples']} samples, {meta['epochs_run']}/{epochs} epochs "
        f"in {meta['train_seconds']} s, final {meta['loss']} loss {meta['final_loss']:.4f}"
    )


def _windows(
    trace: Path | None, window: list[str], names: str | None, damping: float, shared: Path | None
) -> tuple[dict, str]:
    from pipetune.workloads import (
        PATTERNS,
        damp,
        load_trace,
        paper_window,
        parse_range,
        slice_trace,
        synthetic_pattern,
    )
    from pipetune.workloads.patterns import default_shared_dir

    if trace is not None:
        x = load_trace(trace)
        if names:  # with --trace, --windows takes comma-separated ranges too
            window = list(window) + [w.strip() for w in names.split(",") if w.strip()]
        if not window:
            return {trace.name: damp(x, damping)}, f"{trace} (whole, damped by {damping:g})"
        out = {}
        for w in window:
            out[w] = damp(slice_trace(x, *parse_range(w)), damping)
        return out, f"{trace} windows {', '.join(window)} (damped by {damping:g})"
    wanted = [n.strip() for n in names.split(",")] if names else list(PATTERNS)
    for n in wanted:
        if n not in PATTERNS:
            raise PipetuneError(f"--windows: {n!r} is not a pattern; use some of {', '.join(PATTERNS)}")
    if shared is not None and not shared.is_dir():
        raise PipetuneError(f"--shared {shared}: no such folder; give the folder holding traces/paper-windows")
    # Only a missing window file falls back to the synthetic patterns; a file that is there must read (any other
    # error, a corrupt file, is the user's to see). The layout is paper_window's: SHARED/traces/paper-windows/.
    base = shared if shared is not None else default_shared_dir()
    missing = [n for n in wanted if not (base / "traces" / "paper-windows" / f"{n}.txt").is_file()]
    if missing and shared is not None:
        raise PipetuneError(f"--shared {shared}: no traces/paper-windows/{missing[0]}.txt in it")
    if missing:
        err_console.print(
            f"[yellow]IPA's paper windows not found ({base / 'traces' / 'paper-windows'}); "
            "scoring seeded synthetic patterns[/]",
            highlight=False,
        )
        return {n: synthetic_pattern(n) for n in wanted}, "synthetic patterns (seed 0, peak 30 rps)"
    return {n: paper_window(n, base, damping) for n in wanted}, f"IPA's paper windows, damped by {damping:g}"


@predictor_app.command("eval")
def evaluate_cmd(
    predictors: str = typer.Option(",".join(EVAL_DEFAULT), "--predictors", "-p", help="Comma-separated names."),
    trace: Path | None = typer.Option(None, "--trace", help="Score on this trace instead of IPA's windows."),
    window: list[str] = typer.Option([], "--window", "-w", help="START:STOP or START+DURATION in --trace; repeatable."),
    windows: str | None = typer.Option(
        None, "--windows", help="Paper windows by name (bursty,steady-low); with --trace, ranges (0:1200,5000+1200)."
    ),
    damping: float = number(8.0, allowed=POSITIVE, help="Divide the counts by this (IPA: 8)."),
    shared: Path | None = typer.Option(
        None, "--shared", help="Folder holding traces/paper-windows (default ../shared)."
    ),
    interval: int = number(10, allowed=STEP_S, help="Seconds between decisions."),
    horizon: int = number(20, allowed=STEP_S, help="Seconds the prediction must cover (target: their max)."),
    warmup: int = number(120, allowed=COUNT_OR_ZERO, help="First scored decision (s into each window)."),
    lstm_model: Path | None = typer.Option(None, help="Trained lstm file (default: the shipped one)."),
    quantile_model: Path | None = typer.Option(None, help="Trained quantile-lstm file (default: shipped)."),
    plot: Path | None = out_file(None, "--plot", help="PNG: predicted vs realised, default predictor and lstm."),
    json_out: bool = typer.Option(False, "--json", help='Print {"predictors": [...]} as JSON.'),
) -> None:
    """Score predictors: SMAPE, under-prediction rate and over-provisioning against the next-20-s max."""
    import torch

    from pipetune.predictors import DEFAULT_PREDICTOR, PREDICTORS, make_predictor
    from pipetune.predictors.evaluate import evaluate, plot_scores

    torch.set_num_threads(1)
    names = [n.strip() for n in predictors.split(",") if n.strip()]
    names = [DEFAULT_PREDICTOR if n == "default" else n for n in names]
    for n in names:
        if n not in PREDICTORS:
            raise PipetuneError(f"--predictors: {n!r} is unknown; use some of default, {', '.join(PREDICTORS)}")
    # Every predictor is made (a model file read) before the windows are read or any notice printed: a bad
    # file is one error line.
    models = {"lstm": lstm_model, "quantile-lstm": quantile_model}
    flags = {"lstm": "--lstm-model", "quantile-lstm": "--quantile-model"}
    for n, path in models.items():
        if path is not None and n not in names:
            raise PipetuneError(f"{flags[n]} {path}: {n} is not among --predictors; add it or drop the file")
    made, skipped = [], []
    for n in names:
        if n in models:
            path = models[n]
            try:
                made.append(make_predictor(n, model=path) if path else make_predictor(n, pretrained=True))
            except PipetuneError as e:
                if path:
                    raise PipetuneError(f"{flags[n]}: {e}") from None
                skipped.append(f"{n}: {e}")
        else:
            made.append(make_predictor(n))
    data, described = _windows(trace, window, windows, damping, shared)
    scores = []
    with Progress(
        TextColumn("scoring {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("predictors", total=len(made))
        for p in made:
            bar.update(task, description=p.name)
            scores.append(evaluate(p, data, interval=interval, horizon=horizon, warmup=warmup))
            bar.advance(task)
    if json_out:
        out = {
            "windows": described,
            "interval_s": interval,
            "horizon_s": horizon,
            "warmup_s": warmup,
            "predictors": [s.as_dict() for s in scores],
        }
        if skipped:
            out["skipped"] = skipped
        print(jsonio.dumps(out, indent=1))
    else:
        table = Table("predictor", "SMAPE", "under rate", "over-provision", "mean over", "predict ms", title=described)
        for s in scores:
            table.add_row(
                s.name + (" (default)" if s.name == DEFAULT_PREDICTOR else ""),
                f"{s.smape:.1%}",
                f"{s.under_rate:.1%}",
                f"{s.over_provision:.1%}",
                f"{s.mean_over:.1%}",
                f"{s.predict_ms:.3f}",
            )
        console.print(table)
        for why in skipped:
            console.print(f"[yellow]skipped {escape(why)}[/]")
    if plot is not None:
        shown = [s for s in scores if s.name in (DEFAULT_PREDICTOR, "lstm")] or scores[:1]
        plot_scores(shown, plot, title=f"predicted vs realised max of the next {horizon} s — {described}")
        if not json_out:
            console.print(f"plot: {plot}")
