"""Pipelines sharing one core budget in simulation (pipetune.experiments.shared_budget): the joint MILP moves cores
to the pipeline whose load rises, where equal shares cannot; neither exceeds the budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipetune.errors import PipetuneError
from pipetune.experiments.shared_budget import run_shared_budget
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline

PAPER = Path(__file__).resolve().parents[1] / "src/pipetune/examples/paper"


@pytest.fixture(scope="module")
def two():
    ps = [load_pipeline(PAPER / n / "pipeline.yaml") for n in ("audio-qa", "audio-sent")]
    return ps, [load_profiles(p) for p in ps]


def test_joint_serves_a_surge_that_an_equal_share_cannot(two):
    ps, profs = two
    # audio-qa surges to 20 rps (8 cores alone) while audio-sent stays at 4 rps (3 cores): 11 of 12 cores jointly,
    # but an equal share gives audio-qa only 6.
    surge = np.concatenate([np.full(60, 4.0), np.full(180, 20.0)])
    calm = np.full(240, 4.0)
    runs = {
        m: run_shared_budget(ps, profs, [surge, calm], 12, mode=m, predictor="reactive", rps_quantum=1.0)
        for m in ("joint", "separate")
    }
    j, s = runs["joint"], runs["separate"]
    assert max(j.planned_cores) <= 12 and max(s.planned_cores) <= 12
    assert s.infeasible_decisions > 0  # audio-qa's share has no plan for 20 rps
    qa = ps[0].name
    assert j.summaries[qa]["sla_violation_rate"] < s.summaries[qa]["sla_violation_rate"]
    assert j.total()["sla_violation_rate"] < s.total()["sla_violation_rate"]
    assert j.summaries[qa]["mean_cores"] > s.summaries[qa]["mean_cores"]  # the cores moved to the surge


def test_bad_arguments_are_refused(two):
    ps, profs = two
    c = np.full(60, 2.0)
    with pytest.raises(PipetuneError, match="mode"):
        run_shared_budget(ps, profs, [c, c], 12, mode="greedy")
    with pytest.raises(PipetuneError, match="shares"):
        run_shared_budget(ps, profs, [c, c], 12, mode="separate", shares=[10, 10])
    with pytest.raises(PipetuneError, match="no plan"):
        run_shared_budget(ps, profs, [c, c], 2, mode="joint")
