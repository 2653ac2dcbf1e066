"""Issue 23 items 1-2, the planner side: the runtime's own CPU on a shared host (`RuntimeProfile`) is counted by
the latency model and the optimizer; the twin's host comes from the same profile; accuracy is traded before
anything is refused, and refusing is said in words when it is the last resort."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipetune.adapter import Adapter
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.backends.simulator.bench import poisson_arrivals
from pipetune.backends.simulator.host import host_settings
from pipetune.latency import host_slowdown
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.instances import random_instance
from pipetune.optimizer.options import capacity_rps, host_cpu_per_request
from pipetune.optimizer.oracle import brute_force, combinations
from pipetune.profiles import PipelineProfiles, ProfileRow, VariantProfile, load_profiles
from pipetune.runtime_profile import (
    HOST_UTILISATION_CAP,
    LOADING_CPU_WEIGHT,
    RUNTIME_FILE,
    RuntimeProfile,
    RuntimeProfileError,
    load_runtime_for,
    runs_inline,
    runtime_path,
)
from pipetune.spec import load_pipeline, parse_pipeline
from pipetune.workloads.arrivals import arrival_times

SRC = Path(__file__).resolve().parents[1] / "src"


# ---- a hand-checkable pipeline ---------------------------------------------------------------------------------
# One stage, two variants, batch 1, one core per replica:
#   accurate: accuracy 0.90, 40 ms per item (25 items/s a replica)
#   fast:     accuracy 0.80, 10 ms per item (100 items/s a replica)
CAP = 0.7  # the hand-checked examples below are worked out at this cap, not the default
# At 15 rps on a 1-core host with a cap of 0.7 (CAP) a plan may keep 0.7 cores busy:
#   models only:            accurate 15 x 0.040 = 0.60 <= 0.7   -> accurate (more accuracy, same cores)
#   + 10 ms per request:    accurate 0.60 + 15 x 0.010 = 0.75 > 0.7   -> fast: 0.15 + 0.15 = 0.30
# Processor sharing on one core at 0.7: the M/M/1-PS slowdown 1 / (1 - 0.7) = 3.33 stretches the accurate
# variant to 133 ms (7.5 items/s a replica: 3 replicas carry 15), well inside the 1 s SLA.
RPS = 15.0


def hand_pipeline():
    pipe = parse_pipeline(
        {
            "name": "hand",
            "sla": {"seconds": 1.0, "percentile": 99},
            "objective": {"accuracy": "pas", "alpha": 10, "beta": 0.05, "gamma": 1.0e-6},
            "caps": {"batch_sizes": [1], "cores": [1], "max_replicas": 8},
            "stages": [
                {
                    "name": "topic",
                    "variants": [{"name": "accurate", "accuracy": 0.90}, {"name": "fast", "accuracy": 0.80}],
                }
            ],
        }
    )

    def row(v, t):
        return ProfileRow(v, 1, 1, t, t, 1.2 * t, 1 / t, 0.0, 0.0)

    profiles = PipelineProfiles(
        {
            ("topic", "accurate"): VariantProfile("accurate", [row("accurate", 0.040)]),
            ("topic", "fast"): VariantProfile("fast", [row("fast", 0.010)]),
        }
    )
    return pipe, profiles


def test_the_cheaper_variant_is_picked_when_the_runtimes_cpu_is_counted_and_not_otherwise():
    pipe, pr = hand_pipeline()
    models_only = RuntimeProfile.zero(host_cores=1.0)
    with_runtime = RuntimeProfile(
        host_cores=1.0, request_cpu_s=0.010, call_cpu_s=0.0, item_cpu_s=0.0, utilisation_cap=CAP
    )
    assert plan_pipeline(pipe, RPS, profiles=pr).configs["topic"].variant == "accurate"
    p0 = plan_pipeline(pipe, RPS, profiles=pr, runtime=models_only)
    assert p0.feasible and p0.configs["topic"].variant == "accurate"
    assert p0.host_cpu_cores == pytest.approx(0.60)
    p1 = plan_pipeline(pipe, RPS, profiles=pr, runtime=with_runtime)
    assert p1.feasible and p1.configs["topic"].variant == "fast"
    assert p1.host_cpu_cores == pytest.approx(0.30) and p1.host_cpu_budget_cores == pytest.approx(0.7)
    # one core: a job with nothing of its own replica is stretched as in M/M/1 processor sharing at the cap
    assert host_slowdown(1.0, CAP) == pytest.approx(1 / (1 - 0.7), rel=1e-4)
    # the host holds 0.7 / 0.020 = 35 rps of the fast plan; at 35 rps one replica keeps 0.35 cores busy itself, the
    # others 0.35: stretched 1 / (1 - 0.35), its 100/s become 65/s >= 35, so the host is what binds
    assert host_slowdown(1.0, CAP, 0.35) == pytest.approx(1 / (1 - 0.35), rel=1e-4)
    assert p1.host_capacity_rps == pytest.approx(35.0)
    assert p1.capacity_rps == pytest.approx(35.0)


def test_refusing_is_the_last_resort_and_said_so():
    pipe, pr = hand_pipeline()
    rt = RuntimeProfile(host_cores=1.0, request_cpu_s=0.010, call_cpu_s=0.0, item_cpu_s=0.0, utilisation_cap=CAP)
    # fast at 40 rps: 40 x 0.020 = 0.8 cores > 0.7: no variant holds it
    r = plan_pipeline(pipe, 40.0, profiles=pr, runtime=rt)
    assert not r.feasible and r.binding == "host"
    assert "cheapest variants" in r.reason and "admission refuses" in r.reason
    fb = r.fallback
    # the fallback is the best plan for the highest rate the host holds (0.7 / 0.020 = 35 rps, by bisection)
    assert not fb.feasible and 35.0 - 40.0 / 2**8 <= fb.rps <= 35.0 and "admission refuses" in fb.note
    assert fb.configs["topic"].variant == "fast" and fb.latency_e2e_slo_s <= 1.0
    assert fb.capacity_rps == pytest.approx(35.0)  # what admission should hold the ingress to


def test_the_adapter_trades_accuracy_first_and_logs_refusing_in_words(tmp_path):
    pipe, pr = hand_pipeline()
    rt = RuntimeProfile(host_cores=1.0, request_cpu_s=0.010, call_cpu_s=0.0, item_cpu_s=0.0, utilisation_cap=CAP)
    counts = np.concatenate([np.full(20, 10.0), np.full(20, 15.0), np.full(20, 40.0)])
    first = plan_pipeline(pipe, 10.0, profiles=pr, runtime=rt)
    sim = Simulator(pipe, pr, arrival_times(counts, seed=3), first.configs, SimSettings(**host_settings(rt, pipe, pr)))
    log = tmp_path / "decisions.jsonl"
    ad = Adapter(sim, pipe, predictor="reactive", interval_s=10, profiles=pr, runtime=rt, log=log)
    ad.run(60.0)
    ad.close()
    by_t = {round(d.t): d for d in ad.decisions}
    assert by_t[10].feasible and by_t[10].configs["topic"]["variant"] == "accurate" and not by_t[10].refusing
    assert by_t[30].feasible and by_t[30].configs["topic"]["variant"] == "fast" and not by_t[30].refusing
    last = by_t[50]
    assert not last.feasible and last.refusing and last.binding == "host"
    assert "last resort" in last.note and "cheapest variants" in last.note
    assert last.capacity_rps == pytest.approx(35.0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[-1]["refusing"] is True and "last resort" in lines[-1]["note"]


# ---- the solver against brute force with the host row ---------------------------------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_optimal_against_the_oracle_with_a_host_budget(seed):
    rng = np.random.default_rng(1000 + seed)
    stages, variants = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    pipe, pr, rps = random_instance(rng, stages, variants, n_batches=3, n_cores=2, budget=bool(seed % 2))
    free = plan_pipeline(pipe, rps, profiles=pr)
    if not free.feasible:
        return
    # a host that holds some but not all of the unconstrained plan's CPU: the host row binds
    need = rps * host_cpu_per_request(pipe, pr, free.configs, RuntimeProfile.zero(1.0))
    rt = RuntimeProfile(
        host_cores=max(need * float(rng.uniform(0.6, 1.4)) / HOST_UTILISATION_CAP, 1e-3),
        request_cpu_s=0.0005,
        call_cpu_s=0.001,
        item_cpu_s=0.0005,
        side_cpu_s=0.0002,
    )
    raw = stage_options(pipe, rps, pr, runtime=rt)
    if combinations(raw) > 300_000:
        return
    expected = brute_force(pipe, raw)
    got = plan_pipeline(pipe, rps, profiles=pr, runtime=rt)
    if expected is None:
        assert not got.feasible
        return
    assert got.feasible, getattr(got, "reason", "")
    assert got.objective == pytest.approx(expected[0], rel=1e-6, abs=1e-6)
    assert got.host_cpu_cores <= rt.cpu_budget_cores * (1 + 1e-6)


def test_the_oracle_refuses_what_breaks_the_host_row():
    pipe, pr = hand_pipeline()
    rt = RuntimeProfile(host_cores=1.0, request_cpu_s=0.010, call_cpu_s=0.0, item_cpu_s=0.0, utilisation_cap=CAP)
    raw = stage_options(pipe, RPS, pr, runtime=rt)
    value, choice = brute_force(pipe, raw)
    so = raw[0]
    assert so.variant_names[so.var_idx[choice[0]]] == "fast"


def test_without_a_runtime_profile_nothing_changes(synthetic):
    pr = load_profiles(synthetic)
    for rps in (5.0, 30.0, 80.0):
        raw = stage_options(synthetic, rps, pr)
        assert all(so.host_cpu is None and so.host_budget is None for so in raw)
        p = plan_pipeline(synthetic, rps, profiles=pr)
        assert p.host_cpu_cores is None and p.capacity_rps is None
    # a huge host whose runtime costs nothing plans the same configurations (the host never binds)
    big = RuntimeProfile.zero(host_cores=10_000.0)
    for rps in (5.0, 30.0):
        a, b = plan_pipeline(synthetic, rps, profiles=pr), plan_pipeline(synthetic, rps, profiles=pr, runtime=big)
        assert a.configs == b.configs and b.objective == pytest.approx(a.objective)


# ---- one host model: a plan the planner calls feasible holds in the twin ----------------------------------------
@pytest.mark.parametrize("rps", [10.0, 25.0, 40.0])
def test_a_plan_feasible_for_the_host_keeps_its_sla_in_the_twin(synthetic, rps):
    pr = load_profiles(synthetic)
    rt = RuntimeProfile(host_cores=4.0, request_cpu_s=0.004, call_cpu_s=0.002, item_cpu_s=0.001, side_cpu_s=0.002)
    plan = plan_pipeline(synthetic, rps, profiles=pr, runtime=rt)
    assert plan.feasible and plan.host_cpu_cores <= rt.cpu_budget_cores + 1e-9
    arr = poisson_arrivals(rps, int(rps * 240), seed=7)
    sim = Simulator(synthetic, pr, arr, plan.configs, SimSettings(seed=7, **host_settings(rt, synthetic, pr)))
    sim.close()
    r = sim.result()
    late = (r.status != 1) | (r.finish_s - r.arrival_s > r.sla_s)
    assert late.mean() <= 0.01
    # the twin's host did the CPU work the planner counted (to sampling noise of the service draws)
    used = sim.host.work_done_s / float(arr[-1])
    assert used == pytest.approx(plan.host_cpu_cores, rel=0.15)


def test_the_twins_host_settings_come_from_the_profile(synthetic):
    pr = load_profiles(synthetic)
    rt = RuntimeProfile(
        host_cores=3.0,
        request_cpu_s=0.02,
        call_cpu_s=0.004,
        item_cpu_s=0.001,
        side_cpu_s=0.008,
        replica_start_s=2.5,
        inline_stages=frozenset({"fuse"}),
    )
    s = SimSettings(**host_settings(rt, synthetic, pr))
    assert s.replica_start_s == 2.5
    assert s.host_load_weight == LOADING_CPU_WEIGHT < 1  # a loading replica is niced live
    assert (s.host_cores, s.host_overhead_s, s.host_call_s, s.host_hop_s, s.host_side_s) == (
        3.0,
        0.02,
        0.004,
        0.001,
        0.008,
    )
    assert {st for st, _ in s.host_inline} == {"fuse"}


def test_fusion_rule_is_one_function():
    rt = RuntimeProfile(host_cores=2, request_cpu_s=0.01, call_cpu_s=0.003, item_cpu_s=0.001, fusion=True)
    assert runs_inline(0.0039, rt) and not runs_inline(0.004, rt)
    assert rt.is_inline("any", 0.001) and not RuntimeProfile(**{**rt.to_dict(), "fusion": False}).is_inline("x", 0.001)


def test_inline_stages_pay_no_hop():
    pipe, pr = hand_pipeline()
    hop = RuntimeProfile(host_cores=1.0, request_cpu_s=0.0, call_cpu_s=0.01, item_cpu_s=0.0)
    inline = RuntimeProfile(**{**hop.to_dict(), "inline_stages": frozenset({"topic"})})
    a = plan_pipeline(pipe, 10.0, profiles=pr, runtime=hop)
    b = plan_pipeline(pipe, 10.0, profiles=pr, runtime=inline)
    assert a.host_cpu_cores == pytest.approx(b.host_cpu_cores + 10 * 0.01)
    assert capacity_rps(pipe, pr, b.configs, inline) >= capacity_rps(pipe, pr, b.configs, hop)


# ---- the profile: validation, strict JSON, where it lives ---------------------------------------------------------
GOOD = {"host_cores": 2, "request_cpu_s": 0.02, "call_cpu_s": 0.004, "item_cpu_s": 0.002, "side_cpu_s": 0.008}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"host_cores": 0}, "host_cores"),
        ({"host_cores": math.inf}, "host_cores"),
        ({"host_cores": True}, "host_cores"),
        ({"request_cpu_s": -0.001}, "request_cpu_s"),
        ({"call_cpu_s": math.nan}, "call_cpu_s"),
        ({"item_cpu_s": "2ms"}, "item_cpu_s"),
        ({"replica_start_s": -1}, "replica_start_s"),
        ({"replica_start_s": math.inf}, "replica_start_s"),
        ({"utilisation_cap": 1.5}, "utilisation_cap"),
        ({"utilisation_cap": 0}, "utilisation_cap"),
        ({"fusion": "yes"}, "fusion"),
        ({"inline_stages": "topic"}, "inline_stages"),
        ({"conditions": ["x"]}, "conditions"),
    ],
)
def test_bad_values_are_refused_naming_the_field(change, field):
    with pytest.raises(RuntimeProfileError, match=f"{field}="):
        RuntimeProfile.from_dict({**GOOD, **change})


def test_missing_and_unknown_fields_are_named():
    with pytest.raises(RuntimeProfileError, match="missing field.*item_cpu_s.*pipetune profile --runtime"):
        RuntimeProfile.from_dict({k: v for k, v in GOOD.items() if k != "item_cpu_s"})
    with pytest.raises(RuntimeProfileError, match="unknown field.*hop_ms"):
        RuntimeProfile.from_dict({**GOOD, "hop_ms": 3})


def test_strict_json_round_trip_and_errors(tmp_path):
    rt = RuntimeProfile(**GOOD, conditions={"cpu": "Xeon", "rps": 20, "seconds": 40})
    p = tmp_path / RUNTIME_FILE
    rt.save(p)
    assert RuntimeProfile.load(p) == rt and RuntimeProfile.load(p).conditions["cpu"] == "Xeon"
    p.write_text(json.dumps(GOOD).replace("0.02", "NaN"))
    with pytest.raises(RuntimeProfileError, match="not strict JSON"):
        RuntimeProfile.load(p)
    with pytest.raises(RuntimeProfileError, match="cannot read"):
        RuntimeProfile.load(tmp_path / "absent.json")


def _files(tmp_path: Path, runtime: dict | None) -> Path:
    (tmp_path / "profile.csv").write_text(
        "variant,batch,cores,latency_mean_s,latency_p50_s,latency_p99_s,throughput_rps,source\n"
        "accurate,1,1,0.040,0.040,0.048,25,measured\n"
        "fast,1,1,0.010,0.010,0.012,100,measured\n"
    )
    (tmp_path / "pipeline.yaml").write_text(
        """
name: hand
sla: {seconds: 1.0, percentile: 99}
objective: {accuracy: pas, alpha: 10, beta: 0.05, gamma: 1.0e-6}
caps: {batch_sizes: [1], cores: [1], max_replicas: 8}
profile: profile.csv
stages:
  - name: topic
    variants:
      - {name: accurate, accuracy: 0.90}
      - {name: fast, accuracy: 0.80}
"""
    )
    if runtime is not None:
        (tmp_path / RUNTIME_FILE).write_text(json.dumps(runtime))
    return tmp_path / "pipeline.yaml"


def test_the_profile_beside_the_model_profile_is_found(tmp_path):
    path = _files(tmp_path, None)
    pipe = load_pipeline(path)
    assert runtime_path(pipe) == tmp_path / RUNTIME_FILE and load_runtime_for(pipe) is None
    _files(tmp_path, {"host_cores": 1, "request_cpu_s": 0.01, "call_cpu_s": 0, "item_cpu_s": 0})
    assert load_runtime_for(pipe) == RuntimeProfile(host_cores=1, request_cpu_s=0.01, call_cpu_s=0, item_cpu_s=0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "pipetune", *args], capture_output=True, text=True, env=env)


def test_plan_cli_counts_the_runtime_profile_beside_the_profile_or_given(tmp_path):
    path = _files(
        tmp_path, {"host_cores": 1, "request_cpu_s": 0.01, "call_cpu_s": 0, "item_cpu_s": 0, "utilisation_cap": CAP}
    )
    r = _cli("plan", str(path), "--rps", "15", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["stages"]["topic"]["variant"] == "fast" and d["host_cpu_cores"] == pytest.approx(0.30)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD, "host_cores": -1}))
    r = _cli("plan", str(path), "--rps", "15", "--runtime-profile", str(bad))
    assert r.returncode == 2 and "host_cores=-1" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / RUNTIME_FILE).unlink()
    r = _cli("plan", str(path), "--rps", "15")
    assert r.returncode == 0 and "accurate" in r.stdout and "host CPU" not in r.stdout


@pytest.mark.parametrize("seed", range(12))
def test_frontier_and_local_search_keep_the_host_row_like_highs(seed):
    """Larger instances (no brute force): the exact finishers (enumeration, frontier) against HiGHS branch and
    bound on the same options and values, both under the core budget and the host row."""
    from pipetune.optimizer.incumbent import linear_values, local_search
    from pipetune.optimizer.milp import _branch, solve_linear
    from pipetune.optimizer.options import resource_limits

    rng = np.random.default_rng(2000 + seed)
    pipe, pr, rps = random_instance(rng, int(rng.integers(5, 9)), 3, method="sum", budget=bool(seed % 2))
    free = plan_pipeline(pipe, rps, profiles=pr)
    if not free.feasible:
        return
    need = rps * host_cpu_per_request(pipe, pr, free.configs, RuntimeProfile.zero(1.0))
    rt = RuntimeProfile(
        host_cores=need * 0.8 / HOST_UTILISATION_CAP, request_cpu_s=0.0, call_cpu_s=0.001, item_cpu_s=0.0005
    )
    opts = stage_options(pipe, rps, pr, runtime=rt)
    if any(len(so) == 0 for so in opts):
        return
    vals = linear_values(pipe, opts)
    got = solve_linear(pipe, opts, vals)
    ref = _branch(pipe, opts, vals, None, 60.0)
    assert (got is None) == (ref is None)
    if got is None:
        return
    ref_value = float(sum(v[i] for v, i in zip(vals, ref)))
    assert got[1] == pytest.approx(ref_value, rel=1e-9, abs=1e-9)
    for choice in (got[0], local_search(pipe, opts, values=vals)):
        if choice is None:
            continue
        for use, limit in resource_limits(pipe, opts):
            assert sum(u[i] for u, i in zip(use, choice)) <= limit + 1e-9


def test_the_switch_reserve_keeps_a_core_free_for_replicas_starting(synthetic):
    import dataclasses

    from pipetune.optimizer.options import host_capacity_rps

    rt = RuntimeProfile(
        host_cores=2.0,
        request_cpu_s=0.005,
        call_cpu_s=0.004,
        item_cpu_s=0.0,
        switch_reserve_cores=1.0,
        utilisation_cap=CAP,
    )
    assert rt.holds_cores == pytest.approx(1.4) and rt.cpu_budget_cores == pytest.approx(1.0)
    assert rt.without_reserve().cpu_budget_cores == pytest.approx(1.4) and rt.without_reserve().holds_cores == 1.4
    assert dataclasses.replace(rt, host_cores=16.0).cpu_budget_cores == pytest.approx(11.2)  # the cap binds
    assert dataclasses.replace(rt, host_cores=1.0).cpu_budget_cores == pytest.approx(0.7)  # none kept on 1 core
    assert RuntimeProfile.from_dict(rt.to_dict()) == rt
    # the planner's host capacity shrinks with the reserve (1.0 of 1.4 cores); what a configuration holds does not
    pr = load_profiles(synthetic)
    configs = dict(plan_pipeline(synthetic, 5.0, profiles=pr).configs)
    held = host_capacity_rps(synthetic, pr, configs, rt.without_reserve())
    assert host_capacity_rps(synthetic, pr, configs, rt) == pytest.approx(held / 1.4)  # per core of budget


# ---- the host's slowdown: the job's own replica does not queue behind itself ----------------------------------
def _fixed_point(k: float, c: float, others: float) -> float:
    """s = 1 + E[(c + N - k)^+] / k, N ~ Poisson(s x others), by iteration from 1 with the Poisson sum written out."""
    s = 1.0
    for _ in range(100_000):
        mu = s * others
        pmf, excess = math.exp(-mu), 0.0
        for n in range(400):
            excess += max(0.0, c + n - k) * pmf
            pmf *= mu / (n + 1)
        g = 1.0 + excess / k
        if abs(g - s) <= 1e-13 * g:
            return g
        s = g
    return math.inf


@pytest.mark.parametrize("seed", range(6))
def test_the_slowdown_table_is_never_below_the_fixed_point_it_tabulates(seed):
    rng = np.random.default_rng(seed)
    k = float(rng.choice([1.0, 2.0, 3.0, 8.0]))
    for _ in range(20):
        c = float(rng.choice([1.0, 2.0])) if k >= 2 else 1.0
        others = float(rng.uniform(0, 0.9)) * (k - c + 1.0) * 0.9
        exact = _fixed_point(k, c, others)
        got = host_slowdown(k, others / k, 0.0, c)
        assert got >= exact * (1 - 1e-9) and got == pytest.approx(exact, rel=2e-3)
    # what a job's own replica keeps busy is not others' demand: the more of the cap is its own, the less it waits
    assert host_slowdown(2.0, 0.8, 0.9) < host_slowdown(2.0, 0.8, 0.3) < host_slowdown(2.0, 0.8)
    assert host_slowdown(2.0, 0.8, 1.6) == 1.0  # the host's whole demand is its own replica's: never stretched


def test_the_shipped_text_host_keeps_the_sla_in_the_twin_at_the_rate_planned():
    """The text pipeline's middle configuration (minilm-L6-int8) on the runtime profile shipped beside it: at the
    highest rate the planner gives it (the demo's `capacity`), Poisson arrivals keep the SLA in the twin; and
    its replicas are slowed by the others' demand only, not their own (the stretch at the cap, as if every job
    were someone else's, would give that configuration less than its host bound)."""
    from pipetune.serving.session import planning_pipeline
    from pipetune.spec import example_path
    from pipetune.tooling.demo import capacity

    pipe = load_pipeline(example_path("text"))
    pr = load_profiles(pipe)
    rt = load_runtime_for(pipe)
    assert rt is not None
    rt = rt.without_reserve()
    variants = {"lang": "lingua-high", "topic": "minilm-L6-int8", "keywords": "keywords-linear", "merge": "merge"}
    held = capacity(planning_pipeline(pipe, 15.0), pr, rt, variants)
    assert held.rps == pytest.approx(held.host_capacity_rps, rel=0.05)  # the host's cores bind, not a replica
    assert capacity_rps(pipe, pr, held.configs, rt) >= held.rps * 0.98
    for seed in (11, 12):
        arr = poisson_arrivals(held.rps, int(held.rps * 120), seed=seed)
        sim = Simulator(pipe, pr, arr, held.configs, SimSettings(seed=seed, **host_settings(rt, pipe, pr)))
        sim.close()
        r = sim.result()
        late = (r.status != 1) | (r.finish_s - r.arrival_s > r.sla_s)
        assert late.mean() <= 0.01, seed
