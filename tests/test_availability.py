"""availability.spare_replica: the planner keeps 2 replicas of every remote stage where the budget allows, plans
as before without the setting, and says so when the spares do not fit."""

from __future__ import annotations

import pytest

from pipetune import example_path
from pipetune.optimizer import plan_pipeline
from pipetune.spec import load_pipeline


def _with(pipe, spare: bool, **caps):
    return pipe.model_copy(
        update={
            "availability": pipe.availability.model_copy(update={"spare_replica": spare}),
            "caps": pipe.caps.model_copy(update=caps),
        }
    )


@pytest.mark.parametrize("example", ["digits", "synthetic"])
def test_spares_where_the_budget_allows_and_plans_as_before_without_them(example):
    pipe = load_pipeline(example_path(example))
    assert pipe.availability.spare_replica is False  # off by default
    for rps in (5.0, 20.0):
        plain = plan_pipeline(pipe, rps)
        off = plan_pipeline(_with(pipe, False), rps)
        assert plain.feasible and off.configs == plain.configs and off.objective == plain.objective
        spare = plan_pipeline(_with(pipe, True), rps)
        assert spare.feasible and all(c.replicas >= 2 for c in spare.configs.values()), spare.configs
        assert spare.cost_cores >= plain.cost_cores and spare.note == ""
        if rps == 5.0:  # at low load every stage runs one replica: the spares change the plan
            assert all(c.replicas == 1 for c in plain.configs.values())


def test_without_room_for_the_spares_the_plan_is_the_plain_one_and_says_so():
    pipe = load_pipeline(example_path("digits"))
    plain = plan_pipeline(_with(pipe, False), 5.0)
    tight = float(plain.cost_cores)  # room for the plain plan, not for a second replica of every stage
    spare = plan_pipeline(_with(pipe, True, max_total_cores=tight), 5.0)
    assert spare.feasible and spare.configs == plan_pipeline(_with(pipe, False, max_total_cores=tight), 5.0).configs
    assert "availability.spare_replica" in spare.note and "without the spares" in spare.note
