"""The optimizer against the brute-force oracle, plan feasibility re-checked independently, and policies."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipetune.configs import StageConfig
from pipetune.latency import longest_path, stage_latency
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.oracle import brute_force, combinations


def check_plan_is_feasible(pipeline, profiles, plan, rps):
    """Recompute every promise of the plan from the profiles, without the optimizer's code paths."""
    loads = {s: rps * f for s, f in pipeline.load_factors().items()}
    slo = {}
    for s, c in plan.stages.items():
        k = c.config
        row = profiles.row(s, k.variant, k.batch, k.cores)
        assert k.replicas * row.throughput_rps >= loads[s] * (1 + pipeline.caps.headroom) - 1e-9
        assert 1 <= k.replicas <= pipeline.caps.max_replicas
        assert k.batch in pipeline.batch_sizes_for(s) and k.cores in pipeline.cores_for(s)
        slo[s] = stage_latency(row, k.replicas, loads[s], pipeline.sla.percentile).slo_s
        assert abs(slo[s] - c.latency_slo_s) <= 1e-9 * max(1.0, slo[s])
    total, _ = longest_path(pipeline, slo)
    assert total <= pipeline.sla.seconds * (1 + 1e-9)
    if pipeline.caps.max_total_cores is not None:
        assert plan.cost_cores <= pipeline.caps.max_total_cores


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    stages=st.integers(1, 4),
    variants=st.integers(1, 3),
    method=st.sampled_from(METHODS),
    dag=st.booleans(),
    budget=st.booleans(),
)
def test_optimal_and_feasible_against_oracle(seed, stages, variants, method, dag, budget):
    rng = np.random.default_rng(seed)
    pipeline, profiles, rps = random_instance(
        rng, stages, variants, n_batches=3, n_cores=2, dag=dag, method=method, budget=budget, max_replicas=25
    )
    raw = stage_options(pipeline, rps, profiles)
    if combinations(raw) > 400_000:
        return
    expected = brute_force(pipeline, raw)
    got = plan_pipeline(pipeline, rps, profiles=profiles)
    if expected is None:
        assert not got.feasible
        return
    assert got.feasible, getattr(got, "reason", "")
    assert abs(got.objective - expected[0]) <= 1e-6 * max(1.0, abs(expected[0]))
    check_plan_is_feasible(pipeline, profiles, got, rps)


def test_synthetic_dag_plans_scale_with_load(synthetic):
    costs, accs = [], []
    for rps in (2, 20, 80, 200):
        p = plan_pipeline(synthetic, rps)
        assert p.feasible
        from pipetune.profiles import load_profiles

        check_plan_is_feasible(synthetic, load_profiles(synthetic), p, rps)
        costs.append(p.cost_cores)
        accs.append(p.pas)
    assert costs == sorted(costs) and costs[-1] > costs[0]
    assert accs[0] >= accs[-1]


def test_policies_restrict_what_they_should(synthetic):
    low = plan_pipeline(synthetic, 50, policy="fa2-low")
    assert low.stages["detect"].config.variant == "det-small"
    assert low.stages["classify"].config.variant == "cls-18"
    high = plan_pipeline(synthetic, 50, policy="fa2-high")
    assert high.feasible
    assert high.stages["classify"].config.variant == "cls-152"
    custom = plan_pipeline(synthetic, 50, policy="fa2-high", heavy={"detect": "det-medium"})
    assert custom.stages["detect"].config.variant == "det-medium"
    rim = plan_pipeline(synthetic, 20, policy="rim", replicas=4)
    cfg = rim.configs
    assert all(c.replicas == 4 and c.batch == 1 and c.cores == 1 for c in cfg.values())
    peak = plan_pipeline(synthetic, 5, policy="static-peak", peak_rps=150)
    assert peak.rps == 150 and peak.cost_cores == plan_pipeline(synthetic, 150).cost_cores
    ipa = plan_pipeline(synthetic, 50)
    assert ipa.objective >= max(low.objective, high.objective) - 1e-9


def test_infeasible_names_binding_stage_and_gives_fallback(synthetic):
    r = plan_pipeline(synthetic, 5000)  # 40 replicas cannot carry it
    assert not r.feasible
    assert r.binding.startswith("capacity:")
    assert r.binding.split(":")[1] in synthetic.stage_names
    fb = r.fallback
    assert set(fb.stages) == set(synthetic.stage_names)
    assert all(c.config.replicas <= synthetic.caps.max_replicas for c in fb.stages.values())
    rim = plan_pipeline(synthetic, 300, policy="rim", replicas=1)
    assert not rim.feasible and rim.binding.startswith("capacity:")


def test_budget_cap_binds(synthetic):
    free = plan_pipeline(synthetic, 150)
    capped_spec = synthetic.model_copy(
        update={"caps": synthetic.caps.model_copy(update={"max_total_cores": float(free.cost_cores - 2)})}
    )
    capped = plan_pipeline(capped_spec, 150)
    if capped.feasible:
        assert capped.cost_cores <= free.cost_cores - 2
        assert capped.objective <= free.objective + 1e-9
    else:
        assert capped.binding in ("budget", "sla+budget")


def test_least_change_keeps_the_current_configuration_among_ties(synthetic):
    first = plan_pipeline(synthetic, 60)
    again = plan_pipeline(synthetic, 60, current=first.configs)
    assert again.configs == first.configs
    # a current config that differs only where the objective does not care (fuse has one option) stays put
    cur = dict(first.configs)
    moved = plan_pipeline(synthetic, 61, current=cur)
    plain = plan_pipeline(synthetic, 61)
    assert abs(moved.objective - plain.objective) <= 1e-9 * abs(moved.objective)

    def changes(plan):  # stages whose configuration differs from the current one
        return sum(plan.configs[s] != cur[s] for s in cur)

    # among the optimal plans it keeps the most of what runs: never more change than the plain optimum's
    assert changes(moved) <= changes(plain)


def test_bad_inputs_are_user_errors(synthetic):
    from pipetune.errors import PipetuneError

    with pytest.raises(PipetuneError, match="policy"):
        plan_pipeline(synthetic, 10, policy="greedy")
    with pytest.raises(PipetuneError, match="rps"):
        plan_pipeline(synthetic, float("nan"))
    with pytest.raises(PipetuneError, match="heavy.detect"):
        plan_pipeline(synthetic, 10, policy="fa2-high", heavy={"detect": "nope"})


def test_cli_plan_json(synthetic_path):
    r = subprocess.run(
        [sys.executable, "-m", "pipetune", "plan", str(synthetic_path), "--rps", "40", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(r.stdout)
    assert d["feasible"] and set(d["stages"]) == {"detect", "classify", "tag", "fuse"}
    assert d["latency_e2e_slo_s"] <= 2.0 and d["solve_time_s"] > 0


def test_public_api(synthetic_path):
    import pipetune

    p = pipetune.load_pipeline(synthetic_path)
    plan = pipetune.plan(p, rps=30)
    assert plan.feasible and isinstance(next(iter(plan.configs.values())), StageConfig)
    assert pipetune.plan(pipetune.example_path("synthetic"), 30).objective == pytest.approx(plan.objective)


def test_tight_sla_plans_meet_it_and_loads_beyond_the_caps_name_capacity(synthetic):
    # The synthetic pipeline has no budget: a tight SLA just above the unloaded floor (0.0334 s) is met at any
    # load the replica caps allow, by a plan whose predicted p99 is within it; beyond the caps the answer is
    # infeasible and names capacity, not the SLA; below the floor the spec itself is refused, naming the field.
    from pipetune.spec import SpecError

    for sla in (0.3, 0.04):
        tight = synthetic.model_copy(update={"sla": synthetic.sla.model_copy(update={"seconds": sla})})
        for rps in (1, 30, 120, 250):
            r = plan_pipeline(tight, rps)
            assert r.feasible, (sla, rps, r.binding)
            assert r.latency_e2e_slo_s <= sla * (1 + 1e-9), (sla, rps, r.latency_e2e_slo_s)
        far = plan_pipeline(tight, 1e7)
        assert not far.feasible and far.binding.startswith("capacity:"), far.binding
    below = synthetic.model_copy(update={"sla": synthetic.sla.model_copy(update={"seconds": 0.01})})
    with pytest.raises(SpecError, match=r"sla\.seconds"):
        plan_pipeline(below, 30)
