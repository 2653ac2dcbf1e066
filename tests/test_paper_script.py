"""scripts/make_paper_profiles.py: the measuring process (pinned, adaptive batch stop, failure reported) and
its argument checks. One real (tiny) model is measured in a subprocess."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipetune.profiler.measure import available_cpus

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_paper_profiles", ROOT / "scripts" / "make_paper_profiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _job(**kw):
    job = {
        "variant": "resnet18",
        "shape": {"kind": "image", "image_size": 32},
        "cores": 1,
        "cpus": available_cpus()[:1],
        "batches": [1, 2, 4, 8, 16],
        "skip": [],
        "cell_budget_s": 0.1,
        "min_batches": 2,
        "max_batches": 50,
        "max_batch_s": 0.0,
        "known_means": {},
    }
    job.update(kw)
    return job


@pytest.mark.slow
def test_worker_measures_pinned_and_stops_at_the_batch_time_limit():
    pytest.importorskip("transformers")
    mod = _script()
    cells = []
    err = mod.run_worker(_job(), cells.append, timeout_s=300)
    assert err is None
    # max_batch_s=0: batches 1 and 2 are always measured, nothing larger is predicted to fit
    assert [c["batch"] for c in cells] == [1, 2]
    for c in cells:
        assert c["cpus"] == _job()["cpus"]
        assert c["n_batches"] >= 2 and len(c["latencies_s"]) == c["n_batches"]
        assert c["p99_s"] >= c["p50_s"] > 0 and c["throughput_rps"] > 0 and c["memory_mb"] > 0
        assert c["throughput_rps"] == pytest.approx(c["batch"] / c["mean_s"], rel=0.5)


def test_worker_failure_is_reported_not_raised():
    mod = _script()
    err = mod.run_worker(_job(variant="yolov9-imaginary"), lambda c: None, timeout_s=120)
    assert err is not None and "unknown paper variant 'yolov9-imaginary'" in err


def test_predicted_batch_time_extrapolates_affinely():
    mod = _script()
    cells = {"1": {"mean_s": 1.0}, "2": {"mean_s": 1.5}}
    assert mod.predicted_batch_s(cells, 8) == pytest.approx(4.5)
    assert mod.predicted_batch_s({"1": {"mean_s": 0.2}}, 4) == pytest.approx(0.8)


def test_bad_arguments_are_refused():
    mod = _script()
    assert mod.main(["--only", "video,imaginary", "--no-measure"]) == 2
    with pytest.raises(mod.PipetuneError, match="--budget"):
        mod.parse_budget("soon")
    assert mod.parse_budget("35m") == 2100
