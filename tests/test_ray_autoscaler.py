"""Ray Serve's autoscaler as a simulated baseline (pipetune.backends.simulator.autoscaler): its rule, its delays
and bounds on the real simulator, and the 'ray-autoscale' policy in experiments and `pipetune simulate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.backends.simulator.autoscaler import AutoscalingConfig, RayAutoscaler, decide
from pipetune.backends.simulator.bench import single_stage
from pipetune.cli.main import app
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.experiments.one_run import simulate
from pipetune.experiments.spec import ExperimentError, parse_experiment
from pipetune.spec import load_pipeline

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


def test_rule_is_rays_total_over_target_smoothed_against_running():
    cfg = AutoscalingConfig()
    assert decide(cfg, total_ongoing=10.0, running=2) == 5  # 10 ongoing / target 2
    assert decide(cfg, total_ongoing=2.0, running=4) == 1
    assert decide(cfg, total_ongoing=8.0, running=4) == 4
    half = AutoscalingConfig(upscale_smoothing_factor=0.5, downscale_smoothing_factor=0.5)
    assert decide(half, total_ongoing=10.0, running=2) == 4  # ceil(2 + 0.5 * (5 - 2))
    # a smoothed downscale that rounds back to no change still removes one replica (Ray's rule)
    assert decide(half, total_ongoing=5.0, running=4) == 3  # ceil(4 - 0.5 * 1.5) = 4, less one
    assert decide(half, total_ongoing=7.0, running=4) == 4  # desired 3.5 rounds up to what runs: no change
    assert decide(cfg, total_ongoing=3.0, running=0) == 1  # cold start


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"target_ongoing_requests": 0}, "target_ongoing_requests"),
        ({"min_replicas": 0}, "min_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"upscale_delay_s": -1}, "upscale_delay_s"),
        ({"smoothing_factor": float("nan")}, "smoothing_factor"),
    ],
)
def test_bad_settings_name_the_field(bad, field):
    with pytest.raises(PipetuneError, match=field):
        AutoscalingConfig(**bad)


def _driven(rate: float, seconds: float, until: float, **cfg):
    """One 0.1 s/item stage (10 rps per replica) under `rate` rps for `seconds`, driven to `until`."""
    pipe, prof = single_stage(0.1)
    rng = np.random.default_rng(0)
    arr = np.sort(rng.uniform(0, seconds, rng.poisson(rate * seconds)))
    sim = Simulator(pipe, prof, arr, {"s": StageConfig("v", 1, 1, 1)}, SimSettings(seed=0, drop_limit_s=1e9))
    auto = RayAutoscaler(sim, pipe, AutoscalingConfig(**cfg))
    auto.run(until)
    return sim, auto


def test_scales_up_only_after_the_upscale_delay_and_down_after_the_downscale_delay():
    sim, auto = _driven(
        30.0, 60.0, 200.0, upscale_delay_s=8, downscale_delay_s=40, metrics_interval_s=1, look_back_period_s=2
    )
    ups = [a for a in auto.actions if a["to"] > a["from"]]
    downs = [a for a in auto.actions if a["to"] < a["from"]]
    assert ups and downs
    assert ups[0]["t"] >= 8.0  # nothing before the first upscale wish has lasted upscale_delay_s
    assert max(a["to"] for a in ups) >= 3  # 30 rps needs at least 3 replicas of 10 rps
    assert downs[-1]["to"] == 1  # min_replicas once the load is gone...
    assert downs[-1]["t"] >= 60.0 + 40.0 - 3.0  # ... only downscale_delay_s after it went (look-back lag aside)
    assert downs[0]["t"] >= ups[0]["t"] + 40.0  # a downscale wish must last downscale_delay_s too
    assert sim.in_effect()["s"].replicas == 1


def test_max_replicas_bounds_every_decision_and_variants_never_change():
    sim, auto = _driven(80.0, 60.0, 60.0, upscale_delay_s=0, max_replicas=3, metrics_interval_s=1)
    assert auto.actions and max(a["to"] for a in auto.actions) == 3
    sim.close()
    assert not [e for e in sim.events if e["event"] == "switch"]


def test_ongoing_counts_queued_and_in_service_items_and_drains_to_zero():
    pipe, prof = single_stage(0.1)
    arr = np.linspace(0.0, 1.0, 31)  # 31 requests in 1 s at one 10-rps replica
    sim = Simulator(pipe, prof, arr, {"s": StageConfig("v", 1, 1, 1)}, SimSettings(seed=0, drop_limit_s=1e9))
    sim.wait_until(1.0)
    assert 19 <= sim.ongoing()["s"] <= 22  # ~10 served in the first second, one in service, the rest queued
    sim.close()
    assert sim.ongoing() == {"s": 0}


def test_policy_in_simulate_keeps_the_first_plans_variants_and_logs_its_actions(tmp_path):
    pipe = load_pipeline(SYNTH)
    counts = np.concatenate([np.full(200, 5.0), np.full(200, 40.0)])
    out = simulate(pipe, counts, policy="ray-autoscale", policy_params={"upscale_delay_s": 5}, log=tmp_path / "a.jsonl")
    assert out.decisions == [] and out.plans == []
    assert out.summary["applied"] == len(out.extra["actions"]) > 0
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert lines == out.extra["actions"]
    assert not [e for e in out.result.events if e["event"] == "switch"]  # variants and cores stay the first plan's
    assert out.extra["autoscaling"]["max_replicas"] == pipe.caps.max_replicas


def _experiment(systems, **extra):
    return {
        "name": "x",
        "pipeline": "example:synthetic",
        "workloads": [{"name": "w", "synthetic": "bursty", "seconds": 120}],
        "systems": systems,
        **extra,
    }


def test_experiment_checks_the_autoscalers_parameters():
    ok = parse_experiment(_experiment([{"name": "R", "policy": "ray-autoscale", "params": {"downscale_delay_s": 30}}]))
    assert ok.systems[0].params == {"downscale_delay_s": 30}
    with pytest.raises(ExperimentError, match="upscale_delay"):
        parse_experiment(_experiment([{"name": "R", "policy": "ray-autoscale", "params": {"upscale_delay": 3}}]))
    with pytest.raises(ExperimentError, match="start"):
        parse_experiment(_experiment([{"name": "R", "policy": "ray-autoscale", "params": {"start": "rim"}}]))
    with pytest.raises(ExperimentError, match="ray-autoscale"):  # an ablation varies the predictor: a planner's
        parse_experiment(
            _experiment(
                [{"name": "I", "policy": "ipa"}], ablation={"policy": "ray-autoscale", "predictors": ["reactive"]}
            )
        )


def test_cli_simulate_runs_the_autoscaler():
    r = CliRunner().invoke(app, ["simulate", str(SYNTH), "--policy", "ray-autoscale", "--seconds", "200", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["decisions"] == 0 and s["requests"] > 0
