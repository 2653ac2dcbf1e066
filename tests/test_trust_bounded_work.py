"""Issue 11 item 3: work bounded by the caps whatever the input (rps, a huge trace value, stray timestamps)."""

import bz2
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import pipetune
from pipetune.errors import PipetuneError
from pipetune.optimizer import Infeasible, plan_pipeline
from pipetune.spec import load_pipeline
from pipetune.workloads import arrival_times, build_counts

EXAMPLES = Path(pipetune.__file__).parent / "examples"
PIPELINES = sorted(EXAMPLES.rglob("pipeline.yaml"))
MB = 1 << 20


def test_every_bundled_pipeline_is_listed():
    names = {p.parent.relative_to(EXAMPLES).as_posix() for p in PIPELINES}
    assert {"digits", "synthetic", "text", "paper/video", "paper/nlp", "paper/audio-qa"} <= names


@pytest.mark.parametrize("rps", [1e9, 1e12, 1e30])
@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.parent.relative_to(EXAMPLES).as_posix())
def test_huge_rps_is_a_quick_bounded_capacity_answer(path, rps):
    pipe = load_pipeline(path)
    plan_pipeline(pipe, 1.0)  # warm the caches (profiles, base table) so only the rps-dependent work is measured
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        res = plan_pipeline(pipe, rps)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wall = time.perf_counter() - t0
    assert isinstance(res, Infeasible)
    assert res.binding.startswith("capacity:"), res.binding
    assert "capacity" in res.reason and f"{rps * (1 + pipe.caps.headroom):.4g}" in res.reason
    # the fallback never holds more replicas than the caps allow
    assert all(c.config.replicas <= pipe.caps.max_replicas for c in res.fallback.stages.values())
    assert peak < 64 * MB, f"{peak / MB:.0f} MB traced"  # was 1.6 GB at 1e6 rps on video, 59 GiB at 1e9
    assert wall < 1.0, f"{wall:.2f} s"  # the promise (generous: it takes milliseconds)


def test_cli_plan_huge_rps_prints_the_capacity_message():
    from typer.testing import CliRunner

    from pipetune.cli.main import app

    r = CliRunner().invoke(app, ["plan", str(EXAMPLES / "paper/video/pipeline.yaml"), "--rps", "1e12"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "infeasible" in r.output and "capacity" in r.output


def test_the_work_near_the_caps_still_plans():
    # the bound must not cut real options: at a load that needs max_replicas the plan exists
    pipe = load_pipeline(EXAMPLES / "synthetic/pipeline.yaml")
    lo, hi = 1.0, 1e6
    for _ in range(40):  # the largest feasible rps, by bisection
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if plan_pipeline(pipe, mid).feasible else (lo, mid)
    plan = plan_pipeline(pipe, lo)
    assert plan.feasible and plan_pipeline(pipe, hi * 1.01).feasible is False
    assert max(c.config.replicas for c in plan.stages.values()) <= pipe.caps.max_replicas


@pytest.mark.parametrize("counts", [[5, 5, 1e12, 5], [1e30], [3e7]])
def test_arrivals_refuse_a_workload_too_big_to_replay(counts):
    tracemalloc.start()
    try:
        with pytest.raises(PipetuneError, match="at most 20,000,000 requests"):
            arrival_times(np.asarray(counts, float))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB


def test_cli_simulate_peak_1e12_is_a_clear_error():
    from typer.testing import CliRunner

    from pipetune.cli.main import app

    pipe = str(EXAMPLES / "synthetic/pipeline.yaml")
    r = CliRunner().invoke(app, ["simulate", pipe, "--peak", "1e12", "--seconds", "120", "--json"])
    assert isinstance(r.exception, PipetuneError), r.exception
    assert "lower the peak" in str(r.exception)


def _minute(path: Path, ms: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"created_at": "x", "timestamp_ms": m}) + "\n" for m in ms)
    path.write_bytes(bz2.compress(lines.encode(), compresslevel=1))


T0 = 1_524_662_100_000  # 2018-04-25 13:15:00 UTC (the archive's hour directories are not UTC)
FIVE_YEARS_MS = 5 * 365 * 86400 * 1000


@pytest.mark.parametrize("stray", [-5_000, T0 + FIVE_YEARS_MS, T0 - FIVE_YEARS_MS, 1e30, "1e30", -1e30])
def test_trace_build_skips_and_reports_a_stray_timestamp(tmp_path: Path, stray):
    good = [str(T0 + 1000 * i) for i in range(60)]
    _minute(tmp_path / "2018/04/25/07/15.json.bz2", good[:30] + [stray] + good[30:])
    _minute(tmp_path / "2018/04/25/07/16.json.bz2", [str(T0 + 60_000 + 1000 * i) for i in range(60)])
    tracemalloc.start()
    try:
        counts, report = build_counts(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts.size == 120 and counts.sum() == 120
    assert report.start_epoch_s == T0 // 1000
    skipped = report.out_of_range + sum(f.bad_lines for f in report.files)
    assert skipped == 1  # "1e30" as a string is not an integer: an unreadable line, also counted
    assert peak < 16 * MB


def test_trace_build_skips_a_whole_file_years_away(tmp_path: Path):
    _minute(tmp_path / "2018/04/25/07/15.json.bz2", [str(T0 + 1000 * i) for i in range(60)])
    _minute(tmp_path / "2018/04/25/07/16.json.bz2", [str(T0 + 60_000 + 1000 * i) for i in range(60)])
    _minute(tmp_path / "2018/04/25/07/17.json.bz2", [str(T0 + FIVE_YEARS_MS + 1000 * i) for i in range(60)])
    counts, report = build_counts(tmp_path)
    assert counts.size == 120 and counts.sum() == 120
    assert report.out_of_range == 60 and report.files[2].tweets == 0


def test_cli_trace_build_reports_out_of_range_events(tmp_path: Path):
    from typer.testing import CliRunner

    from pipetune.cli.main import app

    _minute(tmp_path / "in/2018/04/25/07/15.json.bz2", [str(T0 + 1000 * i) for i in range(60)] + [-5_000])
    r = CliRunner().invoke(app, ["trace", "build", str(tmp_path / "in"), "-o", str(tmp_path / "c.txt")])
    assert r.exit_code == 0, r.output
    assert "skipped 1 events" in r.output and "60 requests" in r.output
