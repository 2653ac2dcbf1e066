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

    @property
    def covered_s(self) -> int:
        return 0 if self.first_s is None else self.last_s - self.first_s + 1

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


def read_minute_file(path: Path, seconds: list[int]) -> FileReport:
    """Append the epoch second of every counted event in `path` to `seconds`; never raises on bad content."""
    report = FileReport(path=str(path))
    try:
        with _open_events(path) as fh:
            for line in fh:
                report.lines += 1
                line = line.strip()
                if not line:
                    continue
                try:
                    ev = _event_ms(json.loads(line))
                except (ValueError, TypeError):
                    report.bad_lines += 1  # a half-written line at a cut, or garbage
                    continue
                if ev is None:
                    report.other += 1
                    continue
                kind, ms = ev
                s = ms // 1000
                seconds.append(s)
                if kind == "tweet":
                    report.tweets += 1
                else:
                    report.deletions += 1
                report.first_s = s if report.first_s is None else min(report.first_s, s)
                report.last_s = s if report.last_s is None else max(report.last_s, s)
    except EOFError as e:
        report.problem = f"compressed stream ends early ({e})"
    except OSError as e:  # corrupt bz2/gzip data
        report.problem = f"corrupt data ({e})"
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
    for i, path in enumerate(files):
        reports.append(read_minute_file(path, seconds))
        if progress is not None:
            progress(i + 1, len(files))
    if not seconds:
        raise PipetuneError(f"{root}: no tweet or deletion with a timestamp_ms in {len(files)} files")
    s = np.asarray(seconds, dtype=np.int64)
    start = int(s.min())
    counts = np.bincount(s - start).astype(np.float64)
    return counts, BuildReport(start_epoch_s=start, files=reports)
