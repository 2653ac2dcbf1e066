"""A solver that stops without an answer is a SolverError, never `Infeasible`; `binding=` names the real cause.

Issue 11 item 4: a limit status of HiGHS used to read as "no plan exists" (on a pipeline without a core budget it
said "sla+budget"), and the budget was blamed where only the SLA and the budget together bind.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import highspy
import numpy as np
import pytest

import pipetune
import pipetune.optimizer.milp as milp
from pipetune.errors import PipetuneError, SolverError
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.instances import random_instance
from pipetune.profiles import load_profiles

REPO = Path(__file__).resolve().parents[1]


def _with(pipeline, sla=None, budget=None):
    upd = {}
    if sla is not None:
        upd["sla"] = pipeline.sla.model_copy(update={"seconds": sla})
    if budget is not None:
        upd["caps"] = pipeline.caps.model_copy(update={"max_total_cores": float(budget)})
    return pipeline.model_copy(update=upd)


@pytest.fixture
def iteration_limit(monkeypatch):
    """Every HiGHS model pipetune builds gets a real simplex iteration limit of 0 (no mock: HiGHS runs)."""
    made = milp._highs

    def limited(time_limit_s):
        h = made(time_limit_s)
        assert h.setOptionValue("simplex_iteration_limit", 0) == highspy.HighsStatus.kOk
        return h

    monkeypatch.setattr(milp, "_highs", limited)


def test_a_limit_in_the_lp_is_a_solver_error_not_infeasible(synthetic, iteration_limit):
    # The synthetic pipeline has no core budget; before the fix this answered Infeasible(binding="sla+budget").
    with pytest.raises(SolverError, match="kIterationLimit") as e:
        plan_pipeline(synthetic, 60)
    assert e.value.status == "kIterationLimit" and e.value.phase == "LP relaxation"
    assert isinstance(e.value, PipetuneError)  # the CLI prints it as one line, no traceback


def test_a_time_limit_in_plan_pipeline_is_a_solver_error(synthetic):
    assert plan_pipeline(synthetic, 60, time_limit_s=30.0).feasible
    with pytest.raises(SolverError, match="time limit ran out; raise time_limit_s") as e:
        plan_pipeline(synthetic, 60, time_limit_s=0.0)
    assert e.value.status == "kTimeLimit"


def test_a_time_limit_is_a_solver_error_at_every_solve(monkeypatch):
    rng = np.random.default_rng(0)
    pipeline, profiles, rps = random_instance(rng, 9, 9, method="sum")
    opts = stage_options(pipeline, rps, profiles)
    values = milp.linear_values(pipeline, opts)
    assert milp.solve(pipeline, opts) is not None  # solvable with the default limit
    # the LP relaxation (`time_limit_s` reaches it: before the fix its 30 s were fixed and this returned a plan)
    with pytest.raises(SolverError, match="time limit.*time_limit_s"):
        milp.solve(pipeline, opts, time_limit_s=0.0)
    # branch and bound (before the fix: a RuntimeError, which the CLI shows as a traceback)
    red = milp._reduce(pipeline, opts, values)
    with pytest.raises(SolverError, match="branch and bound") as e:
        milp._branch(pipeline, opts, values, red.start, 0.0)
    assert e.value.status == "kTimeLimit"
    # the least-change MILP (before the fix: None, and the caller silently kept a plan that is not the least change)
    optimum = float(sum(v.max() for v in values)) - 1e6  # a low floor keeps every option: HiGHS gets the model
    distance = [np.arange(len(so), dtype=float) for so in opts]
    # on this DAG the least-change search first solves the layer LPs of the layer-bound enumeration
    with pytest.raises(SolverError, match="layer LP|least-change MILP") as e:
        milp.least_change(pipeline, opts, values, optimum, distance, reduction=red, time_limit_s=0.0)
    assert e.value.status == "kTimeLimit"
    monkeypatch.setattr(milp, "FRONTIER_MAX_WIDTH", 10**6)  # no layer-bound enumeration: HiGHS gets the model
    with pytest.raises(SolverError, match="least-change MILP"):
        milp.least_change(pipeline, opts, values, optimum, distance, reduction=red, time_limit_s=0.0)


def test_every_highs_model_status_is_mapped():
    outcomes = {}
    for name in highspy.HighsModelStatus.__members__:
        assert name in milp._STATUS, f"HiGHS status {name} has no outcome in milp._STATUS"
        outcome, fix = milp._STATUS[name]
        outcomes[name] = outcome
        assert outcome in ("optimal", "infeasible", "error")
        if outcome == "error":
            assert fix, name  # the message says what to do
    assert {n for n, o in outcomes.items() if o == "optimal"} == {"kOptimal"}
    # columns are bounded, so "unbounded or infeasible" is infeasible; a limit or an error never is
    assert {n for n, o in outcomes.items() if o == "infeasible"} == {"kInfeasible", "kUnboundedOrInfeasible"}
    for name in ("kTimeLimit", "kIterationLimit", "kSolutionLimit", "kMemoryLimit", "kInterrupt", "kUnknown"):
        assert outcomes[name] == "error"


def test_an_option_highs_does_not_know_is_an_error_naming_it_and_the_version():
    h = milp._highs(1.0)
    with pytest.raises(SolverError, match=rf"no_such_option.*highspy>={re.escape(milp.HIGHSPY_MIN)}"):
        milp._set(h, "no_such_option", 1)


def test_the_highspy_minimum_is_the_one_the_options_need():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("highspy")]
    assert spec == f"highspy>={milp.HIGHSPY_MIN}"
    # every option set on the models is one this highspy knows (an unknown one would raise in _set)
    milp._Relaxation(*_tiny())


def _tiny():
    rng = np.random.default_rng(1)
    pipeline, profiles, rps = random_instance(rng, 2, 2)
    return pipeline, stage_options(pipeline, rps, profiles)


def _least_cores(pipeline, rps: float) -> float:
    """The fewest cores whose replicas carry every stage's load, SLA aside, straight from the profile rows."""
    profiles = load_profiles(pipeline)
    caps = pipeline.caps
    total = 0.0
    for s, factor in pipeline.load_factors().items():
        load = rps * factor
        best = math.inf
        for v in pipeline.stage(s).variants:
            for b in pipeline.batch_sizes_for(s):
                for c in pipeline.cores_for(s):
                    thr = profiles.row(s, v.name, b, c).throughput_rps
                    n = next(
                        (
                            n
                            for n in range(1, caps.max_replicas + 1)
                            if n * thr >= load * (1 + caps.headroom) and load < n * thr
                        ),
                        None,
                    )
                    if n is not None:
                        best = min(best, c * n)
        total += best
    return total


def test_binding_names_budget_alone_or_sla_and_budget_together(synthetic):
    tight, rps = _with(synthetic, sla=0.1), 120
    least = _least_cores(tight, rps)
    free = plan_pipeline(tight, rps)
    assert free.feasible and free.cost_cores > least + 2  # the SLA makes the cheapest options unusable
    below = plan_pipeline(_with(tight, budget=least - 1), rps)
    assert not below.feasible and below.binding == "budget", below.binding
    together = []
    for budget in range(int(least), free.cost_cores):
        r = plan_pipeline(_with(tight, budget=budget), rps)
        if not r.feasible:
            # the budget alone holds (>= the least cores) and so does the SLA alone (`free`): both together bind
            assert r.binding == "sla+budget", (budget, r.binding, r.reason)
            together.append(budget)
    assert together, "no budget between the least cores and the free plan's cores binds: the test checks nothing"


def test_a_pipeline_without_a_budget_never_blames_the_budget(synthetic):
    assert synthetic.caps.max_total_cores is None
    seen = set()
    for sla in (0.04, 0.3, 2.0):
        p = _with(synthetic, sla=sla)
        for rps in (1, 120, 400, 5000, 1e7):
            for policy, params in (("ipa", {}), ("rim", {"replicas": 1}), ("fa2-high", {})):
                r = plan_pipeline(p, rps, policy=policy, **params)
                if not r.feasible:
                    seen.add(r.binding.split(":")[0])
                    assert "budget" not in r.binding, (sla, rps, policy, r.binding)
    assert seen  # some of these are infeasible


def test_solver_error_is_public():
    assert pipetune.SolverError is SolverError and "SolverError" in pipetune.__all__


def test_the_cli_says_a_solver_error_in_one_line_and_exits_1(iteration_limit, monkeypatch, capfd):
    import sys

    from pipetune.cli.main import run

    monkeypatch.setattr(sys, "argv", ["pipetune", "plan", pipetune.example_path("synthetic"), "--rps", "60"])
    with pytest.raises(SystemExit) as e:
        run()
    err = capfd.readouterr().err
    assert e.value.code == 1
    assert "kIterationLimit" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
