"""The ingress's measured admission limit (Little's law at the measured throughput) never starves a cold start."""

from pipetune.admission import (
    ADMIT_SHARE,
    BEHIND_SHARE,
    MIN_RATE_WINDOW_S,
    RATE_WINDOW_S,
    admission_now,
    measured_admission,
)


def test_no_measured_limit_before_traffic_was_seen_long_enough():
    # cold or idle: nothing completed yet, which says nothing about the throughput; the profile's limit holds
    assert measured_admission(0, 0.0, 0.5) is None
    assert measured_admission(3, MIN_RATE_WINDOW_S * 0.9, 0.5) is None


def test_rate_is_over_the_traffic_seen_then_over_the_window():
    # 60 completions in the first 1.5 s of traffic are 40/s, not 20/s over the whole 3 s window
    assert measured_admission(60, 1.5, 0.5) == round(ADMIT_SHARE * 40 * 0.5)
    assert measured_admission(120, 10.0, 0.5) == round(ADMIT_SHARE * 120 / RATE_WINDOW_S * 0.5)
    assert measured_admission(0, 10.0, 0.5) == 0  # traffic but no completion for seconds: the floor decides


def test_measured_limit_binds_only_while_the_pipeline_is_behind():
    # keeping up (oldest in flight younger than BEHIND_SHARE x SLA): the profile's limit, whatever was measured
    assert admission_now(40, 4, 8, oldest_s=0.9 * BEHIND_SHARE * 1.0, sla_s=1.0) == 40
    # behind: the measured limit, but never below the floor nor above the profile's limit
    assert admission_now(40, 4, 8, oldest_s=BEHIND_SHARE * 1.0, sla_s=1.0) == 8
    assert admission_now(40, 4, 2, oldest_s=0.9, sla_s=1.0) == 4
    assert admission_now(40, 4, 90, oldest_s=0.9, sla_s=1.0) == 40
    # nothing measured yet (cold start): the profile's limit even when behind
    assert admission_now(40, 4, None, oldest_s=5.0, sla_s=1.0) == 40


def test_window_measures_since_traffic_resumed_and_forgets_old_completions():
    """AdmissionWindow, the state both the live ingress and the simulator keep for the measured limit."""
    from pipetune.admission import AdmissionWindow

    w = AdmissionWindow(sla_s=1.0, now=0.0)
    assert w.limit(0.0, inflight=0, oldest_admitted_t=None, max_inflight=40, floor=4) == 40  # idle: profile's
    for i in range(10):  # 10 completions in the first 2 s of traffic: 5/s
        w.completed(0.2 * i)
    behind = w.limit(2.0, inflight=6, oldest_admitted_t=2.0 - BEHIND_SHARE, max_inflight=40, floor=4)
    assert behind == max(4, round(ADMIT_SHARE * 10 / 2.0 * 1.0))
    assert w.limit(2.0, inflight=6, oldest_admitted_t=1.9, max_inflight=40, floor=4) == 40  # keeping up
    # long after: the old completions left the window, nothing completed since, the floor decides while behind
    assert w.limit(20.0, inflight=6, oldest_admitted_t=19.0, max_inflight=40, floor=4) == 4
    # idle again: the rate is measured afresh from the next traffic on
    assert w.limit(30.0, inflight=0, oldest_admitted_t=None, max_inflight=40, floor=4) == 40
    assert w.limit(30.5, inflight=6, oldest_admitted_t=29.0, max_inflight=40, floor=4) == 40  # < MIN window
