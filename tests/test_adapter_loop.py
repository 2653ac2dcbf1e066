"""The adapter drives the simulator end to end through the Backend interface only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipetune.adapter import Adapter, OraclePredictor, resolve_predictor
from pipetune.backends.base import Backend
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.errors import PipetuneError
from pipetune.metrics import summarise
from pipetune.optimizer import plan_pipeline
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline
from pipetune.workloads import arrival_times, integer_counts, synthetic_pattern

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


@pytest.fixture(scope="module")
def synth():
    p = load_pipeline(SYNTH)
    return p, load_profiles(p)


def drive(synth, counts, policy="ipa", predictor="oracle", log=None, seed=0):
    p, pr = synth
    first = plan_pipeline(p, float(counts[:10].max()), policy, profiles=pr)
    sim = Simulator(p, pr, arrival_times(counts, seed=seed), first.configs, SimSettings(seed=seed))
    ad = Adapter(
        sim,
        p,
        policy=policy,
        predictor=predictor,
        interval_s=10,
        profiles=pr,
        log=log,
        future_counts=integer_counts(counts),
    )
    ad.run(float(counts.size))
    ad.close()
    sim.close()
    return sim, ad, sim.result(float(counts.size))


def test_adapter_follows_a_surge_and_logs_every_decision(synth, tmp_path):
    counts = synthetic_pattern("bursty", seconds=300, seed=1, peak=30)
    log = tmp_path / "decisions.jsonl"
    sim, ad, res = drive(synth, counts, log=log)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == len(ad.decisions) == 29  # every 10 s from t=10 to t=290
    for rec in lines:
        for key in ("observed_rps", "predicted_rps", "configs", "objective_terms", "solve_time_s", "applied"):
            assert key in rec
    assert any(rec["applied"] for rec in lines)
    assert not all(rec["applied"] for rec in lines)  # least change: an unchanged plan is not re-applied
    # capacity follows the load: more cores held at the peak than at the start
    peak_t = int(np.argmax(np.convolve(counts, np.ones(20), "valid")))
    at = lambda t: res.cost_cores[np.searchsorted(res.cost_t, t, side="right") - 1]  # noqa: E731
    assert at(peak_t + 15) > at(5.0)
    m = summarise(res, 300.0, decisions=len(ad.decisions))
    assert m["completed"] + m["dropped"] + m["failed"] == m["requests"]
    assert m["sla_violation_rate"] <= 0.02


def test_oracle_ipa_meets_the_sla_at_steady_load(synth):
    counts = synthetic_pattern("steady-high", seconds=300, seed=2, peak=30)
    _, _, res = drive(synth, counts)
    assert summarise(res, 300.0)["sla_violation_rate"] <= 0.01


def test_adapter_only_uses_the_backend_interface(synth):
    """A minimal fake-free check: wrap the simulator so that only Backend methods are reachable."""
    p, pr = synth
    counts = np.full(60, 8.0)
    first = plan_pipeline(p, 8.0, "ipa", profiles=pr)
    inner = Simulator(p, pr, arrival_times(counts), first.configs)

    class Narrow(Backend):
        def now(self):
            return inner.now()

        def wait_until(self, t):
            inner.wait_until(t)

        def observe(self):
            return inner.observe()

        def apply(self, configs):
            return inner.apply(configs)

        def stage_status(self):
            return inner.stage_status()

        def in_effect(self):
            return inner.in_effect()

        def replicas_ready(self):
            return inner.replicas_ready()

        def cores_held(self):
            return inner.cores_held()

    ad = Adapter(Narrow(), p, predictor="reactive", interval_s=10, profiles=pr)
    ad.run(60.0)
    assert len(ad.decisions) == 5 and ad.decisions[-1].observed_rps == pytest.approx(8.0)


def test_oracle_and_predictor_errors():
    o = OraclePredictor(np.array([1, 5, 2, 9, 0, 0]), horizon=3)
    assert o.predict(np.zeros(0)) == 5 and o.predict(np.zeros(2)) == 9
    with pytest.raises(PipetuneError, match="future counts"):
        resolve_predictor("oracle")
    with pytest.raises(PipetuneError):
        resolve_predictor("no-such-predictor")


def test_rps_quantum_plans_for_the_prediction_rounded_up(synth):
    p, pr = synth
    counts = np.full(40, 7.3)
    first = plan_pipeline(p, 8.0, "ipa", profiles=pr)
    sim = Simulator(p, pr, arrival_times(counts), first.configs)
    ad = Adapter(sim, p, predictor="reactive", interval_s=10, profiles=pr, rps_quantum=2.0)
    ad.run(40.0)
    for d in ad.decisions:
        assert d.planned_rps >= d.predicted_rps and d.planned_rps % 2.0 == 0
    with pytest.raises(PipetuneError, match="rps_quantum"):
        Adapter(sim, p, predictor="reactive", profiles=pr, rps_quantum=-1)
