"""Several pipelines, one core budget (pipetune.optimizer.joint): the joint MILP against each pipeline planned
alone, against brute force over every split of the budget, and `pipetune plan A B C --budget-cores N`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from pipetune.optimizer import plan_pipeline
from pipetune.optimizer.joint import (
    budget_frontier,
    equal_shares,
    plan_jointly,
    plan_separately,
    with_budget,
)
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline

EX = Path(__file__).resolve().parents[1] / "src/pipetune/examples"
FILES = [EX / "synthetic/pipeline.yaml", EX / "text/pipeline.yaml", EX / "digits/pipeline.yaml"]


@pytest.fixture(scope="module")
def pipes():
    ps = [load_pipeline(f) for f in FILES]
    return ps, [load_profiles(p) for p in ps]


def test_frontier_answers_every_share_as_the_planner_does(pipes):
    (p, *_), (prof, *_) = pipes
    plans, why = budget_frontier(p, 20.0, 10, prof)
    assert why is None and plans
    assert [q.cost_cores for q in plans] == sorted({q.cost_cores for q in plans})
    for b in range(1, 11):
        alone = plan_pipeline(with_budget(p, b), 20.0, profiles=prof)
        fit = [q for q in plans if q.cost_cores <= b]
        assert alone.feasible == bool(fit), b
        if fit:
            assert fit[-1].objective == pytest.approx(alone.objective, abs=1e-9), b


def test_a_loose_budget_gives_each_pipeline_its_own_optimum(pipes):
    ps, profs = pipes
    rates = [20.0, 5.0, 5.0]
    alone = [plan_pipeline(p, r, profiles=pr) for p, r, pr in zip(ps, rates, profs)]
    budget = sum(a.cost_cores for a in alone) + 5
    j = plan_jointly(ps, rates, budget, profs)
    assert j.feasible
    assert j.objective == pytest.approx(sum(a.objective for a in alone), abs=1e-9)


@pytest.mark.parametrize("rates, budget", [([20.0, 5.0, 5.0], 9), ([30.0, 10.0, 2.0], 12), ([10.0, 20.0, 8.0], 10)])
def test_joint_is_the_best_split_of_the_budget_by_brute_force(pipes, rates, budget):
    ps, profs = pipes
    best_at: dict[tuple[int, int], float | None] = {}
    for i, (p, r, pr) in enumerate(zip(ps, rates, profs)):
        for b in range(1, budget + 1):
            res = plan_pipeline(with_budget(p, b), r, profiles=pr)
            best_at[(i, b)] = res.objective if res.feasible else None
    best = None
    for split in itertools.product(range(1, budget + 1), repeat=len(ps)):
        if sum(split) > budget:
            continue
        vals = [best_at[(i, b)] for i, b in enumerate(split)]
        if all(v is not None for v in vals):
            total = sum(v for v in vals if v is not None)
            best = total if best is None else max(best, total)
    j = plan_jointly(ps, rates, budget, profs)
    assert j.feasible == (best is not None)
    if best is not None:
        assert j.objective == pytest.approx(best, abs=1e-9)  # >= every split, and itself a split
        assert j.cost_cores <= budget
        sep = plan_separately(ps, rates, equal_shares(budget, len(ps)), profs)
        if all(s.feasible for s in sep.values()):
            assert j.objective >= sum(s.objective for s in sep.values()) - 1e-9


def test_infeasible_names_the_budget_or_the_pipeline(pipes):
    ps, profs = pipes
    j = plan_jointly(ps, [20.0, 5.0, 5.0], 6, profs)
    assert not j.feasible and j.binding == "budget" and "cheapest plans" in j.reason
    j = plan_jointly(ps, [1e9, 5.0, 5.0], 16, profs)
    assert not j.feasible and j.binding == ps[0].name


def test_cli_plans_several_pipelines_jointly(pipetune_cli):
    files = [str(f) for f in FILES]
    code, out, err = pipetune_cli("plan", *files, "--budget-cores", "12", "--rps", "20,5,5", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["feasible"] and d["cost_cores"] <= 12 and set(d["pipelines"]) == set(d["shares"])
    assert d["objective"] >= d["separate"]["objective"] - 1e-9
    code, out, err = pipetune_cli("plan", *files, "--budget-cores", "3", "--rps", "5")
    assert code == 1 and "infeasible" in out
    for bad in (["--rps", "1,2", "--budget-cores", "9"], ["--rps", "3"], ["--rps", "3,x,1", "--budget-cores", "9"],
                ["--rps", "3", "--budget-cores", "0"], ["--rps", "3", "--budget-cores", "9", "--policy", "rim"]):  # fmt: skip
        code, out, err = pipetune_cli("plan", *files, *bad)
        assert code == 2 and "error:" in err and "Traceback" not in err, (bad, err)
