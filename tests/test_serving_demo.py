"""The live demo's accounting and verdict, without Ray: violations are refused + dropped + failed + late (by
pipetune.metrics, from a recorded run); the twin comparison splits by offered load; the "who won" lines and the
twin's fidelity lines and the demo's goals; the load's trough and peak, and what configurations hold on the
host."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune import metrics
from pipetune.backends.simulator.engine import SimResult
from pipetune.loadgen.client import Outcome
from pipetune.spec import example_path, load_pipeline
from pipetune.tooling.demo import (
    CONTENDERS,
    LiveRun,
    compare_with_twin,
    demo_load,
    demo_rate,
    fidelity_lines,
    goal_lines,
    live_result,
    summarise,
    variant_changes,
    who_won,
)

V = {"lang": "langid", "topic": "minilm-L1", "keywords": "keywords-nb", "merge": "merge"}


def _cfg(topic: str) -> dict:
    return {s: {"variant": (topic if s == "topic" else v), "batch": 1, "cores": 1, "replicas": 1} for s, v in V.items()}


def _run() -> LiveRun:
    outs = [
        Outcome(0.1, 200, "", V, 0.2),  # in time
        Outcome(0.5, 200, "", V, 1.5),  # late (SLA 1 s)
        Outcome(1.2, 503, "at capacity", None, 0.001),
        Outcome(1.4, 504, "dropped", None, 2.0),
        Outcome(1.6, 500, "failed: boom", None, 0.1),
    ]
    samples = [
        {"t": 1.0, "cores": 5.0, "config": _cfg("minilm-L1")},
        {"t": 1.5, "cores": 7.0, "config": _cfg("minilm-L3")},
    ]
    return LiveRun("pipetune", outs, samples)


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline(example_path("text"))


def test_summary_counts_every_kind_of_violation(pipeline):
    s = summarise(_run(), pipeline, 2.0)
    assert (s["requests"], s["completed"], s["refused"], s["dropped"], s["failed"], s["late"]) == (5, 2, 1, 1, 1, 1)
    assert s["sla_violation_rate"] == 4 / 5 and s["lost"] == 0
    # cores held over [0, 2), each sample standing for the second before it: 5 over [0, 0.5), 7 from 0.5 on
    assert s["mean_cores"] == pytest.approx((5.0 * 0.5 + 7.0 * 1.5) / 2)
    assert abs(s["pas_mean"] - 0.975 * 0.7184 * 0.5987) < 0.01
    acc = {v.name: v.accuracy for st in pipeline.stages for v in st.variants}
    assert s["pas_mean"] == pytest.approx(acc["langid"] * acc["minilm-L1"] * acc["keywords-nb"] * acc["merge"])
    assert s["variant_changes"] == 1
    # what was neither answered nor refused, by reason (status and error text): the report says why
    assert s["failures"] == {"504: dropped": 1, "500: failed: boom": 1}


def test_live_result_is_what_metrics_reads(pipeline):
    r = live_result(_run(), pipeline, 2.0)
    C, D, F, R = metrics.COMPLETED, metrics.DROPPED, metrics.FAILED, metrics.REFUSED
    assert list(r.status) == [C, C, R, D, F]
    assert np.all(np.diff(r.arrival_s) >= 0) and r.horizon_s == 2.0 and r.sla_s == pipeline.sla.seconds
    assert np.isnan(r.pas[2:]).all() and not np.isnan(r.pas[:2]).any()


def test_variant_changes_counts_changes_in_effect_only():
    same = {"t": 0, "cores": 5, "config": _cfg("minilm-L1")}
    other = {"t": 0, "cores": 5, "config": _cfg("mpnet-base")}
    assert variant_changes([same, same, other, other, same, {"t": 0, "cores": 5, "config": {}}]) == 2
    assert variant_changes([]) == 0


def test_twin_comparison_splits_by_load(pipeline):
    sim = SimResult(
        arrival_s=np.array([0.2, 0.6, 1.1, 1.3]),
        finish_s=np.array([0.3, 0.8, 1.2, 3.0]),
        status=np.array([1, 1, 1, 2], dtype=np.int8),
        pas=np.full(4, np.nan),
        norm_acc=np.full(4, np.nan),
        cost_t=np.zeros(1),
        cost_cores=np.zeros(1),
        events=[],
        sla_s=1.0,
        horizon_s=2.0,
    )
    counts = np.array([2.0, 50.0])  # second 0 is low load, second 1 high
    f = compare_with_twin(_run(), sim, counts, pipeline)
    assert f["low_load"]["requests_live"] == 2 and f["low_load"]["violations_live_pct"] == 50.0
    assert f["low_load"]["violations_sim_pct"] == 0.0
    assert f["high_load"]["requests_live"] == 3 and f["high_load"]["violations_live_pct"] == 100.0
    assert f["high_load"]["violations_sim_pct"] == 50.0
    assert f["all"]["requests_sim"] == 4


def _summaries() -> dict:
    return {
        "pipetune": {"pas_mean": 0.58, "sla_violation_rate": 0.004, "mean_cores": 6.0, "latency_p99_s": 0.62},
        "ray-autoscaling": {"pas_mean": 0.60, "sla_violation_rate": 0.31, "mean_cores": 8.5, "latency_p99_s": 1.9},
        "static-fast": {"pas_mean": 0.55, "sla_violation_rate": 0.004, "mean_cores": 5.0, "latency_p99_s": None},
        "simulator twin": {"pas_mean": 0.99, "sla_violation_rate": 0.0, "mean_cores": 1.0, "latency_p99_s": 0.1},
    }


def test_who_won_names_the_winner_of_each_criterion_and_every_figure():
    acc, viol, cores, p99 = who_won(_summaries())
    assert acc.startswith("accuracy served (PAS): ray-autoscaling won (")
    assert "pipetune 0.580" in acc and "static-fast 0.550" in acc and "twin" not in acc  # the twin is no contender
    assert viol.startswith("SLA violations: pipetune and static-fast won (")  # a tie at the shown precision
    assert "ray-autoscaling 31.00%" in viol
    assert cores.startswith("cores held (mean): static-fast won")
    assert p99.startswith("p99 latency: pipetune won") and "static-fast –" in p99  # no figure cannot win
    assert who_won({}, CONTENDERS)[0] == "accuracy served (PAS): no contender has a figure"


def test_fidelity_lines_say_met_or_missed():
    def fid(lp, tp, vl, vs):
        return {"all": {"p99_live_s": lp, "p99_sim_s": tp, "violations_live_pct": vl, "violations_sim_pct": vs}}

    p99, viol = fidelity_lines(fid(0.50, 0.55, 1.0, 2.5))
    assert "+10%" in p99 and p99.endswith("met)") and viol.endswith("met)") and "+1.50 points" in viol
    p99, viol = fidelity_lines(fid(0.50, 0.35, 1.0, 3.5))
    assert "-30%" in p99 and "MISSED" in p99 and "MISSED" in viol
    p99, _ = fidelity_lines(fid(None, 0.3, 100.0, 0.0))
    assert "cannot compare" in p99


def test_the_load_has_a_trough_a_shoulder_and_one_spike():
    rate = demo_rate(120, 4.0, 50.0, shoulder=20.0)
    assert rate.size == 120 and rate.min() == pytest.approx(4.0) and rate.max() == pytest.approx(50.0)
    rising = np.flatnonzero(np.diff(rate) > 1e-9)
    falling = np.flatnonzero(np.diff(rate) < -1e-9)
    assert rising.size and falling.size and rising.max() < falling.min()  # up (in two steps), then down once
    assert np.count_nonzero(np.abs(rate - 20.0) < 1e-9) >= 20  # the shoulder is held
    assert np.count_nonzero(rate >= 49.9) >= 8  # the peak is held, not touched
    assert rate[:12].max() == pytest.approx(4.0) and rate[-20:].max() == pytest.approx(4.0)  # troughs both sides
    assert np.abs(np.diff(rate)).max() < 50.0 / 10  # rises take tens of seconds
    assert demo_rate(120, 4.0, 50.0)[40] == pytest.approx(27.0)  # the default shoulder: halfway
    a = demo_load(120, 4.0, 50.0, shoulder=20.0)
    assert a.size == 120 and 0.8 * rate.sum() <= a.sum() <= 1.2 * rate.sum()
    with pytest.raises(ValueError, match="trough"):
        demo_rate(120, 10.0, 5.0)
    with pytest.raises(ValueError, match="shoulder"):
        demo_rate(120, 4.0, 50.0, shoulder=60.0)


def test_goal_lines_say_met_or_missed():
    good = {"pipetune": {"variant_changes": 2, "lost": 0, "sla_violation_rate": 0.004, "pas_mean": 0.53},
            "static-fast": {"sla_violation_rate": 0.0, "pas_mean": 0.48},
            "ray-autoscaling": {"sla_violation_rate": 0.6, "pas_mean": 0.58}}  # fmt: skip
    lines = goal_lines(good)
    assert len(lines) == 4 and all(line.endswith("met)") for line in lines), lines
    bad = {**good, "pipetune": {"variant_changes": 1, "lost": 1, "sla_violation_rate": 0.02, "pas_mean": 0.49}}
    assert sum("MISSED" in line for line in goal_lines(bad)) == 3
    assert goal_lines({"static-fast": good["static-fast"]}) == []


@pytest.fixture(scope="module")
def planned(pipeline):
    from pipetune.profiles import load_profiles
    from pipetune.serving.session import planning_pipeline

    return planning_pipeline(pipeline, 15.0), load_profiles(pipeline)


def test_best_static_holds_its_peak_and_trades_accuracy_as_the_peak_grows(planned):
    from pipetune.runtime_profile import RuntimeProfile
    from pipetune.tooling.demo import best_static

    planning, profiles = planned
    rt = RuntimeProfile(host_cores=2.0, request_cpu_s=0.005, call_cpu_s=0.004, item_cpu_s=0.0, fusion=True)
    low, high = best_static(planning, profiles, 2.0, rt), best_static(planning, profiles, 12.0, rt)
    assert low.holds and high.holds and high.host_capacity_rps >= 12.0
    assert high.pas <= low.pas
    with pytest.raises(ValueError, match="--peak"):
        best_static(planning, profiles, 5000.0, rt)


def test_the_fastest_configuration_holds_more_than_the_accurate_one(planned):
    from pipetune.runtime_profile import RuntimeProfile
    from pipetune.tooling.demo import capacity, fastest_variants

    planning, profiles = planned
    rt = RuntimeProfile(host_cores=2.0, request_cpu_s=0.005, call_cpu_s=0.004, item_cpu_s=0.0, fusion=True)
    fast = fastest_variants(planning, profiles)
    assert fast["topic"] == "minilm-L1"  # the smallest encoder has the highest profiled throughput
    accurate, fastest = capacity(planning, profiles, rt), capacity(planning, profiles, rt, fast)
    assert accurate.variants()["topic"] == "mpnet-base" and fastest.variants() == fast
    assert 0 < accurate.rps < fastest.rps
    assert accurate.holds and fastest.holds
    # the bisection's answer is the edge: a little more is no longer held
    from pipetune.tooling.demo import host_plan

    beyond = host_plan(planning, profiles, fastest.rps * 1.05, rt, fast)
    assert beyond is None or not beyond.holds


def test_a_rate_is_held_with_nothing_refused_and_violations_within_one_percent():
    from pipetune.tooling.serving_bench import _held

    ok = [Outcome(i * 0.01, 200, "", V, 0.05) for i in range(200)]
    held, facts = _held(ok, 1.0)
    assert held and facts["sent"] == 200 and facts["refused"] == 0 and facts["violations"] == 0.0
    assert facts["p99_s"] == pytest.approx(0.05)
    assert _held([*ok[:-2], Outcome(0, 200, "", V, 1.5), Outcome(0, 504, "", None, 2.0)], 1.0)[0]  # 1%: held
    late = [*ok[:-3], *(Outcome(0, 200, "", V, 1.5) for _ in range(3))]
    assert not _held(late, 1.0)[0]  # 1.5% late
    refused = [*ok[:-1], Outcome(0, 503, "at capacity", None, 0.001)]
    held, facts = _held(refused, 1.0)
    assert not held and facts["refused"] == 1  # any refusal: not held
    assert not _held([], 1.0)[0]


def test_the_contenders_that_never_switch_are_served_without_warm_variants(pipeline):
    from pipetune.tooling.demo import without_warm_variants

    assert pipeline.stage("topic").warm_variants  # pipetune's: a switch among them is a route change
    cold = without_warm_variants(pipeline)
    assert all(not st.warm_variants for st in cold.stages) and cold.stage_names == pipeline.stage_names
