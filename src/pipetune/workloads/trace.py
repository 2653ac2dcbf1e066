"""Per-second request-count traces: read, validate, slice, damp, concatenate, rescale, write.

A trace is a 1-D float64 array; element i is the number of requests that arrive in second i. On disk:

* one number a line, or whitespace-separated numbers (any mix of the two), optionally gzipped (`.gz`);
* a CSV file (`.csv`) with a header row: pass `column=` to choose the column (default: the first numeric one).

Blank lines and `#` comments are skipped. Every value must be a finite number >= 0; the first bad value is
reported with its line number, so the file can be fixed.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pipetune.errors import PipetuneError


class TraceError(PipetuneError):
    """A trace file or array that cannot be used as per-second counts."""


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _parse_value(token: str, path: Path, lineno: int) -> float:
    try:
        value = float(token)
    except ValueError:
        raise TraceError(
            f"{path}:{lineno}: {token!r} is not a number; a trace holds one request count per second "
            "(integers >= 0, one a line or whitespace-separated)"
        ) from None
    if not math.isfinite(value):
        raise TraceError(f"{path}:{lineno}: {token!r} is not finite; replace it with a count >= 0")
    if value < 0:
        raise TraceError(f"{path}:{lineno}: {token!r} is negative; request counts must be >= 0")
    return value


def load_trace(path: str | Path, column: str | int | None = None) -> np.ndarray:
    """Read per-second counts from `path` (plain, `.gz`, or `.csv`); returns float64, validated.

    Raises `TraceError` naming the file and line for a missing file, an empty trace, or a value that is not a
    finite number >= 0.
    """
    path = Path(path)
    if not path.exists():
        raise TraceError(f"trace file {path} does not exist; pass a file of per-second request counts")
    if path.is_dir():
        raise TraceError(
            f"{path} is a directory; pass a counts file (build one from minute files with `pipetune trace build`)"
        )
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    try:
        if name.endswith(".csv"):
            counts = _load_csv(path, column)
        else:
            if column is not None:
                raise TraceError(f"{path}: column= only applies to .csv traces")
            counts = _load_plain(path)
    except (UnicodeDecodeError, EOFError, OSError, gzip.BadGzipFile) as e:
        raise TraceError(f"{path}: cannot read it as text ({e}); pass a plain, .gz or .csv counts file") from None
    if counts.size == 0:
        raise TraceError(f"{path}: the trace is empty; it needs at least one per-second count")
    return counts


def _load_plain(path: Path) -> np.ndarray:
    values: list[float] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.split("#", 1)[0]
            for token in line.split():
                values.append(_parse_value(token, path, lineno))
    return np.asarray(values, dtype=np.float64)


def _load_csv(path: Path, column: str | int | None) -> np.ndarray:
    with _open_text(path) as fh:
        rows = [(i, r) for i, r in enumerate(csv.reader(fh), start=1) if r and not r[0].lstrip().startswith("#")]
    if not rows:
        return np.zeros(0)
    header_line, header = rows[0]
    header = [h.strip() for h in header]
    if isinstance(column, int):
        index = column
        if not 0 <= index < len(header):
            raise TraceError(f"{path}: column index {index} is out of range (the CSV has {len(header)} columns)")
    elif isinstance(column, str):
        if column not in header:
            raise TraceError(f"{path}:{header_line}: no column {column!r}; the header has {header}")
        index = header.index(column)
    else:
        found = _first_numeric_column(rows[1:], len(header))
        if found is None:
            raise TraceError(f"{path}: no numeric column found; pass column= with the name of the counts column")
        index = found
    values = []
    for lineno, row in rows[1:]:
        if index >= len(row):
            raise TraceError(f"{path}:{lineno}: the row has {len(row)} fields, column {header[index]!r} is missing")
        values.append(_parse_value(row[index].strip(), path, lineno))
    return np.asarray(values, dtype=np.float64)


def _first_numeric_column(rows: Sequence[tuple[int, list[str]]], width: int) -> int | None:
    if not rows:
        return 0
    first = rows[0][1]
    for j in range(min(width, len(first))):
        try:
            float(first[j])
            return j
        except ValueError:
            continue
    return None


def validate_counts(counts: Iterable[float], what: str = "counts") -> np.ndarray:
    """Check an in-memory trace (finite, >= 0, 1-D, non-empty); returns it as float64."""
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1:
        raise TraceError(f"{what}: expected a 1-D array of per-second counts, got shape {arr.shape}")
    if arr.size == 0:
        raise TraceError(f"{what}: the trace is empty; it needs at least one per-second count")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        i = int(bad[0])
        raise TraceError(f"{what}: second {i} holds {arr[i]!r}; every count must be a finite number >= 0")
    return arr


def save_trace(counts: np.ndarray, path: str | Path) -> Path:
    """Write one count a line (integers stay integers); `.gz` suffix gzips."""
    arr = validate_counts(counts)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if np.all(arr == np.round(arr)):
        text = "\n".join(str(int(v)) for v in arr) + "\n"
    else:
        text = "\n".join(f"{v:.6g}" for v in arr) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def slice_trace(counts: np.ndarray, start: int = 0, stop: int | None = None, duration: int | None = None) -> np.ndarray:
    """Seconds [start, stop) or [start, start + duration); bounds are checked, never silently clipped."""
    arr = validate_counts(counts)
    if stop is not None and duration is not None:
        raise TraceError("slice: give stop or duration, not both")
    if duration is not None:
        if duration <= 0:
            raise TraceError(f"slice: duration must be > 0 seconds, got {duration}")
        stop = start + duration
    stop = arr.size if stop is None else stop
    if not 0 <= start < stop <= arr.size:
        raise TraceError(
            f"slice: [{start}, {stop}) is outside the trace's {arr.size} seconds; pick 0 <= start < stop <= {arr.size}"
        )
    return arr[start:stop].copy()


def damp(counts: np.ndarray, factor: float) -> np.ndarray:
    """Divide every count by `factor` (IPA divides the Twitter trace by 8 to fit its cluster)."""
    if not factor > 0:
        raise TraceError(f"damping factor must be > 0, got {factor}")
    return validate_counts(counts) / float(factor)


def concat(windows: Iterable[np.ndarray]) -> np.ndarray:
    """Join windows end to end (IPA builds steady-high and fluctuating from two 600-s windows)."""
    parts = [validate_counts(w, "window") for w in windows]
    if not parts:
        raise TraceError("concat: no windows given")
    return np.concatenate(parts)


def rescale(counts: np.ndarray, peak: float) -> np.ndarray:
    """Scale so the busiest second holds `peak` requests (shape kept)."""
    arr = validate_counts(counts)
    if not peak > 0:
        raise TraceError(f"rescale: target peak must be > 0 rps, got {peak}")
    top = arr.max()
    if top <= 0:
        raise TraceError("rescale: the trace is all zeros; there is no peak to scale")
    return arr * (float(peak) / top)


def parse_range(text: str) -> tuple[int, int]:
    """'START:STOP' or 'START+DURATION' (seconds) -> (start, stop)."""
    try:
        if "+" in text:
            a, b = text.split("+", 1)
            start = int(a)
            return start, start + int(b)
        a, b = text.split(":", 1)
        return int(a), int(b)
    except ValueError:
        raise TraceError(
            f"range {text!r}: write START:STOP or START+DURATION in seconds, e.g. 1301160:1302360"
        ) from None
