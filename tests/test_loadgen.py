"""The load generator against the echo V2 server in a child process (no Ray): open loop under a slow server,
every planned request accounted for, the outputs written as strict JSON / CSV / PNG, clear CLI errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pipetune.loadgen import OUTCOMES, LoadgenError, RunOptions, loadtest, make_plan, parse_url, run
from pipetune.loadgen.echo import start_echo
from pipetune.loadgen.report import TIMELINE_COLUMNS, summarise
from pipetune.loadgen.schedule import encode_bodies, generated_items, workload_counts
from pipetune.protocol import TensorSpec

SPEC = TensorSpec("input", "BYTES", (-1,))
BODIES, _ = encode_bodies(generated_items(SPEC, 4), SPEC)


def _strict(text: str) -> dict:
    def bad(c: str):
        raise ValueError(f"non-strict JSON constant {c}")

    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def slow_url():
    with start_echo(delay_s=0.5) as base:
        yield base


@pytest.fixture(scope="module")
def mixed_url():
    with start_echo(statuses=(200, 200, 503, 400, 504)) as base:
        yield base


@pytest.mark.slow
def test_open_loop_keeps_the_schedule_when_the_server_is_slow(slow_url):
    # 30 requests at 20 rps against a server that takes 0.5 s each: a closed loop (or a client that waits
    # for a free connection) would send them 0.5 s apart; open loop sends each at its time regardless.
    plan = np.arange(30) / 20.0
    rec = run(plan, RunOptions(f"{slow_url}/v2/models/echo/infer", BODIES, concurrency=100, timeout_s=5))
    assert rec.counts()["completed"] == 30
    err = rec.sent - rec.planned
    assert np.all(err >= 0) and np.percentile(err, 99) < 0.1, err  # ms-level on an idle machine
    assert np.all(rec.latency >= 0.49) and np.all(rec.latency < 2.0)
    # the last request left ~1.45 s in, long before the first 29 answers could all have come back in series
    assert rec.sent[-1] < 1.6
    assert all(v == "echo=fixed" for v in rec.variants)


def test_over_the_concurrency_cap_is_not_sent_never_delayed(slow_url):
    plan = np.arange(20) / 20.0  # 1 s of 20 rps; 0.5 s service -> ~10 open at once
    rec = run(plan, RunOptions(f"{slow_url}/v2/models/echo/infer", BODIES, concurrency=4, timeout_s=5))
    c = rec.counts()
    assert c["not_sent"] > 0 and c["completed"] > 0
    assert sum(c.values()) == plan.size
    sent = np.isfinite(rec.sent)
    assert sent.sum() == plan.size - c["not_sent"]
    assert np.all(rec.sent[sent] - rec.planned[sent] < 0.1)  # those sent went on time
    assert all("concurrency cap" in rec.reasons[i] for i in np.flatnonzero(~sent))


def test_every_planned_request_is_accounted_for(mixed_url):
    plan = np.arange(50) / 100.0
    rec = run(plan, RunOptions(f"{mixed_url}/v2/models/echo/infer", BODIES, concurrency=64, timeout_s=5))
    s = summarise(rec, {})
    o = s["outcomes"]
    # the server's cycle 200,200,503,400,504: exactly 2/5 completed, 1/5 each refused, failed (400), dropped
    assert o == {"completed": 20, "refused": 10, "dropped": 10, "failed": 10, "timeout": 0, "not_sent": 0}
    assert s["accounted"] and sum(o.values()) == s["planned"] == 50
    assert s["statuses"] == {"200": 20, "400": 10, "503": 10, "504": 10}
    assert s["reasons"] and any(r.startswith("http 400") for r in s["reasons"])
    assert s["variants"] == {"echo": {"fixed": 20}}


def test_a_dead_server_fails_each_request_with_a_reason():
    with start_echo() as base:
        pass  # started then stopped: nothing listens there now
    rec = run(np.arange(5) / 50.0, RunOptions(f"{base}/v2/models/echo/infer", BODIES, concurrency=8, timeout_s=2))
    assert rec.counts()["failed"] == 5
    assert all(r.startswith("client error") for r in rec.reasons)


@pytest.mark.slow
def test_loadtest_writes_strict_summary_timeline_requests_and_plot(mixed_url, tmp_path: Path):
    trace = tmp_path / "t.txt"
    trace.write_text("10\n30\n0\n20\n")
    summary, rec, paths = loadtest(
        f"{mixed_url}/v2/models/echo", trace=trace, duration=3, scale=0.5, out=tmp_path / "out", sla_s=5.0
    )
    assert summary["planned"] == 20 and summary["workload"]["duration_s"] == 3  # (10 + 30 + 0) x 0.5
    s = _strict(paths["summary"].read_text())
    assert (
        s["outcomes"]["completed"] + s["outcomes"]["refused"] + s["outcomes"]["failed"] + s["outcomes"]["dropped"] == 20
    )
    assert (
        s["sla"]["violations"] == 20 - s["outcomes"]["completed"]
    )  # echo answers in ~1 ms: none late, even on a loaded machine
    assert set(s["latency_ms"]) == {"p50", "p90", "p99", "max", "mean"} and s["send_error_ms"]["p99"] is not None
    rows = list(csv.DictReader(paths["timeline"].open()))
    assert tuple(rows[0]) == TIMELINE_COLUMNS
    assert sum(int(r["planned"]) for r in rows) == 20 and int(rows[2]["planned"]) == 0
    assert sum(int(r["completed"]) for r in rows) == s["outcomes"]["completed"]
    reqs = list(csv.DictReader(paths["requests"].open()))
    assert len(reqs) == 20 and {r["outcome"] for r in reqs} <= set(OUTCOMES)
    assert paths["plot"].stat().st_size > 10_000


def test_schedule_scale_duration_and_bounds(tmp_path: Path):
    counts, src = workload_counts(pattern="bursty", scale=2.0, duration=30, seed=1)
    assert counts.size == 30 and src == "pattern:bursty"
    again, _ = workload_counts(pattern="bursty", scale=2.0, duration=30, seed=1)
    assert np.array_equal(counts, again)
    plan = make_plan(np.full(10, 100.0), "x", max_requests=250)
    assert plan.times.size == 250 and plan.truncated == 750 and np.all(np.diff(plan.times) >= 0)
    (tmp_path / "t.txt").write_text("1\n2\n")
    with pytest.raises(LoadgenError, match="--duration 5"):
        workload_counts(trace=tmp_path / "t.txt", duration=5)
    with pytest.raises(LoadgenError, match="exactly one"):
        workload_counts(trace=tmp_path / "t.txt", pattern="bursty")
    assert parse_url("http://h:1/v2/models/m/infer", None).infer_url == "http://h:1/v2/models/m/infer"
    with pytest.raises(LoadgenError, match="--model"):
        parse_url("http://h:1", None)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--scale", "-2"], "--scale"),
        (["--concurrency", "0"], "--concurrency"),
        (["--pattern", "spiky"], "--pattern 'spiky' is unknown"),
        (["--duration", "0"], "--duration"),
        (["--sla", "nan"], "--sla"),
        (["--url", "ftp://x"], "--url"),
    ],
)
def test_bad_cli_values_exit_nonzero_without_traceback(args, needle, monkeypatch, capsys, tmp_path):
    from pipetune.cli.main import run as cli_run

    argv = ["pipetune", "loadtest", "--url", "http://127.0.0.1:9", "--model", "m", "--out", str(tmp_path)]
    if "--pattern" not in args:
        argv += ["--pattern", "bursty"]
    monkeypatch.setattr(sys, "argv", argv + args)
    with pytest.raises(SystemExit) as e:
        cli_run()
    err = capsys.readouterr().err
    assert e.value.code not in (0, None)
    assert needle in err and "Traceback" not in err


def test_unreachable_server_is_a_clear_error(monkeypatch, capsys, tmp_path):
    from pipetune.cli.main import run as cli_run

    argv = ["pipetune", "loadtest", "--url", "http://127.0.0.1:9/v2/models/m", "--pattern", "bursty"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        cli_run()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "cannot reach" in err and "Traceback" not in err


def test_pipeline_example_data_is_what_is_sent(mixed_url, tmp_path: Path):
    from pipetune.loadgen.schedule import check_items, pipeline_items

    text = Path(__file__).resolve().parents[1] / "src/pipetune/examples/text/pipeline.yaml"
    items, name = pipeline_items(text, 3)
    assert name == "text" and all(isinstance(x, str) and x for x in items)
    summary, rec, _ = loadtest(
        f"{mixed_url}/v2/models/echo", trace=_one_second(tmp_path, 5), pipeline=text, out=None, plot=False
    )
    assert summary["inputs"].startswith("pipeline:") and summary["planned"] == 5
    with pytest.raises(LoadgenError, match="takes FP32"):
        check_items(items, TensorSpec("input", "FP32", (-1, 64)), "--pipeline")
    with pytest.raises(LoadgenError, match="item shape"):
        check_items([np.zeros(8)], TensorSpec("input", "FP32", (-1, 64)), "--pipeline")


def test_binary_bodies_carry_their_header_and_binary_answers_are_read(mixed_url, tmp_path: Path):
    """--binary: each body its own Inference-Header-Content-Length; a binary 200 answer is read from its header."""
    from pipetune.loadgen.runner import COMPLETED, Records, _classify
    from pipetune.protocol import HEADER_LENGTH, InferRequest, decode_request, encode_response

    bodies, headers = encode_bodies(generated_items(SPEC, 3), SPEC, binary=True)
    for body, h in zip(bodies, headers):
        req = decode_request(body, [SPEC], header_length=h[HEADER_LENGTH], content_type=h["content-type"])
        assert len(req.items) == 1 and req.binary_output
    summary, _, _ = loadtest(f"{mixed_url}/v2/models/echo", trace=_one_second(tmp_path, 5), plot=False, binary=True)
    assert summary["encoding"] == "binary" and summary["outcomes"]["completed"] >= 1
    payload, h = encode_response(
        "m", {"out": ["a"]}, None, {"e2e_s": 0.25}, request=InferRequest(["x"], None, None, True)
    )
    rec = Records.empty(np.zeros(1))
    _classify(rec, 0, 200, payload, 1.0, h[HEADER_LENGTH])
    assert rec.outcome[0] == COMPLETED and rec.server_e2e[0] == 0.25


def _one_second(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "one.txt"
    p.write_text(f"{n}\n")
    return p


def test_ctrl_c_stops_sending_and_keeps_what_was_recorded(slow_url):
    import os
    import signal
    import threading

    plan = np.arange(200) / 20.0  # 10 s planned; interrupted after ~2 s (the server answers each in 0.5 s)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as a user's terminal sends it
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        rec = run(plan, RunOptions(f"{slow_url}/v2/models/echo/infer", BODIES, concurrency=100, timeout_s=5))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    c = rec.counts()
    assert rec.interrupted and sum(c.values()) == 200
    # the first ~1.5 s of requests were answered (how many depends on how loaded the machine is)
    assert c["not_sent"] > 140 and c["completed"] >= 1
    assert rec.elapsed_s < 4.0
    assert any(r and r.startswith("interrupted") for r in rec.reasons)


def test_bench_loadgen_reports_the_three_figures():
    from pipetune.loadgen import bench_loadgen

    out = bench_loadgen(200.0, 1.0)
    assert set(out) == {"target_rps", "achieved_rps", "send_error_p99_ms"}
    assert out["target_rps"] == 200.0 and 120 < out["achieved_rps"] < 260 and out["send_error_p99_ms"] >= 0
    json.dumps(out, allow_nan=False)
    with pytest.raises(LoadgenError):
        bench_loadgen(0.0, 1.0)
