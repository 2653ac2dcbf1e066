"""The layer bound of the frontier enumeration (rule 4, milp.LayerLP) keeps it exact on wide DAGs: every tangent
bounds every completion of every partial plan, the enumeration with it returns HiGHS's optimum on random DAG
instances (small and medium), and when it gives up HiGHS decides."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import pipetune.optimizer.milp as milp
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.frontier import open_stages, stage_order
from pipetune.optimizer.incumbent import stage_slack
from pipetune.optimizer.instances import random_instance
from pipetune.optimizer.options import pareto_prune_stages


def _dag_models(seed: int, count: int, stages: tuple[int, int], variants: int = 4, methods=("mean", "sum", "pas")):
    """Reduced MILP(v) models of random DAG instances: (pipeline, linear values, reduction), the LP feasible."""
    rng = np.random.default_rng(seed)
    out = []
    for attempt in range(count * 6):
        if len(out) == count:
            break
        s = int(rng.integers(*stages))
        pipeline, profiles, rps = random_instance(rng, s, variants, dag=True, method=methods[attempt % len(methods)])
        if len(pipeline.paths()) < 3:
            continue
        raw = stage_options(pipeline, rps, profiles)
        if any(len(so) == 0 for so in raw):
            continue
        opts = pareto_prune_stages(raw, pipeline.objective, True, max_latency=stage_slack(pipeline, raw))
        if any(len(so) == 0 for so in opts):
            continue
        values = milp.linear_values(pipeline, opts)
        red = milp._reduce(pipeline, opts, values)
        if red is None or red.start is None:
            continue
        out.append((pipeline, values, red))
    return out


def _value(values, choice) -> float:
    return float(sum(v[i] for v, i in zip(values, choice)))


def test_every_tangent_bounds_every_completion():
    # Brute force over every plan of small DAG models: at each position k, what the later stages add is at most
    # the tangent bound at the plan's open completion times, also for plans far from the anchor and for plans
    # that break the SLA (the bound is over the LP's feasible completions, which contain every feasible one).
    checked = 0
    for pipeline, _values, red in _dag_models(seed=3, count=8, stages=(4, 7), variants=3):
        opts, vals = red.options, red.values
        if math.prod(len(so) for so in opts) > 4000:
            continue
        layers = milp.LayerLP(pipeline, opts, vals, 30.0)
        root = layers.root()
        assert root is not None
        fastest = layers.completion([float(so.lat_slo.min()) for so in opts])
        tangents = layers.sweep([root, fastest])
        order, opened = stage_order(pipeline), open_stages(pipeline)
        sla = pipeline.sla.seconds * (1 + 1e-12)
        for choice in itertools.product(*[range(len(so)) for so in opts]):
            done = layers.completion([float(so.lat_slo[i]) for so, i in zip(opts, choice)])
            if done.max() > sla:
                continue  # an infeasible plan is no completion of anything
            for k in range(len(order)):
                rest = sum(vals[s][choice[s]] for s in order[k + 1 :])
                c, mu = tangents[k]
                bound = (c - mu @ done[opened[k]]).min()
                assert rest <= bound + 1e-7
            checked += 1
    assert checked >= 200


@pytest.mark.parametrize("size", ["small", "medium"])
def test_layer_bound_enumeration_returns_the_highs_optimum(size):
    stages = (5, 9) if size == "small" else (12, 17)
    cases = _dag_models(seed={"small": 5, "medium": 6}[size], count=12, stages=stages, variants=5)
    assert len(cases) >= 8
    gave_up = milp.COUNTS.wide_gave_up
    for pipeline, _values, red in cases:
        ref = milp._branch(pipeline, red.options, red.values, red.start, 30.0)
        got = milp._finish_wide(pipeline, red, 30.0)
        assert ref is not None and got is not None
        assert abs(_value(red.values, got) - _value(red.values, ref)) <= 1e-9 * max(1.0, abs(_value(red.values, ref)))
    assert milp.COUNTS.wide_gave_up == gave_up  # these are decided by the enumeration, not handed to HiGHS


def test_a_forced_give_up_falls_back_to_highs(monkeypatch):
    cases = _dag_models(seed=7, count=6, stages=(8, 12), variants=5)
    assert len(cases) >= 4
    expected = [_value(r.values, milp._branch(p, r.options, r.values, r.start, 30.0)) for p, _v, r in cases]
    monkeypatch.setattr(milp, "WIDE_MAX_STATES", 0)
    monkeypatch.setattr(milp, "WIDE_BEAM", 0)
    milp.COUNTS.reset()
    for (pipeline, _values, red), want in zip(cases, expected):
        got = milp._finish_wide(pipeline, red, 30.0)
        assert got is not None and abs(_value(red.values, got) - want) <= 1e-9 * max(1.0, abs(want))
    assert milp.COUNTS.wide_gave_up == len(cases) and milp.COUNTS.branch_runs == len(cases)


def test_wide_dags_plan_the_same_with_and_without_the_layer_bound(monkeypatch):
    # End to end (linear and product accuracy, cold and with a current configuration): every finishing of a DAG
    # through the layer-bound enumeration, against every finishing by HiGHS.
    rng = np.random.default_rng(8)
    cases = [random_instance(rng, int(rng.integers(8, 14)), 5, dag=True, method=m) for m in ("mean", "pas", "sum")]
    monkeypatch.setattr(milp, "ENUMERATE_AT_MOST", 0)
    monkeypatch.setattr(milp, "FRONTIER_MAX_WIDTH", 0)
    monkeypatch.setattr(milp, "FRONTIER_DIRECT_ABOVE", 0)
    got = []
    for pipeline, profiles, rps in cases:
        plan = plan_pipeline(pipeline, rps, profiles=profiles)
        again = plan_pipeline(pipeline, rps * 1.03, profiles=profiles, current=plan.configs) if plan.feasible else plan
        got.append((plan.objective, again.objective))
    monkeypatch.setattr(milp, "WIDE_MAX_STATES", 0)
    monkeypatch.setattr(milp, "FRONTIER_MAX_STATES", 0)
    for (pipeline, profiles, rps), (cold, warm) in zip(cases, got):
        plan = plan_pipeline(pipeline, rps, profiles=profiles)
        again = plan_pipeline(pipeline, rps * 1.03, profiles=profiles, current=plan.configs) if plan.feasible else plan
        assert plan.objective == pytest.approx(cold, rel=1e-9, abs=1e-9)
        assert again.objective == pytest.approx(warm, rel=1e-9, abs=1e-9)
