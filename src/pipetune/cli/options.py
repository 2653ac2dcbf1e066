"""Every bound on a CLI value, declared once, next to its option, and checked while the command line is parsed.

A numeric option is declared with `number(default, *flags, allowed=RANGE, help=...)`, where RANGE is one of the
named ranges below or a `Range(kind, ge=/gt=/le=/lt=)` written at the option; an output path with `out_file(...)`
or `out_dir(...)`; a list of counts ('1-9,15,25') with a `Counts` parser.
The check runs (through pydantic, as typer parses) before the command's body, so a bad value never starts any
work (a Ray cluster, a training run, a simulation): it is a usage error, exit 2, one line naming the flag and the
range, e.g. `error: Invalid value for '--interval': '0' is not a number > 0`. NaN and ±inf are never allowed.

Input files are checked by the loader that reads them (its message names the file and what is wrong with it).
`tests/test_trust_cli_hostile.py` walks every command and fails for a numeric option declared without a range.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = [
    "Range",
    "number",
    "out_file",
    "out_dir",
    "OutFile",
    "OutDir",
    "POSITIVE",
    "FRACTION",
    "COUNT",
    "COUNT_OR_ZERO",
    "SEED",
    "PORT",
    "THREADS",
    "SECONDS_SPAN",
    "RPS",
    "EPOCHS",
    "BATCH",
    "LEARNING_RATE",
    "STEP_S",
    "WORKERS",
    "MAX_CONCURRENCY",
    "HARD_MAX_REQUESTS",
    "Counts",
    "BENCH_STAGES",
    "BENCH_VARIANTS",
    "LOADGEN_RATE",
    "DISPERSION",
]


@dataclass(frozen=True)
class Range:
    """A finite int or float within optional bounds (`ge`/`gt` below, `le`/`lt` above)."""

    kind: type
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    @cached_property
    def _adapter(self) -> Any:
        from pydantic import Field, TypeAdapter

        bounds = Field(ge=self.ge, gt=self.gt, le=self.le, lt=self.lt, allow_inf_nan=False)
        typ: Any = Annotated[self.kind, bounds]  # type: ignore[valid-type]
        return TypeAdapter(typ)

    @property
    def metavar(self) -> str:
        return "INTEGER" if self.kind is int else "NUMBER"

    def describe(self) -> str:
        """'an integer >= 1', 'a number > 0', 'a number from 0 to 0.9', ..."""
        what = "an integer" if self.kind is int else "a number"
        lo = (">=", self.ge) if self.ge is not None else (">", self.gt) if self.gt is not None else None
        hi = ("<=", self.le) if self.le is not None else ("<", self.lt) if self.lt is not None else None
        if lo and hi:
            if lo[0] == ">=" and hi[0] == "<=":
                return f"{what} from {_num(lo[1])} to {_num(hi[1])}"
            return f"{what} {lo[0]} {_num(lo[1])} and {hi[0]} {_num(hi[1])}"
        if lo or hi:
            op, v = lo or hi  # type: ignore[misc]
            return f"{what} {op} {_num(v)}"
        return "a finite number" if self.kind is float else what

    def __call__(self, value: Any) -> Any:
        """typer's `parser`: the checked value, or a usage error naming the range."""
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(value.strip() if isinstance(value, str) else value)
        except ValidationError:
            raise typer.BadParameter(f"{value!r} is not {self.describe()}") from None

    def __str__(self) -> str:
        return self.describe()


def _num(v: float) -> str:
    return f"{v:,}" if isinstance(v, int) and abs(v) >= 10_000 else f"{v:g}"


# ---- the table: the named ranges every command uses ------------------------------------------------------------
POSITIVE = Range(float, gt=0)  # seconds, rates, factors: > 0, finite
FRACTION = Range(float, gt=0, lt=1)  # a quantile, a probability
COUNT = Range(int, ge=1, le=1_000_000)  # epochs, instances, repeats, batches, ...: at least one, and sane
COUNT_OR_ZERO = Range(int, ge=0, le=1_000_000)
SEED = Range(int, ge=0, le=2**32 - 1)  # numpy's seed range
PORT = Range(int, ge=1, le=65535)
THREADS = Range(int, ge=1, le=1024)
WORKERS = Range(int, ge=0, le=128)  # 0: automatic
SECONDS_SPAN = Range(int, ge=1, le=10_000_000)  # a workload's length in seconds (115 days; kept in memory)
RPS = Range(float, ge=0, le=1e15)  # a request rate to plan for (beyond any pipeline: infeasible, exit 1)
EPOCHS = Range(int, ge=1, le=10_000)
BATCH = Range(int, ge=1, le=1_000_000)  # a training batch
LEARNING_RATE = Range(float, gt=0, le=10)
STEP_S = Range(int, ge=1, le=86_400)  # seconds between decisions, of a horizon: at most a day
LOADGEN_RATE = Range(float, gt=0, le=100_000)  # requests per second one load generator process can send
# variance / mean of per-second request counts; the bound is optimizer.MAX_ARRIVAL_DISPERSION (a test pins it:
# importing the optimizer here would load numpy and HiGHS for every CLI call)
DISPERSION = Range(float, ge=0, le=1000)
HOST_CORES = Range(float, gt=0, le=100_000)  # physical cores of a simulated shared host
HOST_CPU_S = Range(float, ge=0, le=3600)  # CPU-seconds per request or item on the simulated host (0: none)

# Bounds the library enforces too (`pipetune.loadgen`); a test checks they agree. Not imported from there, so
# that `pipetune --help` does not import numpy and the load generator.
MAX_CONCURRENCY = 10_000
HARD_MAX_REQUESTS = 5_000_000


def number(default: Any, *param_decls: str, allowed: Range, help: str = "", **kw: Any) -> Any:
    """A typer option holding a number within `allowed` (checked at parse time; the range is in --help)."""
    text = f"{help} ({allowed})" if help else str(allowed)
    return typer.Option(default, *param_decls, parser=allowed, metavar=allowed.metavar, help=text, **kw)


# ---- output paths ---------------------------------------------------------------------------------------------
def _path(value: Any, what: str) -> Path:
    if isinstance(value, Path):
        return value
    if not str(value).strip():  # Path("") would be the current folder
        raise typer.BadParameter(f"empty path; give a {what}")
    return Path(value)


def _writable_place(p: Path, what: str) -> Path:
    """`p` (a file or a folder to be written, its parents made as needed) can be written, or a usage error."""
    anc = p.parent if not p.exists() else p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if anc != p and not anc.is_dir():
        raise typer.BadParameter(f"{str(p)!r}: {str(anc)!r} is a file, not a folder; give a {what} under a folder")
    if not os.access(anc, os.W_OK):
        raise typer.BadParameter(f"{str(p)!r}: {str(anc)!r} is not writable; give a {what} you may write")
    return p


class OutFile:
    """typer's `parser` of a file to write: not a folder, under a writable folder (made if missing)."""

    def __call__(self, value: Any) -> Path:
        p = _path(value, "file path")
        if p.is_dir():
            raise typer.BadParameter(f"{str(p)!r} is a folder; give a file path")
        return _writable_place(p, "file path")


class OutDir:
    """typer's `parser` of a folder to write into: not a file, writable (made if missing)."""

    def __call__(self, value: Any) -> Path:
        p = _path(value, "folder")
        if p.exists() and not p.is_dir():
            raise typer.BadParameter(f"{str(p)!r} is a file; give a folder")
        return _writable_place(p, "folder")


def out_file(default: Any, *param_decls: str, **kw: Any) -> Any:
    """A typer option naming a file to write (checked at parse time: a folder or an unwritable place is refused)."""
    return typer.Option(default, *param_decls, parser=OutFile(), metavar="FILE", **kw)


def out_dir(default: Any, *param_decls: str, **kw: Any) -> Any:
    """A typer option naming a folder to write into (checked at parse time: a file or an unwritable place is
    refused)."""
    return typer.Option(default, *param_decls, parser=OutDir(), metavar="DIR", **kw)


# ---- lists of counts ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counts:
    """typer's `parser` of counts written '1-9,15,25' (ranges and single values), each within `allowed`; the
    option's value is the sorted list of ints."""

    allowed: Range

    def __call__(self, value: Any) -> list[int]:
        if isinstance(value, list):
            return value
        out: list[int] = []
        try:
            for part in str(value).replace(" ", "").split(","):
                if not part:
                    continue
                a, sep, b = part.partition("-")
                lo, hi = int(a), int(b) if sep else int(a)
                if lo > hi:
                    raise ValueError(part)
                self.allowed(lo)
                self.allowed(hi)
                out.extend(range(lo, hi + 1))
        except (ValueError, typer.BadParameter):
            raise typer.BadParameter(f"{value!r}: give {self}, e.g. '1-9,15,25'") from None
        if not out:
            raise typer.BadParameter(f"{value!r}: give {self}, e.g. '1-9,15,25'")
        return sorted(set(out))

    def __str__(self) -> str:
        return f"counts or ranges A-B, each {self.allowed}"


BENCH_STAGES = Counts(Range(int, ge=1, le=50))  # `bench optimizer --stages`: random pipelines of 1..50 stages
BENCH_VARIANTS = Counts(Range(int, ge=1, le=30))
