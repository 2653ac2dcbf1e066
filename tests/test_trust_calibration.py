"""The SLA promise under true Poisson arrivals: ipa's plan, made at the true steady load, keeps the SLA in
simulation (violations <= 1%) when per-second counts vary as Poisson draws do."""

from __future__ import annotations

import numpy as np
import pytest

import pipetune
from pipetune.errors import PipetuneError
from pipetune.experiments.sla_calibration import CalibrationSetup, arrivals, cheapest_found, simulate, trace_shape
from pipetune.optimizer import plan_pipeline, profiles_for


def test_true_poisson_counts_vary_and_fixed_do_not():
    shape, _ = trace_shape()
    fixed = np.bincount(arrivals("fixed", 30.0, 120, 0, shape).astype(int), minlength=120)
    pois = np.bincount(arrivals("poisson", 30.0, 120, 0, shape).astype(int), minlength=120)
    assert fixed.var() == 0
    # Poisson counts: variance ~ mean (30); a loose band so a seeded draw cannot flake
    assert 15 < pois.var() < 50 and abs(pois.mean() - 30) < 3


@pytest.mark.parametrize("rps", [30.0, 60.0])
def test_ipa_plan_keeps_sla_under_true_poisson(rps):
    pipe = pipetune.load_pipeline(pipetune.example_path("synthetic"))
    prof = profiles_for(pipe)
    plan = plan_pipeline(pipe, rps, profiles=prof)
    assert plan.feasible
    setup = CalibrationSetup(seconds=120, seeds=3)
    out = simulate(pipe, prof, plan.configs, "poisson", rps, setup, trace_shape()[0])
    assert out["violations"] <= 0.01, out


def test_bad_setup_is_refused_naming_the_field():
    with pytest.raises(PipetuneError, match="seconds="):
        CalibrationSetup(seconds=5)
    with pytest.raises(PipetuneError, match="fractions="):
        CalibrationSetup(fractions=(0.0,))


def test_cheapest_found_stays_stable_within_caps_and_no_dearer():
    # the search never keeps a configuration whose replicas cannot carry the stage load (rho >= 1): a finite run
    # from an empty start can meet the SLA with one, because its queue has not grown yet
    pipe = pipetune.load_pipeline(pipetune.example_path("paper/video"))
    prof = profiles_for(pipe)
    plan = plan_pipeline(pipe, 16.25, profiles=prof)
    setup = CalibrationSetup(seconds=60, seeds=1)
    cheap = cheapest_found(pipe, prof, plan, "fixed", 16.25, setup, trace_shape()[0])
    for s, c in cheap.items():
        theta = prof.row(s, c.variant, c.batch, c.cores).throughput_rps
        assert plan.stages[s].load_rps < c.replicas * theta and c.replicas <= pipe.caps.max_replicas
        assert (c.variant, c.batch) == (plan.configs[s].variant, plan.configs[s].batch)
    assert sum(c.cores * c.replicas for c in cheap.values()) <= plan.cost_cores
