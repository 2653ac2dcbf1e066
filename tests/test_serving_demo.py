"""The live demo's accounting, without Ray: violations are refused + dropped + failed + late; the twin
comparison splits by offered load."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from pipetune import example_path
from pipetune.loadgen.client import Outcome
from pipetune.spec import load_pipeline
from pipetune.tooling.demo import LiveRun, compare_with_twin, summarise


def _run() -> LiveRun:
    v = {"lang": "langid", "topic": "minilm-L1", "keywords": "keywords-nb", "merge": "merge"}
    outs = [
        Outcome(0.1, 200, "", v, 0.2),  # in time
        Outcome(0.5, 200, "", v, 1.5),  # late (SLA 1 s)
        Outcome(1.2, 503, "at capacity", None, 0.001),
        Outcome(1.4, 504, "dropped", None, 2.0),
        Outcome(1.6, 500, "failed: boom", None, 0.1),
    ]
    return LiveRun("pipetune", outs, [{"t": 1.0, "cores": 5.0, "config": {}}, {"t": 2.0, "cores": 7.0, "config": {}}])


def test_summary_counts_every_kind_of_violation():
    p = load_pipeline(example_path("text"))
    s = summarise(_run(), p, 2.0)
    assert (s["requests"], s["completed"], s["refused"], s["dropped"], s["failed"], s["late"]) == (5, 2, 1, 1, 1, 1)
    assert s["sla_violation_rate"] == 4 / 5
    assert s["mean_cores"] == 6.0 and s["lost"] == 0
    assert abs(s["pas_mean"] - 0.975 * 0.7184 * 0.5987) < 1e-9


def test_twin_comparison_splits_by_load():
    sim = SimpleNamespace(
        arrival_s=np.array([0.2, 0.6, 1.1, 1.3]),
        finish_s=np.array([0.3, 0.8, 1.2, 3.0]),
        status=np.array([1, 1, 1, 2]),
    )
    counts = np.array([2.0, 50.0])  # second 0 is low load, second 1 high
    f = compare_with_twin(_run(), sim, counts, 1.0)
    assert f["low_load"]["requests_live"] == 2 and f["low_load"]["violations_live_pct"] == 50.0
    assert f["low_load"]["violations_sim_pct"] == 0.0
    assert f["high_load"]["requests_live"] == 3 and f["high_load"]["violations_live_pct"] == 100.0
    assert f["high_load"]["violations_sim_pct"] == 50.0
    assert f["all"]["requests_sim"] == 4
