"""`pipetune` entry point. User errors print one line `error: ...` to stderr and exit 2, no traceback.

Exit codes: 0 ok; 1 the command ran and its answer is negative (`plan` found no feasible plan, `experiment run`
had failed runs, `profile` a failed variant, `accuracy` an unscored one, a solver failure); 2 bad input; 130
interrupted (Ctrl-C).

Bad input is caught in two places. While the command line is parsed (`pipetune.cli.app.PipetuneGroup`): a usage
error, and every bounded number and output path, whose constraints are declared once with the option
(`pipetune.cli.options`), so a bad value never starts any work. While the command runs (`run` below): pipetune's
own `PipetuneError`, a pydantic `ValidationError`, any other `ValueError` raised while checking input (among them
`UnicodeDecodeError` of a non-UTF-8 YAML/CSV and `json.JSONDecodeError` of a corrupt file), and an `OSError` on a
path the user named (missing file, no permission). Anything else is a bug and keeps its traceback; so does every
error when `PIPETUNE_TRACEBACK=1`.
"""

from __future__ import annotations

import json
import os
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
from pipetune.cli import suggest_sla as _suggest_sla  # noqa: F401
from pipetune.cli import trace as _trace  # noqa: F401
from pipetune.cli.app import app, err_console
from pipetune.errors import SolverError

__all__ = [
    "app",
    "run",
    "user_error_message",
    "exit_code_for",
    "EXIT_OK",
    "EXIT_NEGATIVE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
]

EXIT_OK = 0
EXIT_NEGATIVE = 1  # the command ran and its answer is negative (an infeasible plan, failed runs, a failed check)
EXIT_USAGE = 2  # bad input: usage, a config, a file, a value
EXIT_INTERRUPTED = 130  # Ctrl-C


def user_error_message(e: BaseException) -> str | None:
    """The one-line message for a user error, or None when `e` is a bug (keep its traceback)."""
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a dependency
        ValidationError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(e, ValidationError):
        errs = e.errors()
        parts = [f"{'.'.join(str(x) for x in d.get('loc', ())) or 'input'}: {d.get('msg', '')}" for d in errs[:3]]
        more = f" (and {len(errs) - 3} more)" if len(errs) > 3 else ""
        return f"invalid {e.title}: " + "; ".join(parts) + more
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
    if isinstance(e, json.JSONDecodeError):
        return f"corrupt JSON: {e.msg} (line {e.lineno}, column {e.colno})"
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    if isinstance(e, ValueError):
        return str(e) or type(e).__name__
    return None


def exit_code_for(e: BaseException) -> int:
    """EXIT_NEGATIVE for a solver that failed on valid input (the question had no answer), else EXIT_USAGE."""
    if isinstance(e, SolverError):
        return EXIT_NEGATIVE
    return EXIT_USAGE


def run() -> None:
    try:
        app()
    except (ValueError, OSError) as e:
        msg = user_error_message(e)
        if msg is None or os.environ.get("PIPETUNE_TRACEBACK") == "1":
            raise
        msg = " ".join(msg.split())  # one line, whatever a library message (torch's, say) holds
        err_console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
        sys.exit(exit_code_for(e))
