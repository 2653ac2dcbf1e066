"""`pipetune` entry point. User errors (PipetuneError) print one clear message and exit 2, no traceback."""

from __future__ import annotations

import sys

from rich.markup import escape

# Command groups register themselves on `app` (from `pipetune.cli.app`) when imported, one module per concern.
from pipetune.cli import bench as _bench  # noqa: F401
from pipetune.cli import bench_simulator as _bench_simulator  # noqa: F401
from pipetune.cli import demo as _demo  # noqa: F401
from pipetune.cli import experiment as _experiment  # noqa: F401
from pipetune.cli import loadtest as _loadtest  # noqa: F401
from pipetune.cli import plan as _plan  # noqa: F401
from pipetune.cli import predictor as _predictor  # noqa: F401
from pipetune.cli import profile as _profile  # noqa: F401
from pipetune.cli import serve as _serve  # noqa: F401
from pipetune.cli import simulate as _simulate  # noqa: F401
from pipetune.cli import trace as _trace  # noqa: F401
from pipetune.cli.app import app, err_console
from pipetune.errors import PipetuneError

__all__ = ["app", "run"]


def run() -> None:
    try:
        app()
    except PipetuneError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
