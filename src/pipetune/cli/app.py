"""The root typer app that every command module registers on.

A command module imports `app` from here and declares its commands on it; `pipetune.cli.main` imports every
command module (so that they register) and runs the app. Command modules never import `main`, so the CLI has no
import cycle. To add a command: write `cli/NAME.py` with `from pipetune.cli.app import app`, then add one import
line to `cli/main.py`. Bounded numbers and output paths are declared with `pipetune.cli.options`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

err_console = Console(stderr=True)


def usage_error_line(e: Exception) -> str:
    """The one `error:` line of a usage error (a bad flag, value or argument), with where to read the usage."""
    msg = e.format_message() if hasattr(e, "format_message") else str(e)
    ctx = getattr(e, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return " ".join(str(msg).split()) + hint


def _click_errors() -> tuple[Any, Any, Any]:
    """(ClickException, NoArgsIsHelpError, UsageError) of the click that typer runs on (its own copy since 0.2x)."""
    try:
        from typer._click import exceptions as ex
    except ImportError:  # pragma: no cover - a typer on the click package
        from click import exceptions as ex  # type: ignore[no-redef]
    return ex.ClickException, getattr(ex, "NoArgsIsHelpError", ()), ex.UsageError


class PipetuneGroup(TyperGroup):
    """The root group: a usage error prints one `error: ...` line on stderr and exits 2, like every other bad
    input (click would print the usage and a boxed message); `Ctrl-C` exits 130. Everything else is typer's."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        ClickException, NoArgsIsHelpError, UsageError = _click_errors()
        if prog_name is None and args is None:
            prog_name = "pipetune"
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as e:  # `pipetune` / `pipetune trace` alone: the help, as typer shows it
            if not standalone_mode:
                raise
            e.show()
            sys.exit(e.exit_code)
        except UsageError as e:
            if not standalone_mode:
                raise
            err_console.print(f"[bold red]error:[/] {escape(usage_error_line(e))}", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except ClickException as e:
            if not standalone_mode:
                raise
            err_console.print(f"[bold red]error:[/] {escape(e.format_message())}", highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            err_console.print("interrupted")
            sys.exit(130)
        if not standalone_mode:
            return rv
        # non-standalone typer returns the exit code of a `typer.Exit(code)` (and of --help: 0)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


app = typer.Typer(
    name="pipetune",
    cls=PipetuneGroup,
    help=(
        "Serve multi-model inference pipelines and keep re-configuring them under an end-to-end SLA.\n\n"
        "Exit codes: 0 ok; 1 the command ran and its answer is negative (an infeasible plan, failed runs or "
        "cells, a failed check); 2 bad input (usage, config, file or value; one `error:` line, no traceback); "
        "130 interrupted (Ctrl-C)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
