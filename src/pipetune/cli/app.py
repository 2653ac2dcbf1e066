"""The root typer app that every command module registers on.

A command module imports `app` from here and declares its commands on it; `pipetune.cli.main` imports every
command module (so that they register) and runs the app. Command modules never import `main`, so the CLI has no
import cycle. To add a command: write `cli/NAME.py` with `from pipetune.cli.app import app`, then add one import
line to `cli/main.py`.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="pipetune",
    help=(
        "Serve multi-model inference pipelines and keep re-configuring them under an end-to-end SLA.\n\n"
        "Exit codes: 0 ok; 1 the command ran and its answer is negative (e.g. a failed check); "
        "2 bad input (usage, config, file or value; one `error:` line, no traceback); 130 interrupted (Ctrl-C)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)
