"""Simulator: determinism, conservation, reconfiguration semantics, DAG flow, queueing theory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipetune.backends.simulator import SimSettings, Simulator, SimulatorError
from pipetune.backends.simulator.bench import erlang_c, simulate_wait, single_stage
from pipetune.backends.simulator.service import exponential, fit_error, fit_shifted_gamma
from pipetune.configs import ApplyState
from pipetune.configs import StageConfig as C
from pipetune.metrics import summarise
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


@pytest.fixture(scope="module")
def synth():
    p = load_pipeline(SYNTH)
    return p, load_profiles(p)


def base_config(cls="cls-18", cls_reps=2):
    return {
        "detect": C("det-small", 2, 1, 2),
        "classify": C(cls, 4, 1, cls_reps),
        "tag": C("tag-lite", 2, 1, 1),
        "fuse": C("fuse-rules", 1, 1, 1),
    }


def poisson(rate, seconds, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(rng.uniform(0, seconds, rng.poisson(rate * seconds)))


def run(synth, arrivals, cfg, seed=0, steps=(), **kw):
    p, pr = synth
    sim = Simulator(p, pr, arrivals, cfg, SimSettings(seed=seed, **kw), record_batches=True)
    for t, change in steps:
        sim.wait_until(t)
        sim.apply(change)
    sim.close()
    return sim, sim.result()


def test_same_seed_same_run_other_seed_differs(synth):
    arr = poisson(15, 120)
    steps = [(40.0, {"classify": C("cls-50", 4, 1, 3)}), (80.0, {"detect": C("det-small", 2, 1, 1)})]
    _, a = run(synth, arr, base_config(), seed=7, steps=steps)
    _, b = run(synth, arr, base_config(), seed=7, steps=steps)
    _, c = run(synth, arr, base_config(), seed=8, steps=steps)
    assert np.array_equal(a.finish_s, b.finish_s) and np.array_equal(a.status, b.status)
    assert np.array_equal(a.cost_cores, b.cost_cores)
    assert not np.array_equal(a.finish_s, c.finish_s)


def test_every_request_is_completed_refused_dropped_or_failed(synth):
    arr = poisson(60, 60)  # overload: classify cannot keep up with 120 crops/s on 1 replica
    p, pr = synth
    sim = Simulator(p, pr, arr, base_config(cls="cls-152", cls_reps=1), SimSettings(seed=0, admission=True))
    sim.wait_until(30.0)
    answer = sim.apply({"tag": C("tag-lite", 2, 1, 0)})  # a stage with no replica is not a configuration
    assert answer["tag"].state is ApplyState.FAILED and "replicas" in answer["tag"].reason
    assert sim.in_effect()["tag"] == C("tag-lite", 2, 1, 1)  # the previous configuration keeps serving
    sim.close()
    res = sim.result()
    assert res.status.size == arr.size
    assert set(np.unique(res.status)) <= {1, 2, 3, 4}
    m = summarise(res, 60.0)
    assert m["completed"] + m["refused"] + m["dropped"] + m["failed"] == arr.size
    assert m["refused"] > 0 and m["completed"] > 0 and m["failed"] == 0
    # Drops happen at the drop limit (default: the SLA): nothing completes after waiting longer than allowed
    # at its last stage plus its service there, and no completed request is missing a stage.
    done = res.status == 1
    assert np.all(res.finish_s[done] >= res.arrival_s[done])
    assert np.all(np.isfinite(res.pas[done])) and np.all(res.pas[done] > 0)


def test_no_batch_on_a_loading_replica_and_make_before_break(synth):
    p, pr = synth
    arr = poisson(20, 120, seed=3)
    t_switch = 40.0
    sim, res = run(synth, arr, base_config(), steps=[(t_switch, {"classify": C("cls-50", 4, 1, 3)})])
    load = pr.get("classify", "cls-50").load_time_s
    cls = sim.names.index("classify")
    ready_at = {e["replica"]: e["t"] for e in sim.events if e["event"] == "ready"}
    new_batches = [b for b in sim.batch_log if b[1] == cls and b[2] == "cls-50"]
    old_batches = [b for b in sim.batch_log if b[1] == cls and b[2] == "cls-18"]
    assert new_batches, "the new variant never served"
    assert all(b[3] == 1 for b in sim.batch_log), "a batch started on a replica that was not READY"
    assert all(b[0] >= ready_at[b[4]] >= t_switch + load - 1e-9 for b in new_batches)
    # make-before-break: the old variant keeps serving while the new one loads, and nothing fails
    assert any(t_switch < b[0] < t_switch + load for b in old_batches)
    assert not any(b[0] > t_switch + load + 1.0 for b in old_batches)
    assert summarise(res, 120.0)["failed"] == 0
    # both generations are paid for during the switch: 2 old + 3 new classify cores on top of the rest
    i = np.searchsorted(res.cost_t, t_switch + load / 2, side="right") - 1
    assert res.cost_cores[i] == 2 + 2 + 3 + 1 + 1


def test_drained_scale_down_finishes_the_batch_and_stops_paying(synth):
    arr = poisson(25, 60, seed=1)
    sim, res = run(synth, arr, base_config(cls_reps=4), steps=[(20.0, {"classify": C("cls-18", 4, 1, 1)})])
    assert summarise(res, 60.0)["failed"] == 0
    drained = [e for e in sim.events if e["event"] == "drained"]
    assert all(20.0 <= e["t"] < 21.0 for e in drained)  # busy replicas finish their batch, then go
    i = np.searchsorted(res.cost_t, 25.0, side="right") - 1
    assert res.cost_cores[i] == 2 + 1 + 1 + 1


def test_join_waits_for_every_branch_and_accuracy_is_as_served(synth):
    arr = poisson(5, 60, seed=2)
    sim, res = run(synth, arr, base_config())
    done = res.status == 1
    fuse = sim.names.index("fuse")
    cls = sim.names.index("classify")
    # fuse runs exactly once per completed request, classify twice (2 crops)
    assert np.all(np.array(sim.acc_n[fuse])[done] == 1)
    assert np.all(np.array(sim.acc_n[cls])[done] == 2)
    expected = 0.457 * 0.6975 * 0.80 * 1.0
    assert np.allclose(res.pas[done], expected)


def test_bad_configuration_is_named(synth):
    p, pr = synth
    with pytest.raises(SimulatorError, match="unknown variant"):
        Simulator(p, pr, poisson(1, 5), {**base_config(), "tag": C("nope", 1, 1, 1)})
    with pytest.raises(SimulatorError, match="no entry for stages"):
        Simulator(p, pr, poisson(1, 5), {"detect": C("det-small", 1, 1, 1)})
    with pytest.raises(SimulatorError, match="sorted"):
        Simulator(p, pr, np.array([2.0, 1.0]), base_config())


def test_service_fit_matches_the_row():
    for mean, p50, p99 in [(1.0, 0.97, 1.35), (0.06, 0.0582, 0.081)]:  # exponential-like rows: exact
        d = fit_shifted_gamma(mean, p50, p99)
        assert fit_error(d, mean, p50, p99) < 1e-6
        assert d.quantile(0.9999) < 2 * p99  # a light tail beyond p99
    # rows no gamma matches (mean < p50; heavy skew): mean and p99 exact, the median approximate
    for mean, p50, p99 in [(1.07735, 1.15581, 1.23128), (1.0, 0.9, 3.0), (1.0, 1.0, 1.5)]:
        d = fit_shifted_gamma(mean, p50, p99)
        assert d.mean == pytest.approx(mean, rel=1e-9) and d.quantile(0.99) == pytest.approx(p99, rel=1e-3)
        assert fit_error(d, mean, p50, p99) < 0.08
    assert exponential(2.0).mean == pytest.approx(2.0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rate=st.floats(1, 80),
    reps=st.integers(1, 4),
    batch=st.sampled_from([1, 2, 4, 8]),
    seed=st.integers(0, 10_000),
    switch=st.booleans(),
    wait=st.sampled_from([None, 0.05]),
)
def test_conservation_property(synth, rate, reps, batch, seed, switch, wait):
    arr = poisson(rate, 20, seed)
    cfg = {**base_config(), "classify": C("cls-50", batch, 1, reps)}
    steps = [(10.0, {"classify": C("cls-18", batch, 2, max(1, reps - 1))})] if switch else []
    sim, res = run(synth, arr, cfg, seed=seed, steps=steps, batch_wait_s=wait)
    assert np.all(res.status > 0)
    assert all(b[3] == 1 for b in sim.batch_log)
    assert res.cost_cores[-1] == 0 and np.all(res.cost_cores >= 0)


def test_md1_mean_wait_matches_pollaczek_khinchine():
    w, _ = simulate_wait(0.01, 80.0, 1, "deterministic", 120_000, seed=0)  # rho = 0.8
    theory = 0.8 * 0.01 / (2 * 0.2)
    assert abs(w - theory) / theory < 0.05


def test_mmc_mean_wait_matches_erlang_c():
    w, _ = simulate_wait(0.01, 0.7 * 4 / 0.01, 4, "exponential", 120_000, seed=1)
    theory = erlang_c(4, 2.8) / (400 - 280)
    assert abs(w - theory) / theory < 0.08


def test_single_stage_helper_is_valid():
    p, prof = single_stage(0.01)
    assert p.stage_names == ["s"] and math.isclose(prof.row("s", "v", 1, 1).latency_mean_s, 0.01)


def test_batch_wait_fills_batches_and_bounds_the_wait(synth):
    arr = poisson(10, 60, seed=4)
    cfg = {**base_config(), "classify": C("cls-18", 8, 1, 2)}
    greedy, _ = run(synth, arr, cfg)
    waiting, res = run(synth, arr, cfg, batch_wait_s=0.2)
    cls = greedy.names.index("classify")
    size = lambda sim: np.mean([b[5] for b in sim.batch_log if b[1] == cls])  # noqa: E731
    assert size(waiting) > size(greedy)
    assert np.all(res.status > 0)
    # no item waits for batch formation beyond the timeout: a batch starts at most 0.2 s after its oldest item
    # arrived at an idle replica, so end-to-end latency stays bounded at this light load
    done = res.status == 1
    assert np.percentile((res.finish_s - res.arrival_s)[done], 99) < 1.0
