"""CLI: `pipetune simulate`, `pipetune bench simulator`, `pipetune experiment report`, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipetune.cli.main import app

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"
runner = CliRunner()


def test_simulate_prints_json_and_writes_a_plot(tmp_path):
    res = runner.invoke(
        app,
        [
            "simulate",
            str(SYNTH),
            "--workload",
            "steady-low",
            "--seconds",
            "120",
            "--predictor",
            "oracle",
            "--json",
            "--out",
            str(tmp_path),
            "--log",
            str(tmp_path / "d.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["requests"] == summary["completed"] + summary["dropped"] + summary["failed"]
    assert 0 <= summary["sla_violation_rate"] <= 1 and summary["mean_cores"] > 0
    assert (tmp_path / "sim-run.png").stat().st_size > 0
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == summary["decisions"] == 11


def test_simulate_bad_workload_is_a_clear_error():
    res = runner.invoke(app, ["simulate", str(SYNTH), "--workload", "no-such-thing"])
    assert res.exit_code != 0
    assert "not a pattern" in str(res.exception)


def test_simulate_host_flags_reach_the_simulator_and_need_host_cores():
    base = ["simulate", str(SYNTH), "--seconds", "120", "--json"]
    plain = runner.invoke(app, base)
    shared = runner.invoke(app, [*base, "--host-cores", "1", "--host-overhead", "0.01", "--host-load-cores", "1"])
    assert plain.exit_code == 0 and shared.exit_code == 0, shared.output
    p, s = (json.loads(r.output.strip().splitlines()[-1]) for r in (plain, shared))
    assert s["latency_p50_s"] > p["latency_p50_s"] + 0.01  # each request waits for its 10 ms of host CPU at least
    alone = runner.invoke(app, [*base, "--host-hop", "0.003"])
    assert alone.exit_code != 0 and "--host-cores" in str(alone.exception)


def test_bench_simulator_json_small():
    res = runner.invoke(app, ["bench", "simulator", "--json", "--requests", "20000", "--seeds", "1"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["requests_per_s"] > 0 and [r["rho"] for r in out["md1"]] == [0.5, 0.8, 0.9]
    assert all(r["rel_err"] < 0.25 for r in out["md1"] + out["mmc"])  # few requests: loose


def test_experiment_report_needs_results(tmp_path):
    res = runner.invoke(app, ["experiment", "report", str(tmp_path)])
    assert res.exit_code != 0 and "results.json" in str(res.exception)
