"""The simulator twin serves a stage's warm variants as the live runtime does: a switch among them on the same cores
is in place (no replica starts; batches from then on are the new variant's), a switch out of them is
make-before-break, and a warm generation's replicas take every warm variant's load time to start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.configs import SplitConfig
from pipetune.configs import StageConfig as C
from pipetune.metrics import summarise
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"
WARM = ["cls-18", "cls-50"]


def _synth(warm: list[str]):
    p = load_pipeline(SYNTH)
    stages = [st.model_copy(update={"warm_variants": warm}) if st.name == "classify" else st for st in p.stages]
    p = p.model_copy(update={"stages": stages})
    return p, load_profiles(p)


def _config(cls: str = "cls-18") -> dict:
    return {
        "detect": C("det-small", 2, 1, 2),
        "classify": C(cls, 4, 1, 2),
        "tag": C("tag-lite", 2, 1, 1),
        "fuse": C("fuse-rules", 1, 1, 1),
    }


def _run(synth, steps, seconds=60.0):
    p, pr = synth
    rng = np.random.default_rng(4)
    arr = np.sort(rng.uniform(0, seconds, rng.poisson(20 * seconds)))
    sim = Simulator(p, pr, arr, _config(), SimSettings(seed=0), record_batches=True)
    for t, change in steps:
        sim.wait_until(t)
        sim.apply(change)
    sim.wait_until(seconds - 1.0)
    sim.effect_at_end = sim.in_effect()  # type: ignore[attr-defined]
    sim.close()
    return sim, sim.result()


def _batches(sim, variant):
    """classify's batches of `variant` (on any of its lanes: a split's parts have one each)."""
    return [b for b in sim.batch_log if sim._lane_names[b[1]] == "classify" and b[2] == variant]


@pytest.mark.parametrize("warm", [WARM, []])
def test_a_warm_switch_is_in_place_and_a_cold_one_waits_for_the_load(warm):
    synth = _synth(warm)
    t = 20.0
    sim, res = _run(synth, [(t, {"classify": C("cls-50", 4, 1, 2)})])
    new, old = _batches(sim, "cls-50"), _batches(sim, "cls-18")
    load = synth[1].get("classify", "cls-50").load_time_s
    assert new and summarise(res, 60.0)["failed"] == 0
    first = min(b[0] for b in new)
    if warm:  # the same replicas serve the other variant at once
        assert t <= first < t + 0.5 and {b[4] for b in new} <= {b[4] for b in old}
        assert not any(b[0] > t for b in old)
        assert [e["event"] for e in sim.events if e.get("stage") == "classify"] == ["warm-switch"]
        assert sim.effect_at_end["classify"] == C("cls-50", 4, 1, 2)
    else:  # make-before-break: new replicas load first, the old variant serves meanwhile
        assert first >= t + load - 1e-9 and not ({b[4] for b in new} & {b[4] for b in old})
        assert any(t < b[0] < t + load for b in old)


def test_a_switch_out_of_the_warm_variants_is_make_before_break_and_back_loads_them_all():
    synth = _synth(WARM)
    p, pr = synth
    sim, _ = _run(synth, [(10.0, {"classify": C("cls-152", 4, 1, 2)}), (30.0, {"classify": C("cls-18", 4, 1, 2)})])
    cold = pr.get("classify", "cls-152").load_time_s
    warm = sum(pr.get("classify", v).load_time_s for v in WARM)
    assert min(b[0] for b in _batches(sim, "cls-152")) >= 10.0 + cold - 1e-9
    back = [b for b in _batches(sim, "cls-18") if b[0] > 30.0]
    assert back and min(b[0] for b in back) >= 30.0 + warm - 1e-9  # every warm variant loaded before serving


def test_batch_and_replicas_change_in_place_within_the_warm_group():
    synth = _synth(WARM)
    sim, res = _run(synth, [(10.0, {"classify": C("cls-50", 2, 1, 3)})])
    assert sim.effect_at_end["classify"] == C("cls-50", 2, 1, 3)
    new = _batches(sim, "cls-50")
    assert min(b[0] for b in new) < 10.5 and max(b[5] for b in new) <= 2
    assert summarise(res, 60.0)["failed"] == 0


@pytest.mark.parametrize("to", ["cls-18", "cls-50"])
def test_a_split_part_is_its_own_generation_and_leaving_the_split_starts_the_warm_one(to):
    """As live (`serving.config.generation_key`): a split's part holds its own variant only, so the one-variant
    configuration after it, even of that part's variant, starts a warm generation (every warm variant's load)
    while the parts serve; it is not a switch in place."""
    p, pr = _synth(WARM)
    p = p.model_copy(update={"caps": p.caps.model_copy(update={"mix_variants": 2})})
    split = SplitConfig.of([(C("cls-18", 4, 1, 2), 0.5), (C("cls-152", 4, 1, 2), 0.5)])
    sim, _ = _run((p, pr), [(5.0, {"classify": split}), (30.0, {"classify": C(to, 4, 1, 2)})])
    warm = sum(pr.get("classify", v).load_time_s for v in WARM)
    events = [e["event"] for e in sim.events if e.get("stage") == "classify"]
    assert "warm-switch" not in events
    before = {b[4] for b in sim.batch_log if sim._lane_names[b[1]] == "classify" and b[0] < 30.0}
    fresh = [b for b in _batches(sim, to) if b[4] not in before]  # from the replicas started at 30 s
    assert fresh and min(b[0] for b in fresh) >= 30.0 + warm - 1e-9
    assert any(30.0 < b[0] < 30.0 + warm for b in _batches(sim, "cls-152"))  # the parts serve meanwhile
    assert sim.effect_at_end["classify"] == C(to, 4, 1, 2)


def test_a_batch_in_service_at_a_warm_switch_counts_the_accuracy_it_was_served_with():
    """Per-variant accounting follows the batches: the stage's accuracy summed over requests equals, batch by
    batch, its size times the accuracy of the variant that started it (one in service at the switch included)."""
    synth = _synth(WARM)
    p, _ = synth
    acc = {v.name: v.accuracy for v in p.stage("classify").variants}
    ref, _ = _run(synth, [])
    first = next(b for b in _batches(ref, "cls-18") if b[0] > 20.0)
    t = first[0] + first[6] / 2  # the run is seeded: the same batch is in service at t when the switch comes
    sim, res = _run(synth, [(t, {"classify": C("cls-50", 4, 1, 2)})])
    cls = sim.names.index("classify")
    assert (res.status == 1).all()
    assert any(b[0] < t < b[0] + b[6] for b in _batches(sim, "cls-18"))  # one was in service at the switch
    served = sum(b[5] * acc[b[2]] for b in sim.batch_log if sim._lane_names[b[1]] == "classify")
    assert sum(sim.acc_sum[cls]) == pytest.approx(served, rel=1e-12)
