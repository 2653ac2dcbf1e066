"""The seam a live backend needs: per-stage apply results, retries of what failed, and a last good
configuration kept when the planner fails or overruns its interval. Checked on the simulator, which answers
through the same `Backend` interface as the live runtime."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest

from pipetune.adapter import MAX_RETRIES, Adapter
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.configs import ApplyState
from pipetune.errors import PipetuneError
from pipetune.optimizer import plan_pipeline
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline
from pipetune.workloads import arrival_times

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


@pytest.fixture(scope="module")
def synth():
    p = load_pipeline(SYNTH)
    return p, load_profiles(p)


def start(synth, rps=8.0, seconds=120, load_time_s=5.0):
    p, pr = synth
    first = plan_pipeline(p, rps, "ipa", profiles=pr)
    counts = np.full(seconds, rps)
    sim = Simulator(p, pr, arrival_times(counts, seed=0), first.configs, SimSettings(seed=0, load_time_s=load_time_s))
    return p, pr, first.configs, sim


def other_variant(p, stage, current):
    return next(v.name for v in p.stage(stage).variants if v.name != current)


def test_a_variant_switch_is_pending_until_its_replicas_are_ready(synth):
    p, _, cfg, sim = start(synth)
    assert all(st.state is ApplyState.APPLIED for st in sim.stage_status().values())
    stage = next(iter(cfg))
    new = dataclasses.replace(cfg[stage], variant=other_variant(p, stage, cfg[stage].variant))
    sim.wait_until(10.0)
    answer = sim.apply({stage: new})
    assert set(answer) == {stage} and answer[stage].state is ApplyState.PENDING and answer[stage].target == new
    assert sim.in_effect()[stage].variant == cfg[stage].variant  # make before break: the old one serves
    sim.wait_until(12.0)
    assert sim.stage_status()[stage].state is ApplyState.PENDING
    sim.wait_until(20.0)  # load_time_s = 5: ready and switched by now
    assert sim.stage_status()[stage].state is ApplyState.APPLIED
    assert sim.in_effect()[stage] == new


def test_a_refused_request_fails_with_the_reason_and_the_old_configuration_serves(synth):
    p, _, cfg, sim = start(synth)
    stage = next(iter(cfg))
    answer = sim.apply({stage: dataclasses.replace(cfg[stage], variant="no-such-model")})
    assert answer[stage].state is ApplyState.FAILED and "unknown variant 'no-such-model'" in answer[stage].reason
    sim.wait_until(30.0)
    assert sim.in_effect()[stage] == cfg[stage]
    assert sim.stage_status()[stage].state is ApplyState.FAILED
    # a later valid request clears the failure
    sim.apply({stage: cfg[stage]})
    assert sim.stage_status()[stage].state is ApplyState.APPLIED


def test_the_adapter_retries_a_failed_stage_then_plans_from_what_serves(synth, tmp_path):
    p, pr, cfg, sim = start(synth, seconds=200)
    stage = next(iter(cfg))
    bad = dataclasses.replace(cfg[stage], variant="no-such-model")
    currents = []

    def planner(pipeline, rps, policy, current, profiles, **kw):
        """Always asks for a configuration the backend refuses for `stage` (as a live cluster refuses a
        replica it cannot place)."""
        currents.append(dict(current))
        plan = plan_pipeline(pipeline, rps, policy, current=current, profiles=profiles, **kw)
        forced = dataclasses.replace(plan.stages[stage], config=bad)
        return dataclasses.replace(plan, stages={**plan.stages, stage: forced})

    log = tmp_path / "decisions.jsonl"
    ad = Adapter(sim, p, predictor="reactive", interval_s=10, profiles=pr, planner=planner, log=log)
    ad.run(10.0 * (MAX_RETRIES + 3))
    ad.close()
    d = ad.decisions
    assert d[0].apply_status[stage]["state"] == "failed" and "no-such-model" in d[0].apply_status[stage]["reason"]
    # the same request is re-applied MAX_RETRIES times, each answered FAILED ...
    for k in range(1, MAX_RETRIES + 1):
        assert d[k].retried_stages == [stage] and d[k].apply_status[stage]["state"] == "failed"
        assert currents[k][stage] == bad
    # ... then abandoned: the adapter plans from what actually serves
    give_up = d[MAX_RETRIES + 1]
    assert give_up.abandoned_stages == [stage] and give_up.retried_stages == []
    assert currents[MAX_RETRIES + 1][stage] == cfg[stage]
    assert sim.in_effect()[stage] == cfg[stage]  # the refused requests never disturbed what serves
    for line in log.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_a_transient_failure_is_retried_until_it_takes(synth):
    p, pr, cfg, sim = start(synth)
    stage = next(iter(cfg))
    refusals = [2]

    class Flaky(Simulator):
        """Refuses the first two requests for `stage` (a live backend's transient failure)."""

        def apply(self, configs):
            if stage in configs and refusals[0] > 0:
                refusals[0] -= 1
                self._requested[stage], self._refused[stage] = configs[stage], "replica failed its health check"
                rest = {s: c for s, c in configs.items() if s != stage}
                out = super().apply(rest) if rest else {}
                return {**out, stage: self.stage_status()[stage]}
            return super().apply(configs)

    sim.__class__ = Flaky
    target = plan_pipeline(p, 30.0, "ipa", profiles=pr).configs
    assert target[stage] != cfg[stage]
    ad = Adapter(
        sim,
        p,
        predictor="reactive",
        interval_s=10,
        profiles=pr,
        planner=lambda pipeline, rps, policy, current, profiles, **kw: plan_pipeline(
            pipeline, 30.0, policy, current=current, profiles=profiles
        ),
    )
    ad.run(60.0)
    assert ad.decisions[0].apply_status[stage]["state"] == "failed"
    assert ad.decisions[1].retried_stages == [stage] and ad.decisions[2].retried_stages == [stage]
    assert ad.decisions[2].apply_status[stage]["state"] in ("pending", "applied")
    assert sim.in_effect()[stage] == target[stage]


def test_a_failing_or_overrunning_planner_keeps_the_last_good_configuration(synth):
    p, pr, cfg, sim = start(synth)

    def failing(*a, **kw):
        raise PipetuneError("solver stopped on its time limit")

    ad = Adapter(sim, p, predictor="reactive", interval_s=10, profiles=pr, planner=failing)
    ad.run(40.0)
    assert all(d.error and "time limit" in d.error and not d.applied for d in ad.decisions)
    assert sim.in_effect() == cfg
    assert json.loads(ad.decisions[0].to_json())["objective"] is None  # strict JSON: no NaN

    def slow(pipeline, rps, policy, current, profiles, **kw):
        time.sleep(0.06)
        return plan_pipeline(pipeline, rps * 3, policy, current=current, profiles=profiles, **kw)

    p, pr, cfg, sim = start(synth)
    ad = Adapter(sim, p, predictor="reactive", interval_s=0.05, profiles=pr, planner=slow)
    ad.run(0.3)
    assert ad.decisions and all(d.overrun and not d.applied for d in ad.decisions)
    assert sim.in_effect() == cfg

    # the same slow planner within a long enough interval does apply (so the check above can fail)
    p, pr, cfg, sim = start(synth)
    ad = Adapter(sim, p, predictor="reactive", interval_s=10, profiles=pr, planner=slow)
    ad.run(30.0)
    assert any(d.applied for d in ad.decisions) and not any(d.overrun for d in ad.decisions)
