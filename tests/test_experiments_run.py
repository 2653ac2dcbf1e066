"""Experiment files: validation errors name the field; a small grid runs in processes and writes everything."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from pipetune.experiments import ExperimentError, load_experiment, parse_experiment
from pipetune.experiments.runner import run_experiment, workload_counts

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

SMALL = {
    "name": "tiny",
    "pipeline": "example:synthetic",
    "workloads": [
        {"name": "bursty", "synthetic": "bursty", "seconds": 180, "peak": 20},
        {"name": "steady-low", "synthetic": "steady-low", "seconds": 180, "peak": 20},
    ],
    "systems": [
        {"name": "IPA", "policy": "ipa", "predictor": "oracle"},
        {"name": "FA2-low", "policy": "fa2-low", "predictor": "reactive"},
    ],
    "ablation": {"predictors": ["oracle", "reactive"], "workloads": ["bursty"]},
    "sweep": {"alpha": [1, 10], "beta": [0.05]},
    "calibration": {"samples": 3, "seconds": 60},
}


def test_small_grid_writes_results_figures_and_report(tmp_path):
    exp = parse_experiment(SMALL)
    data = run_experiment(exp, tmp_path, workers=2)
    assert len(data["runs"]) == 2 * 2 + 2 + 2
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["kind"] for r in rows} == {"grid", "ablation", "sweep"}
    for r in rows:
        assert 0.0 <= float(r["sla_violation_rate"]) <= 1.0
        assert int(r["completed"]) + int(r["dropped"]) + int(r["failed"]) == int(r["requests"])
    for name in (
        "sim-grid.png",
        "sim-latency-cdf.png",
        "sim-ablation.png",
        "sim-sweep.png",
        "sim-calibration.png",
        "report.md",
        "report.html",
        "intervals.csv",
        "results.json",
        "calibration.csv",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "| IPA |" in report and "FA2-low" in report
    assert len(list((tmp_path / "logs").glob("*.jsonl"))) == len(data["runs"])
    cal = json.loads((tmp_path / "results.json").read_text())["calibration"]
    assert 1 <= len(cal) <= 3 and all(c["predicted_p99_s"] > 0 for c in cal)
    # the FA2-low baseline never changes variant; IPA (most accurate here) serves a higher PAS
    by = {(r["kind"], r["workload"], r["system"]): r for r in rows}
    assert float(by[("grid", "bursty", "IPA")]["pas_mean"]) > float(by[("grid", "bursty", "FA2-low")]["pas_mean"])
    assert int(by[("grid", "bursty", "FA2-low")]["switches"]) == 0


def test_errors_name_the_field(tmp_path):
    bad = {**SMALL, "systems": [{"name": "X", "policy": "fastest"}]}
    with pytest.raises(ExperimentError, match=r"systems.0.policy"):
        parse_experiment(bad)
    with pytest.raises(ExperimentError, match="exactly one of synthetic, paper or trace"):
        parse_experiment({**SMALL, "workloads": [{"name": "w"}]})
    with pytest.raises(ExperimentError, match="sweep.workload"):
        parse_experiment({**SMALL, "sweep": {"workload": "nope", "alpha": [1], "beta": [1]}})
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({**SMALL, "pipeline": "missing.yaml"}))
    with pytest.raises(ExperimentError, match="missing.yaml does not exist"):
        load_experiment(f).pipeline_path()
    with pytest.raises(ExperimentError, match="no bundled example"):
        parse_experiment({**SMALL, "pipeline": "example:nope"}).pipeline_path()


def test_shipped_experiment_files_are_valid():
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert files
    for f in files:
        exp = load_experiment(f)
        if all(w.paper is None for w in exp.workloads):
            exp.pipeline_path()


def test_paper_windows_load_from_shared():
    if not (SHARED / "traces" / "paper-windows").exists():
        pytest.skip(f"{SHARED} is absent: the paper windows are shared data")
    exp = parse_experiment(
        {
            **SMALL,
            "ablation": None,
            "sweep": None,
            "workloads": [{"name": "steady-high", "paper": "steady-high"}],
            "settings": {"shared_dir": str(SHARED)},
        }
    )
    counts = workload_counts(exp.workloads[0], exp)
    assert counts.size == 1200 and 20 < counts.mean() < 40  # IPA's window divided by 8


def test_several_pipelines_make_one_grid():
    from pipetune.experiments.runner import build_tasks

    exp = parse_experiment(
        {**SMALL, "pipeline": ["example:synthetic", "example:synthetic"], "ablation": None, "sweep": None}
    )
    tasks = build_tasks(exp, None)
    assert {t["pipeline"] for t in tasks} == {"synthetic", "synthetic-1"}
    assert len(tasks) == 2 * 2 * 2


def test_a_failing_run_is_reported_not_fatal(tmp_path):
    exp = parse_experiment(
        {
            **SMALL,
            "ablation": None,
            "sweep": None,
            "calibration": None,
            "workloads": [{"name": "steady-low", "synthetic": "steady-low", "seconds": 120, "peak": 10}],
            "systems": [
                {"name": "IPA", "policy": "ipa", "predictor": "oracle"},
                {"name": "bad", "policy": "fa2-high", "predictor": "oracle", "params": {"heavy": {"detect": "nope"}}},
            ],
        }
    )
    data = run_experiment(exp, tmp_path, workers=1, figures=False)
    assert [r["system"] for r in data["runs"]] == ["IPA"]
    assert len(data["errors"]) == 1 and "nope" in data["errors"][0]["error"]
    assert "Runs that failed (1)" in (tmp_path / "report.md").read_text()
