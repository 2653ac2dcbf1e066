"""Variant mixing run end to end in the simulator: a split stage's items go to its parts by share (smooth weighted
round robin, configs.ShareRouter), each request's accuracy counts the variant that served it, a change keeps
make-before-break per part, and the adapter plans and applies split stages (caps.mix_variants = 2)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import pipetune
from pipetune.adapter import Adapter
from pipetune.backends.base import config_problem
from pipetune.backends.simulator import Simulator
from pipetune.backends.simulator.engine import SimSettings
from pipetune.configs import ApplyState, SplitConfig, StageConfig
from pipetune.metrics import COMPLETED
from pipetune.optimizer import plan_pipeline
from pipetune.profiles import load_profiles


def _synthetic(k: int = 2):
    p = pipetune.load_pipeline(pipetune.example_path("synthetic"))
    return p.model_copy(update={"caps": p.caps.model_copy(update={"mix_variants": k})})


def _base_configs(p):
    return {
        "detect": StageConfig("det-small", 1, 1, 4),
        "classify": StageConfig("cls-18", 1, 1, 4),
        "tag": StageConfig("tag-lite", 1, 1, 4),
        "fuse": StageConfig("fuse-rules", 1, 1, 4),
    }


def _served_items(sim, stage):
    """Items of `stage` served per variant, from the batch log."""
    out: Counter = Counter()
    for _t, lane, variant, _state, _rid, k, _svc in sim.batch_log:
        if sim._lane_names[lane] == stage:
            out[variant] += k
    return out


def test_a_split_stage_serves_each_part_its_share_and_accuracy_counts_who_served():
    p = _synthetic()
    profiles = load_profiles(p)
    configs = _base_configs(p)
    a, b = StageConfig("cls-152", 1, 1, 6), StageConfig("cls-50", 1, 1, 4)
    configs["classify"] = SplitConfig.of([(b, 0.3), (a, 0.7)])
    assert configs["classify"].variant == "cls-152"  # the larger share is the main part
    n = 400
    arrivals = np.arange(n) * 0.25  # 4 rps, every request completes (no drops to blur the counts)
    sim = Simulator(p, profiles, arrivals, configs, SimSettings(seed=1), record_batches=True)
    assert sim.in_effect()["classify"] == configs["classify"]  # what serves is what was applied, split included
    sim.close()
    res = sim.result()
    assert (res.status == COMPLETED).all()
    served = _served_items(sim, "classify")
    items = 2 * n  # each frame sends 2 crops to classify
    assert sum(served.values()) == items
    # smooth weighted round robin: each part within one item of its share of every prefix, so of the whole
    assert abs(served["cls-152"] - 0.7 * items) <= 1 and abs(served["cls-50"] - 0.3 * items) <= 1
    # a request's accuracy is that of the variants that served its items (the stage's mean over its 2 crops)
    acc = {v.name: v.accuracy for v in p.stage("classify").variants}
    rest = 0.457 * 0.80 * 1.0  # det-small, tag-lite, fuse-rules
    per_request = np.round(res.pas / rest, 9)
    allowed = {round(x, 9) for x in (acc["cls-152"], acc["cls-50"], (acc["cls-152"] + acc["cls-50"]) / 2)}
    assert set(per_request.tolist()) <= allowed
    assert per_request.mean() == pytest.approx(0.7 * acc["cls-152"] + 0.3 * acc["cls-50"], abs=2 / items)


def test_a_new_part_takes_load_only_once_ready_and_a_leaving_part_serves_until_the_new_ones_do():
    p = _synthetic()
    profiles = load_profiles(p)
    arrivals = np.arange(0, 120, 0.2)  # 5 rps for 120 s
    sim = Simulator(p, profiles, arrivals, _base_configs(p), SimSettings(seed=2, load_time_s=5.0), record_batches=True)
    sim.wait_until(10.0)
    split = SplitConfig.of([(StageConfig("cls-18", 1, 1, 4), 0.5), (StageConfig("cls-50", 1, 1, 4), 0.5)])
    st = sim.apply({"classify": split})["classify"]
    assert st.state is ApplyState.PENDING  # cls-50 loads (5 s): cls-18 takes every item meanwhile
    assert sim.in_effect()["classify"] == StageConfig("cls-18", 1, 1, 4)
    sim.wait_until(14.9)
    assert "cls-50" not in _served_items(sim, "classify")
    sim.wait_until(40.0)
    assert sim.stage_status()["classify"].state is ApplyState.APPLIED
    assert sim.in_effect()["classify"] == split
    served = _served_items(sim, "classify")
    assert served["cls-50"] > 0.4 * 2 * 5 * 25  # its half since it became ready
    # to one new variant: both parts keep serving until cls-152 is ready, then they drain and leave
    before = dict(_served_items(sim, "classify"))
    sim.apply({"classify": StageConfig("cls-152", 1, 1, 6)})
    sim.wait_until(44.0)
    mid = _served_items(sim, "classify")
    assert mid["cls-50"] > before["cls-50"] and mid["cls-18"] > before["cls-18"] and "cls-152" not in mid
    sim.wait_until(80.0)
    assert sim.in_effect()["classify"] == StageConfig("cls-152", 1, 1, 6)
    assert sim.stage_status()["classify"].state is ApplyState.APPLIED
    late = [e for e in sim.batch_log if sim._lane_names[e[1]] == "classify" and e[0] > 50.0]
    assert {e[2] for e in late} == {"cls-152"}
    sim.close()
    res = sim.result()
    assert (res.status == COMPLETED).all()  # nothing lost across both changes
    # cls-152 took cls-18's part (a make-before-break switch of that part); cls-50's part left
    assert [e["variant"] for e in res.events if e["event"] == "part-removed"] == ["cls-50"]
    assert any(e["event"] == "switch" and e["from"] == "cls-18" and e["variant"] == "cls-152" for e in res.events)
    # cores count every part held: the split held 8 classify cores at once
    assert res.cost_cores.max() >= 4 + 4 + 4 + 4 + 4


def test_a_split_is_checked_part_by_part_and_against_caps_mix_variants():
    p1, p2 = _synthetic(1), _synthetic(2)
    split = SplitConfig.of([(StageConfig("cls-18", 1, 1, 2), 0.5), (StageConfig("cls-50", 1, 1, 2), 0.5)])
    assert "caps.mix_variants allows 1" in (config_problem(p1, "classify", split) or "")
    assert config_problem(p2, "classify", split) is None
    bad = SplitConfig.of([(StageConfig("cls-18", 1, 1, 2), 0.5), (StageConfig("nope", 1, 1, 2), 0.5)])
    assert "part 'nope'" in (config_problem(p2, "classify", bad) or "")
    sim = Simulator(p2, load_profiles(p2), np.arange(0, 5, 0.5), _base_configs(p2))
    assert sim.apply({"classify": bad})["classify"].state is ApplyState.FAILED
    assert sim.in_effect()["classify"] == StageConfig("cls-18", 1, 1, 4)  # the old one keeps serving
    for parts in ([], [(StageConfig("cls-18", 1, 1, 2), 0.6)], [(StageConfig("cls-18", 1, 1, 2), 0.5)] * 2):
        with pytest.raises(ValueError):
            SplitConfig.of(parts)


def test_the_adapter_plans_and_applies_split_stages_in_the_simulator():
    p = _synthetic()
    profiles = load_profiles(p)
    rps = 45  # the synthetic pipeline's plan splits classify here (test_optimizer_mixing), not at 30
    start, target = plan_pipeline(p, 30, profiles=profiles), plan_pipeline(p, rps, profiles=profiles)
    assert not start.mix and target.mix
    arrivals = (np.repeat(np.arange(90), rps) + np.tile(np.arange(rps) / rps, 90)).astype(float)  # 45 every second
    sim = Simulator(p, profiles, arrivals, start.configs, SimSettings(seed=3))
    adapter = Adapter(sim, p, predictor="oracle", future_counts=np.full(120, float(rps)), profiles=profiles)
    decisions = adapter.run(90)
    assert decisions[0].applied and "parts" in decisions[0].configs["classify"]
    assert isinstance(sim.in_effect()["classify"], SplitConfig)
    assert sim.in_effect() == target.configs
    sim.close()
    res = sim.result()
    # the start's plan (for 30 rps) overloads until the split serves (its new part loads 2.5 s); then nothing is lost
    settled = res.arrival_s >= 20
    assert (res.status[settled] == COMPLETED).all()
    # and the accuracy served is the share-weighted one the plan promised
    assert np.nanmean(res.pas[settled]) == pytest.approx(target.pas, rel=1e-3)
