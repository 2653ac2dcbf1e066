"""The adaptive-quantile default: deterministic online calibration, and the under/over-provisioning goal."""

from pathlib import Path

import numpy as np
import pytest

from pipetune.predictors import make_predictor
from pipetune.predictors.evaluate import evaluate, metrics
from pipetune.workloads import PATTERNS, paper_window, synthetic_pattern

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def test_metrics_by_hand():
    m = metrics(np.array([10.0, 8.0, 12.0, 5.0]), np.array([10.0, 10.0, 10.0, 4.0]))
    assert m["under_rate"] == 0.25
    assert m["over_provision"] == pytest.approx((0.2 + 0.25) / 2)  # mean over the over-predicted decisions
    assert m["mean_over"] == pytest.approx((0.2 + 0.25) / 4)


def test_state_depends_on_history_not_on_call_pattern():
    x = synthetic_pattern("bursty", seed=2)
    every10 = make_predictor("default")
    for t in range(10, 901, 10):
        a = every10.predict(x[:t])
    once = make_predictor("default")
    b = once.predict(x[:900])
    assert a == pytest.approx(b)
    # a history that is not an extension of the last one restarts the calibration
    c = once.predict(synthetic_pattern("steady-low", seed=1)[:900])
    assert c == pytest.approx(make_predictor("default").predict(synthetic_pattern("steady-low", seed=1)[:900]))


def test_calibration_reacts_to_misses():
    p = make_predictor("default", gamma=0.5)
    x = np.concatenate([np.full(300, 10.0), np.full(300, 40.0)])  # a step the forecast cannot foresee
    p.predict(x[:300])
    z_before = p.z_
    p.predict(x[:340])
    assert p.z_ > z_before  # the misses at the step widened the margin


def test_default_beats_window_max_on_synthetic_surges():
    windows = {f"{n}-{s}": synthetic_pattern(n, seed=s) for n in ("bursty", "fluctuating") for s in range(3)}
    d = evaluate(make_predictor("default"), windows)
    m = evaluate(make_predictor("max"), windows)
    assert d.under_rate <= 0.15
    assert d.over_provision < m.over_provision


@pytest.mark.shared
def test_goal_on_ipa_paper_windows():
    if not (SHARED / "traces" / "paper-windows").exists():
        pytest.skip("../shared/traces/paper-windows is absent")
    windows = {n: paper_window(n, SHARED) for n in PATTERNS}
    s = evaluate(make_predictor("default"), windows, interval=10, horizon=20, warmup=120)
    assert s.under_rate <= 0.10, s.as_dict()
    assert s.over_provision <= 0.25, s.as_dict()
