"""`pipetune suggest-sla`: each variant set's feasible SLA range found by bisection with the real planner, and a
recommended SLA (pipetune.optimizer.sla_suggest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipetune.cli.main import app
from pipetune.optimizer import plan_pipeline
from pipetune.optimizer.sla_suggest import min_feasible_sla, suggest_sla, with_sla
from pipetune.profiles import load_profiles
from pipetune.spec import load_pipeline

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


@pytest.fixture(scope="module")
def synth():
    p = load_pipeline(SYNTH)
    return p, load_profiles(p)


@pytest.fixture(scope="module")
def suggestion(synth):
    p, prof = synth
    return suggest_sla(p, 30.0, profiles=prof)


def test_bisection_finds_the_threshold_of_a_monotone_predicate():
    assert min_feasible_sla(lambda s: s >= 0.37, 2.0) == pytest.approx(0.37, rel=2e-3)
    assert min_feasible_sla(lambda s: s >= 500.0, 1.0) == pytest.approx(500.0, rel=2e-3)
    assert min_feasible_sla(lambda s: False, 1.0) is None


def test_each_sets_range_starts_where_the_planner_first_finds_a_plan_with_it(synth, suggestion):
    p, prof = synth
    assert {"accurate", "cheapest"} <= {v.label for v in suggestion.sets}
    for v in suggestion.sets:
        assert v.min_sla_s is not None

        def ok(sla: float, v=v) -> bool:
            return plan_pipeline(with_sla(p, sla), 30.0, policy="fa2-high", profiles=prof, heavy=v.variants).feasible

        assert ok(v.min_sla_s) and ok(4 * v.min_sla_s), v
        assert not ok(0.98 * v.min_sla_s), v  # the bound is tight (3 significant figures, rounded up)
    by = {v.label: v for v in suggestion.sets}
    assert by["accurate"].min_sla_s > by["cheapest"].min_sla_s  # the accurate variants are the slower ones here
    assert by["accurate"].accuracy > by["cheapest"].accuracy


def test_recommendation_captures_the_objective_and_lies_between_the_extremes(synth, suggestion):
    p, prof = synth
    s = suggestion
    assert s.min_sla_s <= s.recommended_sla_s <= s.saturation_sla_s
    assert plan_pipeline(with_sla(p, s.min_sla_s), 30.0, profiles=prof).feasible
    assert not plan_pipeline(with_sla(p, 0.98 * s.min_sla_s), 30.0, profiles=prof).feasible
    lo, rec, sat = s.at_min["objective"], s.at_recommended["objective"], s.at_saturation["objective"]
    assert rec >= lo + s.capture * (sat - lo) - 1e-9
    tighter = plan_pipeline(with_sla(p, 0.98 * s.recommended_sla_s), 30.0, profiles=prof)
    assert tighter.objective < lo + s.capture * (sat - lo)  # the tightest such SLA (to 3 significant figures)
    assert any("Recommended" in line for line in s.reasoning)


def test_cli_table_json_and_errors(monkeypatch, capsys):
    r = CliRunner().invoke(app, ["suggest-sla", str(SYNTH), "--rps", "30", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["recommended_sla_s"] > 0 and d["sets"] and d["reasoning"]
    r = CliRunner().invoke(app, ["suggest-sla", str(SYNTH), "--rps", "30"])
    assert r.exit_code == 0 and "recommended SLA" in r.output
    r = CliRunner().invoke(app, ["suggest-sla", str(SYNTH), "--rps", "1e12", "--json"])
    assert r.exit_code == 1 and json.loads(r.output)["min_sla_s"] is None  # beyond the caps at any SLA
    from pipetune.cli.main import run as cli_run

    bad_args = (["--rps", "-1"], ["--rps", "nan"], ["--capture", "1"], ["--capture", "0"], ["--rsp", "3"])
    for args in [[str(SYNTH), *bad] for bad in bad_args] + [["no-such.yaml"]]:
        monkeypatch.setattr(sys, "argv", ["pipetune", "suggest-sla", *args])
        with pytest.raises(SystemExit) as e:  # through the real entry point: one error line, exit 2
            cli_run()
        err = capsys.readouterr().err
        assert e.value.code == 2 and "error:" in err and "Traceback" not in err, (args, err)
