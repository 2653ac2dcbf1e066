"""Arrival processes: counts kept per second, sorted, seeded, and the right within-second statistics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetune.errors import PipetuneError
from pipetune.workloads import arrival_times, integer_counts


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=60),
    st.sampled_from(["poisson", "uniform", "step"]),
    st.integers(0, 10),
)
def test_counts_per_second_are_kept(counts, process, seed):
    t = arrival_times(np.array(counts, dtype=float), process, seed)
    assert np.all(np.diff(t) >= 0)
    np.testing.assert_array_equal(np.bincount(t.astype(int), minlength=len(counts))[: len(counts)], counts)
    assert t.size == sum(counts)


def test_poisson_gaps_are_exponential_and_spread_over_the_second():
    n = 40
    t = arrival_times(np.full(2000, n, dtype=float), "poisson", seed=1)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / n, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: CV 1
    # Offsets within the second are uniform (no bunching at the start, unlike IPA's independent offsets).
    off = t - np.floor(t)
    assert off.mean() == pytest.approx(0.5, abs=0.01)
    assert np.mean(off < 0.1) == pytest.approx(0.1, abs=0.01)
    # Counts in 100-ms bins: mean n/10; dispersion of a conditioned Poisson process is (1 - 1/10) of the mean.
    bins = np.bincount((t * 10).astype(int))
    assert bins.mean() == pytest.approx(n / 10, rel=0.01)
    assert bins.var() / bins.mean() == pytest.approx(0.9, abs=0.05)


def test_uniform_and_step():
    u = arrival_times(np.array([4.0, 0, 2]), "uniform")
    np.testing.assert_allclose(u, [0, 0.25, 0.5, 0.75, 2.0, 2.5])
    s = arrival_times(np.array([2.0, 0, 1]), "step")
    np.testing.assert_allclose(s, [0, 0, 2])
    g = np.diff(arrival_times(np.full(100, 10.0), "uniform"))
    assert g.std() == pytest.approx(0, abs=1e-9)


def test_seeded_and_fractional_counts():
    a = arrival_times(np.full(10, 5.0), seed=3)
    np.testing.assert_array_equal(a, arrival_times(np.full(10, 5.0), seed=3))
    assert not np.array_equal(a, arrival_times(np.full(10, 5.0), seed=4))
    frac = np.full(80, 45 / 8)  # a damped trace: 5.625 rps
    n = integer_counts(frac)
    assert n.sum() == 450 and set(n) <= {5, 6}
    assert arrival_times(np.zeros(5)).size == 0


def test_bad_process_and_counts():
    with pytest.raises(PipetuneError, match="unknown"):
        arrival_times(np.ones(3), "bursty")
    with pytest.raises(PipetuneError, match="second 1"):
        arrival_times(np.array([1.0, -1.0]))
