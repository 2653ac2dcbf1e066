"""The ingress's measured admission limit (Little's law at the measured throughput) never starves a cold start."""

from pipetune.serving.app import ADMIT_SHARE, MIN_RATE_WINDOW_S, RATE_WINDOW_S, measured_admission


def test_no_measured_limit_before_traffic_was_seen_long_enough():
    # cold or idle: nothing completed yet, which says nothing about the throughput; the profile's limit holds
    assert measured_admission(0, 0.0, 0.5) is None
    assert measured_admission(3, MIN_RATE_WINDOW_S * 0.9, 0.5) is None


def test_rate_is_over_the_traffic_seen_then_over_the_window():
    # 60 completions in the first 1.5 s of traffic are 40/s, not 20/s over the whole 3 s window
    assert measured_admission(60, 1.5, 0.5) == round(ADMIT_SHARE * 40 * 0.5)
    assert measured_admission(120, 10.0, 0.5) == round(ADMIT_SHARE * 120 / RATE_WINDOW_S * 0.5)
    assert measured_admission(0, 10.0, 0.5) == 0  # traffic but no completion for seconds: the floor decides
