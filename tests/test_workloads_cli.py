"""The trace and predictor command groups, end to end on small inputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipetune.cli.main import app
from pipetune.workloads import load_trace, save_trace, synthetic_pattern

runner = CliRunner()


def test_cut_patterns_and_synth(tmp_path: Path):
    parts = [synthetic_pattern("steady-low", seed=7, peak=150)] + [
        synthetic_pattern(n, seed=7, peak=200) for n in ("bursty", "steady-high", "fluctuating")
    ]
    trace = save_trace(np.concatenate(parts), tmp_path / "t.txt.gz")
    r = runner.invoke(
        app,
        [
            "trace",
            "patterns",
            str(trace),
            "--json",
            "--plot",
            str(tmp_path / "p.png"),
            "--out-dir",
            str(tmp_path / "w"),
        ],
    )
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)["windows"]
    assert set(found) == {"bursty", "steady-low", "steady-high", "fluctuating"}
    assert (tmp_path / "p.png").stat().st_size > 10_000 and (tmp_path / "w" / "bursty.txt").exists()
    r = runner.invoke(
        app,
        [
            "trace",
            "cut",
            str(trace),
            "-w",
            "2400+600",
            "-w",
            "2400+600",
            "--damping",
            "8",
            "-o",
            str(tmp_path / "sh.txt"),
        ],
    )
    assert r.exit_code == 0, r.output
    cut = load_trace(tmp_path / "sh.txt")
    np.testing.assert_allclose(cut, np.concatenate([parts[2][:600]] * 2) / 8, rtol=1e-5)
    r = runner.invoke(app, ["trace", "synth", "fluctuating", "-o", str(tmp_path / "s.txt"), "--seed", "3"])
    assert r.exit_code == 0 and load_trace(tmp_path / "s.txt").size == 1200


def test_predictor_eval_json_on_a_trace(tmp_path: Path):
    trace = save_trace(synthetic_pattern("bursty", seed=1), tmp_path / "b.txt")
    r = runner.invoke(
        app,
        [
            "predictor",
            "eval",
            "--json",
            "-p",
            "max,default,reactive",
            "--trace",
            str(trace),
            "-w",
            "0:1200",
            "--damping",
            "1",
            "--plot",
            str(tmp_path / "e.png"),
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{") :])
    names = [p["name"] for p in out["predictors"]]
    assert names == ["max", "adaptive-quantile", "reactive"]
    for p in out["predictors"]:
        assert 0 <= p["under_rate"] <= 1 and p["over_provision"] >= 0 and p["decisions"] == 107
    assert (tmp_path / "e.png").exists()


def test_bad_trace_is_one_clear_line(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_text("3\n4\n-1\n")
    # the installed console script (`python -m pipetune.cli.main` would register the groups on another app)
    exe = Path(sys.executable).parent / "pipetune"
    proc = subprocess.run([str(exe), "trace", "info", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.txt:3" in proc.stderr and "negative" in proc.stderr and "Traceback" not in proc.stderr
