"""Pattern rules on IPA's windows and on synthetic ones; the synthetic generator; paper_window errors."""

from pathlib import Path

import numpy as np
import pytest

from pipetune.errors import PipetuneError
from pipetune.workloads import PATTERNS, classify_window, find_patterns, paper_window, synthetic_pattern

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.mark.shared
@pytest.mark.parametrize("name", PATTERNS)
def test_rules_reproduce_ipa_labels(name):
    if not (SHARED / "traces" / "paper-windows").exists():
        pytest.skip("../shared/traces/paper-windows is absent")
    raw = paper_window(name, SHARED, damping=1)
    assert raw.size == 1200
    # steady windows split at the training trace's median level (53 requests/s)
    assert classify_window(raw, reference_level=53.0) == name
    np.testing.assert_allclose(paper_window(name, SHARED), raw / 8)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", PATTERNS)
def test_synthetic_patterns_follow_the_rules(name, seed):
    x = synthetic_pattern(name, seed=seed, peak=30)
    assert x.shape == (1200,) and np.all(x >= 0) and np.all(x == np.round(x))
    assert classify_window(x, reference_level=15.0) == name


def test_synthetic_is_seeded():
    a = synthetic_pattern("bursty", seed=4)
    np.testing.assert_array_equal(a, synthetic_pattern("bursty", seed=4))
    assert not np.array_equal(a, synthetic_pattern("bursty", seed=5))
    with pytest.raises(PipetuneError, match="unknown"):
        synthetic_pattern("spiky")


def test_find_patterns_locates_planted_windows():
    # steady-low at a lower base (30 rps) than the others' base (40 rps), so it is the lowest steady window
    parts = [synthetic_pattern("steady-low", seed=7, peak=150)] + [
        synthetic_pattern(n, seed=7, peak=200) for n in ("bursty", "steady-high", "fluctuating")
    ]
    found = find_patterns(np.concatenate(parts), duration=1200, stride=60)
    planted = {"steady-low": 0, "bursty": 1200, "steady-high": 2400, "fluctuating": 3600}
    for name, start in planted.items():
        if name == "bursty":
            continue  # checked below: it must hold the surge
        # a shifted window can score as well (e.g. more quiet base makes a surge stand out more); it must
        # still overlap the planted window by more than half
        overlap = 1200 - abs(found[name].start - start)
        assert overlap > 600, (name, found[name])
    peak_second = 1200 + int(np.argmax(parts[1]))
    assert found["bursty"].start <= peak_second < found["bursty"].start + 1200


def test_paper_window_without_shared_is_a_clear_error(tmp_path):
    with pytest.raises(PipetuneError, match="paper window file .* is missing"):
        paper_window("bursty", shared_dir=tmp_path)
