"""The planner told how variable the arrivals are (`arrival_dispersion`: variance / mean of per-second counts).

Poisson (1) is the default and changes nothing; smoother counts lower the queueing wait of a stage planned near
saturation only, burstier ones raise it; the count-window law the model rests on is checked on generated
arrivals; and on IPA's video pipeline a plan told that the counts are fixed is a core cheaper and still keeps
its SLA in simulation (issue 11 item 8: the two rows where the cheapest configuration was 20% below the plan)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

import pipetune
from pipetune.cli.main import app
from pipetune.cli.options import DISPERSION
from pipetune.errors import PipetuneError
from pipetune.experiments.sla_calibration import CalibrationSetup, dispersion, simulate, trace_shape
from pipetune.latency import COUNT_PERIOD_S, WAIT_TAIL_SHARE, erlang_c, service_scv, stage_latency
from pipetune.optimizer import MAX_ARRIVAL_DISPERSION, plan_pipeline, profiles_for
from pipetune.profiles import ProfileRow
from pipetune.workloads import arrival_times

# a 1-core, batch-1 stage of 0.18 s (IPA's yolov5n crop on the re-measured pack), 3 replicas
ROW = ProfileRow("v", 1, 1, 0.184, 0.1795, 0.2388, 1 / 0.184)


def test_poisson_is_the_default_and_changes_nothing():
    for rate in (2.0, 10.0, 16.2):
        assert stage_latency(ROW, 3, rate) == stage_latency(ROW, 3, rate, arrival_dispersion=1.0)


def test_queue_term_follows_the_count_window_law():
    rate, n, q = 16.25, 3, 0.01 * WAIT_TAIL_SHARE
    rho = rate * ROW.latency_mean_s / n
    s_eff, cs2 = ROW.batch / ROW.throughput_rps, float(service_scv(ROW.latency_mean_s, ROW.latency_p99_s))
    c = float(erlang_c(np.array([n]), np.array([rate * s_eff]))[0])
    tau = s_eff * (1 + cs2) / 2 / (n * (1 - rho))  # the Poisson wait's scale: seconds this close to 1
    assert tau > 3
    for d in (0.0, 0.08, 0.5, 3.0):
        ca2 = d + (1 - d) * min(1.0, COUNT_PERIOD_S / (3 * tau))
        want = s_eff * (ca2 + cs2) / 2 / (n * (1 - rho)) * math.log(c / q)
        assert stage_latency(ROW, n, rate, arrival_dispersion=d).queue_s == pytest.approx(want, rel=1e-9)
    waits = [stage_latency(ROW, n, rate, arrival_dispersion=d).queue_s for d in (0.0, 0.08, 0.5, 1.0, 3.0)]
    assert waits == sorted(waits) and waits[0] < 0.2 * waits[3] < waits[4] / 2


def test_dispersion_matters_only_where_the_wait_builds_over_seconds():
    # 10 replicas at rho 0.5: the queue empties within milliseconds, so arrivals look Poisson whatever the counts
    lo = [stage_latency(ROW, 10, 27.0, arrival_dispersion=d).queue_s for d in (0.0, 1.0, 5.0)]
    assert lo[0] == pytest.approx(lo[1], rel=0.02) and lo[2] == pytest.approx(lo[1], rel=0.1)


def test_count_variance_over_windows_matches_the_model():
    # fixed per-second counts (D = 0), Poisson-placed inside each second: over a window of t seconds at a random
    # offset the count's variance / mean is (1 - D) / (3 t), the law c_a^2 rests on (pipetune.latency docstring)
    rate, seconds, t = 50.0, 4000, 5.0
    arr = arrival_times(np.full(seconds, rate), process="poisson", seed=3)
    starts = np.random.default_rng(0).uniform(0, seconds - t, 4000)
    counts = np.searchsorted(arr, starts + t) - np.searchsorted(arr, starts)
    idc = counts.var() / counts.mean()
    assert idc == pytest.approx(1 / (3 * t), rel=0.25), idc


def test_video_plan_told_fixed_counts_is_cheaper_and_keeps_its_sla():
    pipe = pipetune.load_pipeline(pipetune.example_path("paper/video"))
    prof = profiles_for(pipe)
    shape, _ = trace_shape()
    setup = CalibrationSetup(seconds=600, seeds=2)
    d = dispersion("fixed", 16.25, setup, shape)
    assert d < 0.05
    poisson_plan = plan_pipeline(pipe, 16.25, profiles=prof)
    plan = plan_pipeline(pipe, 16.25, profiles=prof, arrival_dispersion=d)
    assert plan.arrival_dispersion == d and poisson_plan.arrival_dispersion == 1.0
    assert plan.cost_cores < poisson_plan.cost_cores
    assert simulate(pipe, prof, plan.configs, "fixed", 16.25, setup, shape)["violations"] <= 0.01


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, MAX_ARRIVAL_DISPERSION * 10])
def test_bad_dispersion_is_refused_naming_it(synthetic, bad):
    with pytest.raises(PipetuneError, match="arrival_dispersion="):
        plan_pipeline(synthetic, 10.0, arrival_dispersion=bad)


def test_cli_flag_is_bounded_like_the_api():
    assert (DISPERSION.ge, DISPERSION.le) == (0, MAX_ARRIVAL_DISPERSION)
    path = str(pipetune.example_path("paper/video"))
    r = CliRunner().invoke(app, ["plan", path, "--rps", "16.25", "--arrival-dispersion", "-1"])
    assert r.exit_code == 2 and "--arrival-dispersion" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["plan", path, "--rps", "16.25", "--arrival-dispersion", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert '"arrival_dispersion": 0.0' in r.output
