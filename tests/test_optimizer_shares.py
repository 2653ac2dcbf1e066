"""Continuous shares decided to a proven tolerance (optimizer/shares.py): against a dense brute force over shares
on one-stage instances (every discrete choice, shares on a 1/1000 grid plus the exact feasibility boundary), against
every share grid the exact optimizer plans on small pipelines, the plan's own claims re-checked from the profiles,
k = 1 unchanged, and a work cap that never claims optimality."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pipetune
from pipetune.errors import PipetuneError
from pipetune.latency import longest_path, stage_latency_arrays
from pipetune.optimizer import options as options_module
from pipetune.optimizer import plan_pipeline
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.options import accuracy_coefficients
from pipetune.optimizer.shares import DEFAULT_EPS, plan_continuous_shares


def _with_mix(pipeline, k: int = 2):
    return pipeline.model_copy(update={"caps": pipeline.caps.model_copy(update={"mix_variants": k})})


def _instances(seed: int, count: int, stages: tuple[int, int], max_replicas: int = 4):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        s, v = int(rng.integers(*stages)), int(rng.integers(2, 4))
        pipeline, profiles, rps = random_instance(
            rng, s, v, n_batches=2, n_cores=1, method=METHODS[i % len(METHODS)], max_replicas=max_replicas
        )
        out.append((_with_mix(pipeline), profiles, rps))
    return out


def _latency(pipeline, row, replicas, load):
    """SLA-percentile latency of one part at `load` items/s by the model's definition; inf where it does not
    carry the load (capacity within headroom, strictly stable)."""
    load = np.asarray(load, float)
    lat = stage_latency_arrays(
        mean_s=row.latency_mean_s,
        p50_s=row.latency_p50_s,
        p99_s=row.latency_p99_s,
        throughput=row.throughput_rps,
        batch=row.batch,
        replicas=replicas,
        rate=load,
        pct=pipeline.sla.percentile,
        max_wait=pipeline.caps.max_batch_wait_s,
    ).slo
    cap = replicas * row.throughput_rps
    ok = (cap >= load * (1 + pipeline.caps.headroom) - 1e-9) & (load < cap)
    return np.where(ok, lat, np.inf)


def _brute_force_one_stage(pipeline, profiles, rps) -> float:
    """The best objective of a one-stage pipeline over every one-variant option and every split (any two variants,
    each part any batch, cores and replicas), shares on a 1/1000 grid, then the best grid share's step toward the
    more accurate part bisected to the feasibility boundary (the objective is monotone in the share)."""
    st = pipeline.stages[0]
    obj, caps, sla = pipeline.objective, pipeline.caps, pipeline.sla.seconds * (1 + 1e-12)
    load = rps * pipeline.load_factors()[st.name]
    accs = [v.accuracy for v in st.variants]
    coef = accs if obj.accuracy == "pas" else accuracy_coefficients(obj.accuracy, accs, 1)
    parts = [
        (vi, profiles.row(st.name, v.name, b, c), n)
        for vi, v in enumerate(st.variants)
        for b in pipeline.batch_sizes_for(st.name)
        for c in pipeline.cores_for(st.name)
        for n in range(1, caps.max_replicas + 1)
    ]
    best = -math.inf
    for vi, row, n in parts:
        if _latency(pipeline, row, n, load) <= sla:
            best = max(best, float(obj.value(coef[vi], row.cores * n, row.batch)))
    f = np.linspace(0.0, 1.0, 1001)
    for va, ra, na in parts:
        for vb, rb, nb in parts:
            if vb <= va or coef[va] == coef[vb]:
                continue

            def ok(x, ra=ra, na=na, rb=rb, nb=nb):
                x = np.asarray(x, float)
                return (
                    np.maximum(_latency(pipeline, ra, na, x * load), _latency(pipeline, rb, nb, (1 - x) * load)) <= sla
                )

            good = np.flatnonzero(ok(f))
            if good.size == 0:
                continue
            up = coef[va] > coef[vb]  # the share of a is worth raising
            k = int(good[-1] if up else good[0])
            x = float(f[k])
            nxt = k + 1 if up else k - 1
            cost = ra.cores * na + rb.cores * nb
            if 0 <= nxt < f.size:  # the boundary between the best grid point and its infeasible neighbour
                lo, hi = x, float(f[nxt])
                if obj.value(hi * coef[va] + (1 - hi) * coef[vb], cost, ra.batch + rb.batch) <= best:
                    continue  # not even the neighbour's share would beat the best so far
                for _ in range(45):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if ok([mid])[0] else (lo, mid)
                x = lo
            acc = x * coef[va] + (1 - x) * coef[vb]
            best = max(best, float(obj.value(acc, cost, ra.batch + rb.batch)))
    return best


def _check_plan_claims(pipeline, profiles, plan) -> None:
    """What the plan says, re-derived from the profiles: every part carries its share of the load within the
    SLA, every path holds the SLA, and the objective is the share-weighted accuracy less cores and batches."""
    obj = pipeline.objective
    loads = {s: plan.rps * f for s, f in pipeline.load_factors().items()}
    lat: dict[str, float] = {}
    stage_acc, cost, batch = {}, 0.0, 0
    for st in pipeline.stages:
        s = st.name
        accs = [v.accuracy for v in st.variants]
        names = [v.name for v in st.variants]
        coefs = accs if obj.accuracy == "pas" else accuracy_coefficients(obj.accuracy, accs, len(pipeline.stages))
        parts = plan.mix.get(s) or [(plan.stages[s].config, 1.0)]
        assert sum(f for _, f in parts) == pytest.approx(1.0, abs=1e-12)
        worst, acc = 0.0, 0.0
        for c, f in parts:
            row = profiles.row(s, c.variant, c.batch, c.cores)
            worst = max(worst, float(_latency(pipeline, row, c.replicas, f * loads[s])))
            acc += f * coefs[names.index(c.variant)]
            cost += c.cores * c.replicas
            batch += c.batch
        lat[s], stage_acc[s] = worst, acc
    slo, _ = longest_path(pipeline, lat)
    assert slo <= pipeline.sla.seconds * (1 + 1e-9)
    accuracy = float(np.prod(list(stage_acc.values()))) if obj.accuracy == "pas" else sum(stage_acc.values())
    assert plan.objective == pytest.approx(float(obj.value(accuracy, cost, batch)), rel=1e-9, abs=1e-9)
    assert plan.cost_cores == cost


def test_one_stage_decisions_match_a_dense_brute_force_over_shares():
    checked = split = 0
    for pipeline, profiles, rps in _instances(seed=3, count=16, stages=(1, 2)):
        d = plan_continuous_shares(pipeline, rps, profiles)
        expected = _brute_force_one_stage(pipeline, profiles, rps)
        if expected == -math.inf:
            assert not d.plan.feasible and d.stopped == "infeasible"
            continue
        assert d.proven and d.stopped == "optimal", (pipeline.name, rps, d.gap)
        tol = DEFAULT_EPS * max(1.0, abs(expected))
        assert d.upper >= expected - 1e-9 * max(1.0, abs(expected))  # the certificate bounds the true optimum
        assert d.lower >= expected - tol  # and the plan is within eps of it
        assert d.lower <= expected + 1e-9 * max(1.0, abs(expected))  # no better than every share allows
        assert d.upper - d.lower <= d.eps * max(1.0, abs(d.lower))
        _check_plan_claims(pipeline, profiles, d.plan)
        split += bool(d.plan.mix) and d.lower > (d.grid_objective or -math.inf) + 1e-9
        checked += 1
    assert checked >= 8
    assert split >= 3  # continuous shares beat the grid somewhere: the comparison saw what it is for


def test_small_pipelines_beat_or_match_every_share_grid(monkeypatch):
    """On 2-3 stage pipelines (chains and DAGs): the decision is at least every grid's optimum (1/20, 1/60,
    1/240, each planned exactly), the certificate is above each, and the plan's claims hold from the profiles."""
    checked = gains = 0
    for pipeline, profiles, rps in _instances(seed=9, count=10, stages=(2, 4)):
        d = plan_continuous_shares(pipeline, rps, profiles)
        grids = []
        for steps in (20, 60, 240):
            monkeypatch.setattr(options_module, "MIX_SHARE_STEPS", steps)
            grids.append(plan_pipeline(pipeline, rps, profiles=profiles))
        monkeypatch.undo()
        if not d.plan.feasible:
            assert d.stopped in ("infeasible", "iterations", "resolution")
            assert d.stopped != "infeasible" or not any(g.feasible for g in grids)
            continue
        for g in grids:
            if g.feasible:
                scale = max(1.0, abs(g.objective))
                assert d.lower >= g.objective - 1e-9 * scale, (pipeline.name, rps)
                assert d.upper >= g.objective - 1e-9 * scale
        assert d.upper >= d.lower - 1e-9 * max(1.0, abs(d.lower))
        if d.proven:
            assert d.upper - d.lower <= d.eps * max(1.0, abs(d.lower))
        _check_plan_claims(pipeline, profiles, d.plan)
        gains += d.lower > grids[-1].objective + 1e-9
        checked += 1
    assert checked >= 6
    assert gains >= 1  # the exact shares beat even the 1/240 grid somewhere


def test_one_variant_per_stage_is_the_plan_of_plan_pipeline():
    rng = np.random.default_rng(17)
    for _ in range(6):
        pipeline, profiles, rps = random_instance(rng, int(rng.integers(1, 4)), 3, max_replicas=8)
        assert pipeline.caps.mix_variants == 1
        d = plan_continuous_shares(pipeline, rps, profiles)
        base = plan_pipeline(pipeline, rps, profiles=profiles)
        assert d.plan.to_dict() | {"solve_time_s": 0} == base.to_dict() | {"solve_time_s": 0}
        assert d.iterations == 0 and d.proven and d.gap == 0.0


def test_a_work_cap_reports_its_gap_and_never_claims_optimality():
    p = _with_mix(pipetune.load_pipeline(pipetune.example_path("synthetic")))
    capped = plan_continuous_shares(p, 45, max_iterations=1)
    assert capped.stopped == "iterations" and not capped.proven
    assert capped.plan.feasible and capped.gap > capped.eps * max(1.0, abs(capped.lower))
    assert "not proven optimal" in capped.plan.note
    full = plan_continuous_shares(p, 45)
    assert full.stopped == "optimal" and full.proven and full.plan.note == ""
    # the capped certificate holds the proven optimum; the full search is at least as good as the capped one
    assert capped.upper >= full.lower - 1e-9 and full.lower >= capped.lower - 1e-12
    assert full.upper <= capped.upper + 1e-12
    d = full.to_dict()
    assert d["proven"] is True and d["gap"] <= d["eps"] * max(1.0, abs(d["lower"]))


def test_refusals():
    p = _with_mix(pipetune.load_pipeline(pipetune.example_path("synthetic")))
    with pytest.raises(PipetuneError, match="arrival_dispersion=0.5"):
        plan_continuous_shares(p, 30, arrival_dispersion=0.5)
    with pytest.raises(PipetuneError, match="eps=0"):
        plan_continuous_shares(p, 30, eps=0)
    with pytest.raises(PipetuneError, match="max_iterations=0"):
        plan_continuous_shares(p, 30, max_iterations=0)


def _copy_with_mix(src_dir, tmp_path):
    import shutil

    tmp_path.mkdir()
    for f in src_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "pipeline.yaml"
    text = path.read_text()
    assert "\ncaps:\n" in text
    path.write_text(text.replace("\ncaps:\n", "\ncaps:\n  mix_variants: 2\n", 1))
    return path


def test_cli_plan_exact_shares(pipetune_cli, tmp_path):
    import json
    from pathlib import Path

    path = _copy_with_mix(Path(pipetune.example_path("synthetic")).parent, tmp_path / "syn")
    code, out, err = pipetune_cli("plan", str(path), "--rps", "45", "--exact-shares", "--json")
    assert code == 0, err
    d = json.loads(out)
    cert = d["continuous_shares"]
    assert cert["proven"] and cert["stopped"] == "optimal" and cert["upper"] >= d["objective"]
    assert d["objective"] > cert["grid_objective"] and d["mix"]
    code, out, err = pipetune_cli("plan", str(path), "--rps", "45", "--exact-shares")
    assert code == 0 and "proven optimal to eps 1e-06" in out and "split classify" in out
    code, out, err = pipetune_cli("plan", str(path), "--rps", "45", "--exact-shares", "--policy", "rim")
    assert code == 2 and "--exact-shares decides with the ipa policy" in err + out and "Traceback" not in err
    # a runtime profile with mixing stays refused, as plan_pipeline refuses it
    text = _copy_with_mix(Path(pipetune.example_path("text")).parent, tmp_path / "text")
    code, out, err = pipetune_cli("plan", str(text), "--rps", "10", "--exact-shares")
    assert code == 2 and "runtime profile" in err + out and "Traceback" not in err


def test_cli_plan_table_shows_each_part_of_a_split_stage(pipetune_cli, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    path = _copy_with_mix(Path(pipetune.example_path("synthetic")).parent, tmp_path / "syn")
    code, out, err = pipetune_cli("plan", str(path), "--rps", "45", "--json")
    assert code == 0, err
    mix = json.loads(out)["mix"]
    assert mix  # the load splits at 45 rps, so the table has parts to show
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough that no variant name is cut short
    code, out, err = pipetune_cli("plan", str(path), "--rps", "45")
    assert code == 0, err
    for parts in mix.values():
        for part in parts:
            assert part["variant"] in out
        assert out.count("% of it") >= len(parts)
