"""Building per-second counts from twitter-stream minute files, damaged files included."""

import bz2
import json
from pathlib import Path

import numpy as np
import pytest

from pipetune.errors import PipetuneError
from pipetune.workloads import build_counts

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLE = SHARED / "traces" / "twitter-stream-sample"


def _minute(path: Path, events: list[dict], extra: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(e) + "\n" for e in events).encode() + extra
    path.write_bytes(bz2.compress(data, compresslevel=1))


def test_counts_tweets_and_deletions_and_fills_gaps(tmp_path: Path):
    t0 = 1_524_662_100_000
    _minute(
        tmp_path / "2018/04/25/07/15.json.bz2",
        [
            {"created_at": "x", "timestamp_ms": str(t0 + 100)},
            {"created_at": "x", "timestamp_ms": str(t0 + 900)},
            {"delete": {"status": {"id": 1}, "timestamp_ms": str(t0 + 3_500)}},
            {"limit": {"track": 5, "timestamp_ms": str(t0 + 3_600)}},  # not a request
        ],
    )
    counts, report = build_counts(tmp_path)
    np.testing.assert_array_equal(counts, [2, 0, 0, 1])
    assert report.start_epoch_s == t0 // 1000
    f = report.files[0]
    assert (f.tweets, f.deletions, f.other) == (2, 1, 1)


def test_truncated_stream_and_garbage_line_are_counted_and_reported(tmp_path: Path):
    t0 = 1_524_662_100_000
    # ~700 kB of events: several 100-kB bz2 blocks, so a cut file still holds whole blocks before the cut
    events = [{"created_at": "x", "id": i, "timestamp_ms": str(t0 + 1000 * (i * 60 // 12000))} for i in range(12000)]
    good = tmp_path / "2018/04/25/07/16.json.bz2"
    _minute(good, events, extra=b'{"created_at": "x", "timest')  # half-written last line
    cut = tmp_path / "2018/04/25/07/17.json.bz2"
    blob = bz2.compress("".join(json.dumps(e) + "\n" for e in events).encode(), compresslevel=1)
    cut.write_bytes(blob[: len(blob) * 6 // 10])  # a download cut mid-stream
    counts, report = build_counts(tmp_path)
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["16.json.bz2"].bad_lines == 1 and by_name["16.json.bz2"].tweets == 12000
    truncated = by_name["17.json.bz2"]
    assert truncated.problem is not None and "ends early" in truncated.problem
    assert 0 < truncated.tweets < 12000  # counted as far as it could be read
    assert counts.sum() == 12000 + truncated.tweets
    assert {Path(f.path).name for f in report.incomplete} == {"16.json.bz2", "17.json.bz2"}


def test_empty_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PipetuneError, match="no minute files"):
        build_counts(tmp_path)


@pytest.mark.shared
def test_builds_the_shared_sample():
    if not SAMPLE.exists():
        pytest.skip("../shared/traces/twitter-stream-sample is absent")
    counts, report = build_counts(SAMPLE)
    names = {Path(f.path).name: f for f in report.files}
    assert set(names) == {"15.json.bz2", "31.json.bz2", "43.json.bz2"}
    assert counts.sum() == sum(f.tweets + f.deletions for f in report.files)
    # 15 is the truncated one: it stops a few seconds into its minute; it is counted and flagged.
    assert [Path(f.path).name for f in report.incomplete] == ["15.json.bz2"]
    assert names["15.json.bz2"].covered_s < 60 and names["15.json.bz2"].tweets > 0
    # minutes 13:15 to 13:44 are covered, gaps filled with zeros
    assert 28 * 60 <= counts.size <= 31 * 60 and (counts == 0).sum() > 20 * 60
