"""pipetune.metrics is the one home of what a request's outcome is and what counts as an SLA violation, for the
simulator, the load generator and the live demo alike."""

from __future__ import annotations

import numpy as np

from pipetune import metrics as m
from pipetune.spec import example_path, load_pipeline


def test_http_statuses_map_to_one_outcome_each():
    st = np.array([200, 503, 504, 500, 0, 429])
    assert list(m.outcomes_of_http(st)) == [m.COMPLETED, m.REFUSED, m.DROPPED, m.FAILED, m.FAILED, m.FAILED]
    assert int(m.outcomes_of_http(503)) == m.REFUSED


def test_a_violation_is_anything_not_completed_within_the_sla():
    outcome = np.array([m.COMPLETED, m.COMPLETED, m.DROPPED, m.FAILED, m.REFUSED, m.TIMEOUT, m.NOT_SENT])
    lat = np.array([0.5, 1.5, 2.0, 0.1, 0.0, np.nan, np.nan])
    late, violation = m.sla_masks(outcome, lat, 1.0)
    assert list(late) == [False, True, False, False, False, False, False]
    assert list(violation) == [False, True, True, True, True, True, True]


def test_counts_name_every_finished_outcome_and_leave_pending_out():
    c = m.outcome_counts(np.array([m.PENDING, m.COMPLETED, m.COMPLETED, m.NOT_SENT], dtype=np.int8))
    assert "pending" not in c and set(c) == set(m.OUTCOMES) - {"pending"}
    assert (c["completed"], c["not_sent"], sum(c.values())) == (2, 1, 3)


def test_unserved_requests_are_infinitely_late_in_quantiles():
    lat = m.latency_or_inf(np.array([m.COMPLETED, m.DROPPED]), np.array([0.2, 0.3]))
    assert lat[0] == 0.2 and np.isinf(lat[1])


def test_served_pas_is_the_product_of_the_serving_variants_accuracies():
    p = load_pipeline(example_path("text"))
    picks = {s: p.stage(s).variants[0] for s in p.stage_names}
    want = float(np.prod([v.accuracy for v in picks.values()]))
    assert abs(m.served_pas(p, {s: v.name for s, v in picks.items()}) - want) < 1e-12
    assert np.isnan(m.served_pas(p, None)) and np.isnan(m.served_pas(p, {p.stage_names[0]: "no-such-variant"}))
