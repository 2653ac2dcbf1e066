"""Variant mixing (caps.mix_variants = 2): a stage may split its load over two variants. The optimizer's plans
are checked against brute force over every split listed from the definition (oracle.mixed_options_by_definition,
no dominance), and k = 1 stays today's optimizer exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pipetune
from pipetune import jsonio
from pipetune.configs import SplitConfig
from pipetune.optimizer import options as options_module
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.oracle import MAX_COMBINATIONS, brute_force, combinations, mixed_options_by_definition


def _with_mix(pipeline, k: int = 2):
    return pipeline.model_copy(update={"caps": pipeline.caps.model_copy(update={"mix_variants": k})})


def _mixed_instances(seed: int, count: int, n_cores: int = 1, gamma: float | None = None):
    rng = np.random.default_rng(seed)
    out = []
    attempts = 0
    while len(out) < count and attempts < count * 10:
        attempts += 1
        s, v = int(rng.integers(1, 4)), int(rng.integers(2, 4))
        pipeline, profiles, rps = random_instance(
            rng,
            s,
            v,
            n_batches=2,
            n_cores=n_cores,
            method=METHODS[attempts % len(METHODS)],
            max_replicas=6,
        )
        if gamma is not None:  # a batch penalty that orders parts otherwise than their cores do
            pipeline = pipeline.model_copy(update={"objective": pipeline.objective.model_copy(update={"gamma": gamma})})
        out.append((_with_mix(pipeline), profiles, rps))
    return out


def _by_definition(pipeline, profiles, rps):
    steps = options_module.MIX_SHARE_STEPS
    singles = stage_options(pipeline, rps, profiles)
    parts = {j: stage_options(pipeline, rps * j / steps, profiles) for j in range(1, steps)}
    return mixed_options_by_definition(pipeline, singles, parts)


def test_mixed_plans_match_brute_force_over_every_split(monkeypatch):
    # A coarser share grid keeps brute force small; the optimizer reads the same constant.
    monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", 4)
    checked = mixed = 0
    for pipeline, profiles, rps in _mixed_instances(seed=5, count=40):
        listed = _by_definition(pipeline, profiles, rps)
        if combinations(listed) > MAX_COMBINATIONS // 4:
            continue
        expected = brute_force(pipeline, listed)
        got = plan_pipeline(pipeline, rps, profiles=profiles)
        if expected is None:
            assert not got.feasible
        else:
            assert got.feasible, (pipeline.name, rps)
            assert got.objective == pytest.approx(expected[0], rel=1e-6, abs=1e-9)
            # what the plan says about itself holds: every split's shares add up to 1, on steps of 1/4,
            # over two different variants, and its cost counts both parts
            for parts in got.mix.values():
                assert len(parts) == 2 and parts[0][1] >= parts[1][1]
                assert parts[0][0].variant != parts[1][0].variant
                assert sum(f for _, f in parts) == pytest.approx(1.0)
                assert all(round(f * 4) == pytest.approx(f * 4) for _, f in parts)
            singles_cost = sum(c.total_cores for s, c in got.configs.items() if s not in got.mix)
            split_cost = sum(c.total_cores for parts in got.mix.values() for c, _ in parts)
            assert got.cost_cores == singles_cost + split_cost
            mixed += bool(got.mix)
        checked += 1
    assert checked >= 20
    assert mixed >= 3  # the check saw plans that split, not only one-variant ones


def test_one_variant_per_stage_is_todays_optimizer(monkeypatch):
    """k = 1 (the default) never builds split options, so it runs exactly the code it ran before mixing existed
    (and the exactness tests of test_optimizer_exact.py / test_optimizer_speed_exact.py hold it to brute force);
    k = 2 is never worse (its option sets contain k = 1's)."""
    import pipetune.optimizer as optimizer_module

    built = []
    real = optimizer_module.mixed_stage_options
    monkeypatch.setattr(optimizer_module, "mixed_stage_options", lambda *a, **k: built.append(1) or real(*a, **k))
    rng = np.random.default_rng(11)
    for _ in range(12):
        pipeline, profiles, rps = random_instance(rng, int(rng.integers(2, 6)), 3, max_replicas=20)
        assert pipeline.caps.mix_variants == 1
        one = plan_pipeline(pipeline, rps, profiles=profiles)
        explicit = plan_pipeline(_with_mix(pipeline, 1), rps, profiles=profiles)
        assert one.to_dict() | {"solve_time_s": 0} == explicit.to_dict() | {"solve_time_s": 0}
        assert not built
        if not one.feasible:
            continue
        assert one.mix == {} and "mix" not in one.to_dict()
        two = plan_pipeline(_with_mix(pipeline), rps, profiles=profiles)
        assert built and built.pop()
        assert two.feasible and two.objective >= one.objective - 1e-9 * max(1.0, abs(one.objective))


def test_synthetic_pipeline_splits_where_it_pays_and_says_so():
    p = pipetune.load_pipeline(pipetune.example_path("synthetic"))
    one, two = plan_pipeline(p, 45), plan_pipeline(_with_mix(p), 45)
    assert two.objective > one.objective + 1e-6  # a strict gain at this load
    assert two.mix, "the better plan splits a stage"
    stage, parts = next(iter(two.mix.items()))
    # what a backend applies is the split; callers that know one variant per stage see its main part
    assert two.configs[stage] == SplitConfig.of(parts) and two.stages[stage].config == parts[0][0]
    assert two.configs[stage].variant == parts[0][0].variant
    assert two.configs[stage].total_cores == sum(c.total_cores for c, _ in parts)
    d = json.loads(jsonio.dumps(two.to_dict()))
    assert [x["share"] for x in d["mix"][stage]] == [f for _, f in parts]
    # re-planning from a split plan keeps it when nothing changed
    again = plan_pipeline(_with_mix(p), 45, current=two.configs)
    assert again.objective == pytest.approx(two.objective)


def test_share_router_keeps_every_part_within_one_item_of_its_share():
    from pipetune.configs import ShareRouter, StageConfig, route_share

    for shares in ([0.7, 0.3], [0.95, 0.05], [0.5, 0.5], [1.0, 0.0], [0.2, 0.3, 0.5]):
        router = ShareRouter(shares)
        counts = [0] * len(shares)
        for n in range(1, 2001):
            counts[router.pick()] += 1
            assert all(abs(c - n * f) < 1.0 + 1e-9 for c, f in zip(counts, shares)), (shares, n, counts)
    # from a plan's mix: the index is into the mix's parts
    a, b = StageConfig("big", 4, 1, 3), StageConfig("small", 2, 1, 1)
    r = route_share([(a, 0.75), (b, 0.25)])
    assert [r.pick() for _ in range(8)] == [0, 0, 1, 0] * 2  # interleaved, the cycle repeats
    for bad in ([], [0.7, 0.7], [-0.1, 1.1], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="shares="):
            ShareRouter(bad)


def test_mixed_plans_under_a_core_budget_match_brute_force(monkeypatch):
    """With caps.max_total_cores, cores are a dominance term of their own (split parts are kept on the
    latency/penalty/cores frontier and partners on the penalty/cores one): still exact against every split
    listed from the definition, at budgets that bind."""
    monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", 4)
    checked = bound = mixed = 0
    for pipeline, profiles, rps in _mixed_instances(seed=8, count=60, n_cores=2, gamma=0.04):
        listed = _by_definition(pipeline, profiles, rps)
        if combinations(listed) > MAX_COMBINATIONS // 4 or any(len(so) == 0 for so in listed):
            continue
        free = brute_force(pipeline, listed)
        if free is None:
            continue
        least = sum(float(so.cost.min()) for so in listed)
        for budget in sorted({least, least + 1.0, least + 3.0}):
            capped = pipeline.model_copy(update={"caps": pipeline.caps.model_copy(update={"max_total_cores": budget})})
            expected = brute_force(capped, listed)
            got = plan_pipeline(capped, rps, profiles=profiles)
            if expected is None:
                assert not got.feasible
                continue
            assert got.feasible and got.cost_cores <= budget
            assert got.objective == pytest.approx(expected[0], rel=1e-6, abs=1e-9), (pipeline.name, rps, budget)
            bound += expected[0] < free[0] - 1e-9
            mixed += bool(got.mix)
            checked += 1
    assert checked >= 30
    assert bound >= 5 and mixed >= 3  # budgets that bind, and plans that split under them


def _covered(listed, ours, objective, with_cores: bool) -> bool:
    """Every split of `listed` (from the definition) is matched or beaten by one of `ours`: accuracy (and its
    coefficient) no lower, latency and penalty no higher, and cores no higher when `with_cores`."""
    for d, o in zip(listed, ours):
        pen_d = objective.beta * d.cost + objective.gamma * d.batch
        pen_o = objective.beta * o.cost + objective.gamma * o.batch
        tol = 1e-12
        ok = (
            (o.acc[:, None] >= d.acc[None, :] - tol)
            & (o.acc_coef[:, None] >= d.acc_coef[None, :] - tol)
            & (o.lat_slo[:, None] <= d.lat_slo[None, :] + tol)
            & (pen_o[:, None] <= pen_d[None, :] + tol)
        )
        if with_cores:
            ok &= o.cost[:, None] <= d.cost[None, :]
        if not ok.any(axis=0).all():
            return False
    return True


def test_the_split_listing_keeps_a_match_for_every_split_by_definition(monkeypatch):
    """The listing's dominance, checked option by option: for every split from the definition the listing has
    one no worse on every term the solver weighs; under a core budget cores are such a term, and dropping them
    from the dominance (the listing without a budget) loses splits that use fewer cores."""
    from pipetune.optimizer.options import with_mixed_options

    monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", 4)
    lost_without_cores = 0
    for pipeline, profiles, rps in _mixed_instances(seed=8, count=30, n_cores=2, gamma=0.04):
        singles = stage_options(pipeline, rps, profiles)
        parts = {j: stage_options(pipeline, rps * j / 4, profiles) for j in range(1, 4)}
        listed = mixed_options_by_definition(pipeline, singles, parts)
        obj = pipeline.objective
        assert _covered(listed, with_mixed_options(singles, parts, obj), obj, with_cores=False)
        assert _covered(listed, with_mixed_options(singles, parts, obj, budget=True), obj, with_cores=True)
        lost_without_cores += not _covered(listed, with_mixed_options(singles, parts, obj), obj, with_cores=True)
    assert lost_without_cores >= 1  # the budget's dominance term is needed, not decoration


def test_the_continuous_share_bound_holds_every_finer_grid_and_tightens(monkeypatch):
    """continuous_share_bound's `upper` is above the optimum with ANY shares: checked against finer grids (each
    a set of continuous shares, planned exactly), and a finer bound is never looser (nested share ranges)."""
    from pipetune.optimizer import continuous_share_bound

    checked = finer_gains = 0
    for pipeline, profiles, rps in _mixed_instances(seed=21, count=16):
        monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", 4)
        coarse = continuous_share_bound(pipeline, rps, profiles, steps=4)
        if not coarse.plan.feasible:
            assert coarse.upper == -np.inf or coarse.gap == np.inf
            continue
        assert coarse.upper >= coarse.plan.objective - 1e-9
        fine_bound = continuous_share_bound(pipeline, rps, profiles, steps=12)
        assert fine_bound.upper <= coarse.upper + 1e-9
        for steps in (8, 12, 24):
            monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", steps)
            fine = plan_pipeline(pipeline, rps, profiles=profiles)
            assert fine.feasible
            assert fine.objective <= fine_bound.upper + 1e-9 * max(1.0, abs(fine.objective)), (pipeline.name, steps)
            finer_gains += fine.objective > coarse.plan.objective + 1e-9
        checked += 1
    assert checked >= 10
    assert finer_gains >= 2  # finer shares did pay somewhere: the bound was tested where it matters


def test_the_continuous_share_bound_refuses_what_it_cannot_bound():
    from pipetune.errors import PipetuneError
    from pipetune.optimizer import continuous_share_bound

    p = pipetune.load_pipeline(pipetune.example_path("synthetic"))
    with pytest.raises(PipetuneError, match="mix_variants is 1"):
        continuous_share_bound(p, 30)
    with pytest.raises(PipetuneError, match="arrival_dispersion=0.5"):
        continuous_share_bound(_with_mix(p), 30, arrival_dispersion=0.5)
    b = continuous_share_bound(_with_mix(p), 45)
    assert b.plan.feasible and b.plan.objective <= b.upper < b.plan.objective + 0.01  # within 0.3% here


@pytest.mark.parametrize("dispersion", [1.0, 3.0])
def test_a_share_range_latency_is_a_lower_bound_at_every_load_of_the_range(dispersion):
    """What the continuous-share bound rests on: with batch formation at the top of a range of loads and
    queueing at its bottom, a stage's SLA-percentile latency is no higher than at any load of the range (for
    every batch, replica count and load tried), while at the bottom alone it is not a bound (formation falls
    as the load rises)."""
    from pipetune.latency import stage_latency_arrays

    rng = np.random.default_rng(4)
    mean = rng.uniform(0.002, 0.05, 400)
    thr_per_item = rng.uniform(0.5, 1.0, 400)
    batch = rng.choice([1, 2, 4, 8, 16], 400).astype(float)
    thr = batch / (mean * thr_per_item)
    reps = rng.integers(1, 8, 400)
    hi = rng.uniform(0.05, 0.95, 400) * reps * thr  # the top of each range keeps the stage stable
    lo = hi * rng.uniform(0.0, 1.0, 400)
    kw = dict(mean_s=mean, p50_s=mean * 0.95, p99_s=mean * 1.5, throughput=thr, batch=batch, replicas=reps, pct=99.0)
    kw["arrival_dispersion"] = dispersion
    bound = stage_latency_arrays(**kw, rate=lo, formation_rate=hi).slo
    at_bottom = stage_latency_arrays(**kw, rate=lo).slo
    above_bottom = 0
    for x in np.linspace(0.0, 1.0, 21):
        lam = lo + x * (hi - lo)
        actual = stage_latency_arrays(**kw, rate=lam).slo
        assert np.all(bound <= actual * (1 + 1e-12) + 1e-15)
        above_bottom += int(np.sum(actual < at_bottom - 1e-12))
    assert above_bottom > 0


def test_the_plan_table_shows_each_part_of_a_split_stage():
    from rich.console import Console

    from pipetune.cli.plan import render_plan

    p = pipetune.load_pipeline(pipetune.example_path("synthetic"))
    two = plan_pipeline(_with_mix(p), 45)
    console = Console(record=True, width=200)
    render_plan(two, console)
    text = console.export_text()
    stage, parts = next(iter(two.mix.items()))
    for part, share in parts:
        assert f"{100 * share:.0f}% of it" in text and part.variant in text
