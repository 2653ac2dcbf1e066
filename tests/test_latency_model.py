"""The latency model against closed forms and its monotonicity."""

from __future__ import annotations

import math

import numpy as np

from pipetune.latency import WAIT_TAIL_SHARE, erlang_c, longest_path, stage_latency
from pipetune.profiles import ProfileRow


def test_erlang_c_known_values():
    # M/M/1: C = rho; M/M/2 at a=1: 1/3; M/M/3 at a=2: 4/9
    assert np.allclose(erlang_c(np.array([1, 2, 3]), np.array([0.5, 1.0, 2.0])), [0.5, 1 / 3, 4 / 9])
    assert erlang_c(np.array([2]), np.array([2.5]))[0] == 1.0  # unstable


def test_mm1_mean_wait_matches_closed_form():
    # exponential service: p99 = mean*ln(100) gives c_s^2 = 1 under the shifted-exponential fit
    s = 0.1
    row = ProfileRow("v", 1, 1, s, s * math.log(2), s * math.log(100), 1 / s)
    lam = 6.0
    lat = stage_latency(row, replicas=1, rate=lam, pct=99)
    rho = lam * s
    wq = rho * s / (1 - rho)  # M/M/1
    assert abs(lat.mean_s - (wq + s)) < 1e-9
    # the waiting time of M/M/1: P(W > t) = rho e^{-(mu - lam) t}. The model takes the waiting term at half the
    # 1% tail budget (latency.WAIT_TAIL_SHARE: W has an atom at 0, so adding its p99 to the service p99 is not a
    # bound), i.e. at W's 99.5th percentile: ln(rho / 0.005), not ln(rho / 0.01)
    assert WAIT_TAIL_SHARE == 0.5
    t995 = math.log(rho / 0.005) / (1 / s - lam)
    assert abs(lat.queue_s - t995) < 1e-9


def test_more_replicas_never_slower_and_batches_wait_at_low_load():
    row = ProfileRow("v", 4, 1, 0.04, 0.04, 0.05, 100.0)
    lats = [stage_latency(row, n, rate=150, pct=99).slo_s for n in range(2, 8)]
    assert all(b <= a + 1e-12 for a, b in zip(lats, lats[1:]))
    low = stage_latency(row, 1, rate=1.0, pct=99)
    assert low.formation_s > 1.0  # waiting for 3 more arrivals at 1/s
    capped = stage_latency(row, 1, rate=1.0, pct=99, max_wait=0.2)
    assert abs(capped.formation_s - 0.2) < 1e-12
    assert math.isinf(stage_latency(row, 1, rate=200, pct=99).slo_s)  # overloaded


def test_longest_path_on_a_dag(synthetic):
    vals = {"detect": 1.0, "classify": 2.0, "tag": 5.0, "fuse": 0.5}
    total, path = longest_path(synthetic, vals)
    assert total == 6.5 and path == ["detect", "tag", "fuse"]
