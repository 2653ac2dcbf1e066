"""Issue 11 item 6: an experiment file is checked before anything runs, a sweep re-validates what it builds, and
Ctrl-C stops an experiment promptly, keeping the completed runs and a report marked partial."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipetune.errors import PipetuneError
from pipetune.experiments import ExperimentError, parse_experiment
from pipetune.experiments.runner import ExperimentInterrupted, run_experiment
from pipetune.experiments.tasks import swept_pipeline
from pipetune.spec import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ROOT / "src/pipetune/examples/synthetic/pipeline.yaml"

TINY = {
    "name": "tiny",
    "pipeline": "example:synthetic",
    "workloads": [{"name": "steady-low", "synthetic": "steady-low", "seconds": 120, "peak": 10}],
    "systems": [
        {"name": "IPA", "policy": "ipa", "predictor": "oracle"},
        {"name": "RIM", "policy": "rim", "predictor": "reactive", "params": {"replicas": 2}},
    ],
    "seeds": [0, 1, 2],
    "calibration": None,
}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "pipetune", *args], capture_output=True, text=True, env=env, **kw)


# ---- checked before anything runs ---------------------------------------------------------------------------
def test_a_typo_in_an_experiment_file_is_refused_before_any_run(tmp_path):
    bad = {**TINY, "systems": [{"name": "RIM", "policy": "rim", "params": {"replica": 3}}]}
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump(bad))
    out = tmp_path / "out"
    res = cli("experiment", "run", str(f), "--out", str(out))
    assert res.returncode != 0
    assert "systems.0: params.replica" in res.stderr and "did you mean 'replicas'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    "change, message",
    [
        ({"systems": [{"name": "X", "policy": "fa2-low", "params": {"heavy": {"detect": "det-large"}}}]},
         r"params.heavy: policy 'fa2-low' has no parameter 'heavy' \(a parameter of fa2-high\)"),
        ({"systems": [{"name": "X", "policy": "rim", "params": {"replicas": -2}}]},
         r"params.replicas: -2 is not valid for policy 'rim'; give a whole number >= 1"),
        ({"systems": [{"name": "X", "policy": "static-peak", "params": {"peak_rps": 0}}]}, r"params.peak_rps: 0"),
        ({"systems": [{"name": "X", "predictor": "reactiv"}]}, r"systems.0.predictor: .*did you mean 'reactive'"),
        ({"systems": [{"name": "X", "predictor": {"name": "max", "windw": 30}}]},
         r"predictor 'max' has no parameter 'windw' \(did you mean 'window'\?\)"),
        ({"systems": [{"name": "X", "predictor": {"name": "ewma", "alpha": 2}}]}, r"alpha must be in \(0, 1\]"),
        ({"systems": [{"name": "X", "predictor": {"name": "oracle", "stat": "p99"}}]}, r"stat 'p99' is unknown"),
        ({"ablation": {"policy": "ipaa", "predictors": ["oracle"]}}, r"ablation.policy: .*did you mean 'ipa'"),
        ({"ablation": {"predictors": ["oracle", "lstn"]}}, r"ablation.predictors: item 1: predictor 'lstn'"),
        ({"sweep": {"predictor": "nope", "alpha": [1], "beta": [1]}}, r"sweep.predictor: predictor 'nope'"),
        ({"settings": {"arrival_process": "poison"}}, r"settings.arrival_process: .*did you mean 'poisson'"),
        ({"settings": {"service": "exp"}}, r"settings.service: Input should be 'profile'"),
        ({"workloads": [{"name": "w", "synthetic": "burst"}]}, r"workloads.0.synthetic: .*did you mean 'bursty'"),
        ({"calibration": {"system": "IPAA"}}, r"calibration.system 'IPAA' is not a system \(did you mean 'IPA'\?\)"),
    ],
)  # fmt: skip
def test_every_part_of_an_experiment_is_checked_when_read(change, message):
    with pytest.raises(ExperimentError, match=message):
        parse_experiment({**TINY, **change})


def test_what_the_checks_accept():
    exp = parse_experiment(
        {
            **TINY,
            "systems": [
                {"name": "A", "policy": "rim", "params": {"replicas": {"detect": 2, "classify": 1, "tag": 1}}},
                {
                    "name": "B",
                    "policy": "fa2-high",
                    "params": {"heavy": {"detect": "det-large"}, "measured_only": True},
                },
                {"name": "C", "policy": "ipa", "predictor": {"name": "lstm", "pretrained": True}},
                {"name": "D", "policy": "static-peak", "predictor": {"name": "oracle", "horizon": 20, "stat": "mean"}},
            ],
            "settings": {"arrival_process": "uniform", "service": "deterministic"},
        }
    )
    assert [s.name for s in exp.systems] == ["A", "B", "C", "D"]


# ---- sweeps re-validate what they build ------------------------------------------------------------------
def test_a_swept_objective_is_validated_as_a_whole_pipeline():
    pipe = load_pipeline(SYNTH)
    assert swept_pipeline(pipe, {"alpha": 5.0, "beta": 0.2}).objective.alpha == 5.0
    assert swept_pipeline(pipe, None) is pipe
    with pytest.raises(PipetuneError, match=r"objective.alpha: Input should be greater than or equal to 0"):
        swept_pipeline(pipe, {"alpha": -1.0, "beta": 0.1})  # model_copy(update=...) would have let it through


def test_a_sweep_producing_an_invalid_value_is_refused_before_any_run(tmp_path):
    exp = parse_experiment({**TINY, "sweep": {"alpha": [1, -1], "beta": [0.1]}})
    with pytest.raises(ExperimentError, match=r"sweep: alpha=-1, beta=0.1 makes pipeline 'synthetic' invalid.*alpha"):
        run_experiment(exp, tmp_path / "out", workers=1, figures=False)
    assert not (tmp_path / "out").exists()


# ---- Ctrl-C keeps what is done ----------------------------------------------------------------------------------
def _check_partial(out: Path, at_least: int, planned: int = 6) -> dict:
    data = json.loads((out / "results.json").read_text())
    p = data["partial"]
    assert at_least <= len(data["runs"]) == p["runs_done"] < p["runs_planned"] == planned
    report = (out / "report.md").read_text()
    assert report.startswith("# Experiment: tiny (partial)") and "**Partial results.**" in report
    assert f"{p['runs_done']} of {planned} runs completed" in report
    assert "(partial)" in (out / "report.html").read_text()
    return data


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupt_keeps_the_completed_runs_and_a_partial_report(tmp_path, workers):
    exp = parse_experiment(TINY)
    seen: list[dict] = []

    def on_progress(result: dict) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    t0 = time.perf_counter()
    with pytest.raises(ExperimentInterrupted) as info:
        run_experiment(exp, tmp_path, workers=workers, on_progress=on_progress)
    assert time.perf_counter() - t0 < 60
    data = _check_partial(tmp_path, at_least=2)
    # what on_progress saw comes first; with 2 workers a run that finished while the interrupt was being handled
    # is kept too (it completed), so the file may hold more than `seen`, never fewer, and never all 6
    key = lambda r: (r["system"], r["workload"], r["seed"])  # noqa: E731
    assert [key(r) for r in data["runs"][: len(seen)]] == [key(r) for r in seen]
    assert workers > 1 or len(data["runs"]) == len(seen)
    assert info.value.data == data
    assert multiprocessing.active_children() == []  # the pool's workers are gone


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads child processes from Linux's /proc")
def test_sigint_stops_a_running_experiment_promptly_and_leaves_no_worker(tmp_path):
    # enough runs that the ones left when the signal comes cannot all finish before it (a fast machine, or a
    # simulator that got faster, ran the last two of six before it)
    longer = {**TINY, "workloads": [{"name": "bursty", "synthetic": "bursty", "seconds": 1200, "peak": 30}],
              "seeds": list(range(8))}  # fmt: skip
    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump(longer))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "pipetune", "experiment", "run", str(f), "--out", str(out), "--workers", "2"]
    # the child gets Ctrl-C's default handling whatever this process has (an ignored signal is inherited)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # a run's log opens when it starts: with two workers, a fourth log means two runs have completed
        while len(list((out / "logs").glob("*.jsonl"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 15, "Ctrl-C must stop the experiment promptly"
    assert proc.returncode == 130, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr, stderr
    assert workers and not [w for w in workers if _alive(w)]
    _check_partial(out, at_least=1, planned=16)
