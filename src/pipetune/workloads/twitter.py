"""Build per-second counts from Archive Team twitter-stream minute files (`YYYY/MM/DD/HH/MM.json.bz2`).

Each line of a minute file is one JSON event. A tweet carries a top-level `timestamp_ms`; a deletion carries
`delete.timestamp_ms`. Both count as one request in the second of their timestamp (IPA's trace counts both).
Other events (`limit`, `status_withheld`, ...) are ignored and tallied in the report.

Real downloads are sometimes cut short. A file is read as far as it can be (a bz2 stream that ends early, a
corrupt block, a half-written last line) and what was read is counted; the problem is reported per file,
never raised. Seconds with no event between the first and last counted second are filled with 0.
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipetune.errors import PipetuneError


@dataclass
class FileReport:
    path: str
    lines: int = 0
    tweets: int = 0
    deletions: int = 0
    other: int = 0
    bad_lines: int = 0
    first_s: int | None = None
    last_s: int | None = None
    problem: str | None = None  # why reading stopped early, if it did
    out_of_range: int = 0  # events whose timestamp lies outside the file's minute (+- OUT_OF_RANGE_SLACK_S): skipped

    @property
    def covered_s(self) -> int:
        if self.first_s is None or self.last_s is None:  # set together, once an event is counted
            return 0
        return self.last_s - self.first_s + 1

    @property
    def complete(self) -> bool:
        """Read to the end without error and spanning (nearly) the whole minute it is named for."""
        return self.problem is None and self.bad_lines == 0 and self.covered_s >= 55


@dataclass
class BuildReport:
    start_epoch_s: int
    files: list[FileReport] = field(default_factory=list)

    @property
    def incomplete(self) -> list[FileReport]:
        return [f for f in self.files if not f.complete]

    @property
    def out_of_range(self) -> int:
        """Events skipped because their timestamp lies outside their file's minute (see OUT_OF_RANGE_SLACK_S)."""
        return sum(f.out_of_range for f in self.files)


def find_minute_files(root: str | Path) -> list[Path]:
    """All `YYYY/MM/DD/HH/MM.json[.bz2|.gz]` files under `root`, in time order."""
    root = Path(root)
    if not root.is_dir():
        raise PipetuneError(f"{root} is not a directory; pass the root of the twitter-stream tree (holding YYYY/...)")
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and (p.name.endswith(".json.bz2") or p.name.endswith(".json") or p.name.endswith(".json.gz"))
    ]
    if not files:
        raise PipetuneError(f"{root}: no minute files (YYYY/MM/DD/HH/MM.json.bz2) found under it")
    return sorted(files, key=lambda p: p.relative_to(root).parts)


def _open_events(path: Path):
    if path.name.endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _event_ms(obj: object) -> tuple[str, int] | None:
    if not isinstance(obj, dict):
        return None
    if "delete" in obj:
        d = obj["delete"]
        if isinstance(d, dict) and "timestamp_ms" in d:
            return "deletion", int(d["timestamp_ms"])
        return None
    if "timestamp_ms" in obj and ("created_at" in obj or "id" in obj or "text" in obj):
        return "tweet", int(obj["timestamp_ms"])
    return None


# An event may lag or lead the other events of its file by this much and still count; one further off (a stray
# -5 s, 5 years off, 1e30 ms) is counted as out of range, reported and skipped: the trace spans [first, last]
# counted second, so a single stray timestamp would otherwise make it years long (GBs of zeros).
OUT_OF_RANGE_SLACK_S = 600


def _named_minute_s(path: Path) -> int | None:
    """Epoch second of the minute a `.../YYYY/MM/DD/HH/MM.json[.bz2|.gz]` file is named for, or None. (The
    archive's hour directories are not always UTC, so only differences between names are used.)"""
    import calendar

    parts = [*path.parent.parts[-4:], path.name.split(".", 1)[0]]
    try:
        y, mo, d, h, mi = (int(x) for x in parts)
    except ValueError:
        return None
    if not (1970 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= 31 and 0 <= h <= 23 and 0 <= mi <= 59):
        return None
    return calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0))


def read_minute_file(path: Path, seconds: list[int]) -> FileReport:
    """Append the epoch second of every counted event in `path` to `seconds`; never raises on bad content.

    Events further than a minute and OUT_OF_RANGE_SLACK_S from the median event of the file are counted in
    `out_of_range` and skipped."""
    report = FileReport(path=str(path))
    mine: list[tuple[int, bool]] = []  # (epoch second, is a tweet) of every counted event
    try:
        with _open_events(path) as fh:
            for line in fh:
                report.lines += 1
                line = line.strip()
                if not line:
                    continue
                try:
                    ev = _event_ms(json.loads(line))
                except (ValueError, TypeError, OverflowError):
                    report.bad_lines += 1  # a half-written line at a cut, or garbage
                    continue
                if ev is None:
                    report.other += 1
                    continue
                kind, ms = ev
                mine.append((ms // 1000, kind == "tweet"))
    except EOFError as e:
        report.problem = f"compressed stream ends early ({e})"
    except OSError as e:  # corrupt bz2/gzip data
        report.problem = f"corrupt data ({e})"
    mid = sorted(s for s, _ in mine)[len(mine) // 2] if mine else 0
    kept = [(s, t) for s, t in mine if abs(s - mid) <= 60 + OUT_OF_RANGE_SLACK_S]
    ok = [s for s, _ in kept]
    report.tweets = sum(1 for _, t in kept if t)
    report.deletions = len(kept) - report.tweets
    report.out_of_range = len(mine) - len(kept)
    seconds.extend(ok)
    if ok:
        report.first_s, report.last_s = min(ok), max(ok)
    if report.problem is None and report.lines and report.covered_s < 55:
        report.problem = f"covers only {report.covered_s} s of its minute (cut short)"
    return report


def build_counts(
    root: str | Path, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, BuildReport]:
    """Per-second counts over [first event, last event] of every minute file under `root`, plus a report."""
    files = find_minute_files(root)
    seconds: list[int] = []
    reports = []
    ends = []
    for i, path in enumerate(files):
        reports.append(read_minute_file(path, seconds))
        ends.append(len(seconds))
        if progress is not None:
            progress(i + 1, len(files))
    if not seconds:
        raise PipetuneError(f"{root}: no tweet or deletion with a timestamp_ms in {len(files)} files")
    s = np.asarray(seconds, dtype=np.int64)
    # A whole file far from the others (its events agree with each other, not with the rest): the files' names
    # bound how long the trace can be, so a file whose median event lies further than that span (and the slack)
    # from the median of all events is skipped whole (after the per-file filter its events lie within 660 s).
    named = [m for m in (_named_minute_s(p) for p in files) if m is not None]
    if len(named) == len(files) and len(files) > 1:
        reach = max(named) - min(named) + 60 + OUT_OF_RANGE_SLACK_S
        centre = int(np.median(s))
        keep = np.ones(s.size, bool)
        for r, a, b in zip(reports, [0, *ends[:-1]], ends):
            if b > a and abs(int(np.median(s[a:b])) - centre) > reach:
                keep[a:b] = False
                r.out_of_range += b - a
                r.tweets = r.deletions = 0
                r.first_s = r.last_s = None
        s = s[keep]
    start = int(s.min())
    counts = np.bincount(s - start).astype(np.float64)
    return counts, BuildReport(start_epoch_s=start, files=reports)
