"""`pipetune` entry point. User errors (PipetuneError) print one clear message and exit 2, no traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from pipetune.errors import PipetuneError

app = typer.Typer(
    name="pipetune",
    help="Serve multi-model inference pipelines and keep re-configuring them under an end-to-end SLA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

# Command groups register themselves on `app` when imported (one module per concern).
from pipetune.cli import bench as _bench  # noqa: E402,F401
from pipetune.cli import bench_simulator as _bench_simulator  # noqa: E402,F401
from pipetune.cli import demo as _demo  # noqa: E402,F401
from pipetune.cli import experiment as _experiment  # noqa: E402,F401
from pipetune.cli import plan as _plan  # noqa: E402,F401
from pipetune.cli import predictor as _predictor  # noqa: E402,F401
from pipetune.cli import profile as _profile  # noqa: E402,F401
from pipetune.cli import simulate as _simulate  # noqa: E402,F401
from pipetune.cli import trace as _trace  # noqa: E402,F401


def run() -> None:
    try:
        app()
    except PipetuneError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
