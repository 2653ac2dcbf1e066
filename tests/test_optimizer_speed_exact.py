"""The speed-ups of the exact optimizer keep it exact: every finishing path (flat enumeration, the dominance and
bound enumeration of frontier.py, HiGHS branch and bound) agrees with the brute-force oracle, and so does the
product-accuracy search with its LP fathoming."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipetune.optimizer.milp as milp
from pipetune.optimizer import plan_pipeline, stage_options
from pipetune.optimizer.frontier import TooLarge, best_by_frontier
from pipetune.optimizer.incumbent import best_by_enumeration
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.oracle import MAX_COMBINATIONS, brute_force, combinations


def _small_instances(seed: int, count: int, **kw):
    rng = np.random.default_rng(seed)
    out = []
    attempts = 0
    while len(out) < count and attempts < count * 5:
        attempts += 1
        s, v = int(rng.integers(2, 6)), int(rng.integers(2, 4))
        pipeline, profiles, rps = random_instance(
            rng,
            s,
            v,
            n_batches=int(rng.integers(2, 4)),
            n_cores=int(rng.integers(1, 3)),
            method=METHODS[attempts % len(METHODS)],
            budget=bool(rng.random() < 0.3),
            max_replicas=20,
            **kw,
        )
        raw = stage_options(pipeline, rps, profiles)
        if 0 < combinations(raw) <= MAX_COMBINATIONS // 8:
            out.append((pipeline, profiles, rps, raw))
    return out


def _agrees(plan, oracle) -> bool:
    if oracle is None:
        return not plan.feasible
    return plan.feasible and abs(plan.objective - oracle[0]) <= 1e-6 * max(1.0, abs(oracle[0]))


@pytest.mark.parametrize("finish", ["frontier", "highs", "wide", "highs-direct"])
def test_every_finishing_path_matches_the_oracle(monkeypatch, finish):
    # ENUMERATE_AT_MOST = 0 sends every MILP past the flat enumeration; a frontier cap of 0 sends it on to HiGHS
    # (after the layer-bound enumeration, also capped at 0); a frontier width limit of 0 sends it to the
    # layer-bound enumeration (milp._finish_wide) directly, and with that capped at 0 on to HiGHS, here with
    # completion-time variables for every DAG.
    monkeypatch.setattr(milp, "ENUMERATE_AT_MOST", 0)
    if finish in ("highs", "highs-direct"):
        monkeypatch.setattr(milp, "FRONTIER_MAX_STATES", 0)
        monkeypatch.setattr(milp, "WIDE_MAX_STATES", 0)
        monkeypatch.setattr(milp, "WIDE_BEAM", 0)
    if finish in ("wide", "highs-direct"):
        monkeypatch.setattr(milp, "FRONTIER_MAX_WIDTH", 0)
        monkeypatch.setattr(milp, "FRONTIER_DIRECT_ABOVE", 0)
    if finish == "highs-direct":
        monkeypatch.setattr(milp, "MAX_PATH_ROWS", 1)
    cases = _small_instances(seed={"frontier": 11, "highs": 12, "wide": 14, "highs-direct": 13}[finish], count=25)
    assert len(cases) >= 15
    bad = []
    for pipeline, profiles, rps, raw in cases:
        expected = brute_force(pipeline, raw)
        got = plan_pipeline(pipeline, rps, profiles=profiles)
        if not _agrees(got, expected):
            bad.append((pipeline.name, pipeline.objective.accuracy, expected and expected[0], got.objective))
    assert not bad


def test_frontier_equals_flat_enumeration_for_any_values():
    # Arbitrary (also negative, tied) values: the frontier's rules may not depend on the objective's shape.
    rng = np.random.default_rng(5)
    checked = 0
    for pipeline, _profiles, _rps, raw in _small_instances(seed=21, count=20, dag=True):
        if any(len(so) == 0 for so in raw):
            continue
        for _ in range(3):
            values = [np.round(rng.normal(size=len(so)), 1) for so in raw]  # rounding makes ties
            flat = best_by_enumeration(pipeline, raw, values)
            got = best_by_frontier(pipeline, raw, values, best_known=-np.inf)
            assert got is not TooLarge
            if flat is None:
                assert got is None
                continue
            value = lambda ch, values=values: sum(v[i] for v, i in zip(values, ch))  # noqa: E731
            assert got is not None and abs(value(got) - value(flat)) <= 1e-9
            checked += 1
    assert checked >= 20


def test_frontier_gives_up_instead_of_growing():
    cases = _small_instances(seed=31, count=5)
    pipeline, _profiles, _rps, raw = max(cases, key=lambda c: combinations(c[3]))
    values = [np.zeros(len(so)) for so in raw]
    assert best_by_frontier(pipeline, raw, values, best_known=-np.inf, max_states=0) is TooLarge


@pytest.mark.parametrize("path", ["listed", "frontier", "wide", "highs"])
def test_least_change_reduction_keeps_the_least_change_optimum(monkeypatch, path):
    # The tie-break MILP now runs on the options an LP bound allows; compare with listing every plan. "frontier"
    # sends every remainder to the dominance-and-bound enumeration (the distance as one more dominance term);
    # "highs" sends it to HiGHS, whose value row must hold to 1e-9 (at its default tolerance it took plans one
    # batch unit below the optimum).
    if path != "listed":
        monkeypatch.setattr(milp, "ENUMERATE_AT_MOST", 0)
    if path == "highs":
        monkeypatch.setattr(milp, "FRONTIER_MAX_STATES", 0)
    if path == "wide":  # the layer-bound enumeration (frontier.py rule 4) for every remainder
        monkeypatch.setattr(milp, "FRONTIER_MAX_WIDTH", 0)
        monkeypatch.setattr(milp, "FRONTIER_DIRECT_ABOVE", 0)
    runs = milp.COUNTS.least_change_runs
    from pipetune.optimizer.incumbent import stage_slack
    from pipetune.optimizer.options import pareto_prune_stages

    rng = np.random.default_rng(9)
    checked = 0
    for pipeline, _profiles, _rps, raw in _small_instances(seed=41, count=20):
        if pipeline.objective.accuracy == "pas" or any(len(so) == 0 for so in raw):
            continue
        opts = pareto_prune_stages(raw, pipeline.objective, True, max_latency=stage_slack(pipeline, raw))
        values = milp.linear_values(pipeline, opts)
        r = milp.solve_linear(pipeline, opts, values)
        if r is None:
            continue
        optimum = r[1]
        tol = 1e-9 * max(1.0, abs(optimum))
        distance = [rng.integers(0, 3, size=len(so)).astype(float) for so in opts]
        got = milp.least_change(pipeline, opts, values, optimum, distance)
        ref = milp._least_change_by_enumeration(pipeline, opts, values, optimum - tol, distance)
        assert got is not None and ref is not None
        dist = lambda ch, distance=distance: sum(d[i] for d, i in zip(distance, ch))  # noqa: E731
        assert dist(got) == dist(ref)
        # with a known optimal plan, options that cannot be in a plan as close as it are dropped first
        known = milp.least_change(pipeline, opts, values, optimum, [np.zeros(len(so)) for so in opts])
        assert known is not None
        seeded = milp.least_change(pipeline, opts, values, optimum, distance, known=known)
        assert seeded is not None and dist(seeded) == dist(ref) <= dist(known)
        reused = milp.least_change(
            pipeline, opts, values, optimum, distance, reduction=milp._reduce(pipeline, opts, values)
        )
        assert reused is not None and dist(reused) == dist(ref)
        assert sum(v[i] for v, i in zip(values, got)) >= optimum - tol
        checked += 1
    assert checked >= 8
    # the path under test answered: HiGHS ran only where it was sent
    assert (milp.COUNTS.least_change_runs > runs) == (path == "highs")


def test_bench_optimizer_prints_the_issue_json_shape(tmp_path):
    import json

    from typer.testing import CliRunner

    from pipetune.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "bench",
            "optimizer",
            "--stages",
            "1,3",
            "--variants",
            "2",
            "--instances",
            "2",
            "--oracle",
            "6",
            "--repeats",
            "1",
            "--mix-stages",
            "3",
            "--json",
            "--plot",
            str(tmp_path / "b.png"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(c["stages"], c["variants"], c["instances"]) for c in out["cells"]] == [(1, 2, 2), (3, 2, 2)]
    assert all(c["max_ms"] >= c["p95_ms"] >= c["median_ms"] > 0 for c in out["cells"])
    # re-plan cells beside the cold ones (every instance here is feasible, so each is re-planned), with the
    # solver's counts: every decision solves at least one LP relaxation
    for c in out["cells"]:
        r = c["replan"]
        assert r["instances"] == 2 and r["max_ms"] >= r["p95_ms"] >= r["median_ms"] > 0
        assert c["counts"]["lps"]["median"] >= 1 and r["counts"]["lps"]["median"] >= 1
    # mixing (k=2) cells where asked, with how often a split beat one variant per stage
    assert "mix2" not in out["cells"][0]
    m = out["cells"][1]["mix2"]
    assert m["instances"] == 2 and m["median_ms"] > 0 and 0 <= m["improved"] <= 2
    # ... re-planned too (k=2's options contain k=1's, so each feasible instance stays feasible)
    assert m["replan"]["instances"] == 2 and m["replan"]["max_ms"] >= m["replan"]["median_ms"] > 0
    # each cell names its slowest instances, slowest first, with their shape and the solver's work
    for c in out["cells"]:
        slow = c["slowest"]
        assert 1 <= len(slow) <= 2 and slow[0]["paths"] >= 1 and slow[0]["width"] >= 0
        worst = [max(d["cold_ms"], d["replan_ms"]) for d in slow]
        assert worst == sorted(worst, reverse=True) and worst[0] <= max(c["max_ms"], c["replan"]["max_ms"])
    assert out["oracle"]["instances"] == 6 and out["oracle"]["agree"] == 6
    assert (tmp_path / "b.png").stat().st_size > 1000
    # a saved result redraws without timing anything; a wrong file is a user error that names the option
    (tmp_path / "r.json").write_text(res.stdout)
    again = CliRunner().invoke(app, ["bench", "optimizer", "--from-json", str(tmp_path / "r.json"), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == out
    (tmp_path / "bad.json").write_text("{}")
    bad = CliRunner().invoke(app, ["bench", "optimizer", "--from-json", str(tmp_path / "bad.json")])
    from pipetune.errors import PipetuneError

    assert isinstance(bad.exception, PipetuneError) and "--from-json" in str(bad.exception)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60
    )
)
def test_grouped_pareto_keeps_exactly_the_undominated(points):
    """The all-stages-at-once prune against the definition, pairwise: a point goes iff another point of its
    stage is no worse on every term and better on one, or is an exact duplicate listed before it."""
    from pipetune.optimizer.options import _pareto_2d, _pareto_3d

    p = np.array(sorted(points, key=lambda t: t[0]), float)  # grouped by stage, as the prune concatenates them
    stage = p[:, 0].astype(np.int64)
    acc, pen, lat = p[:, 1] / 4, p[:, 2] / 10, p[:, 3] * 0.3

    def expected(cols):  # every column minimised
        n = len(cols)
        keep = np.ones(n, bool)
        for i in range(n):
            for j in range(n):
                dominated = all(cj <= ci for ci, cj in zip(cols[i], cols[j]))
                strictly = any(cj < ci for ci, cj in zip(cols[i], cols[j]))
                if i != j and stage[i] == stage[j] and dominated and (strictly or j < i):
                    keep[i] = False
        return keep

    assert _pareto_3d(stage, acc, pen, lat).tolist() == expected(list(zip(-acc, pen, lat))).tolist()
    assert _pareto_2d(stage, lat, acc - pen).tolist() == expected(list(zip(lat, -(acc - pen)))).tolist()


def test_stage_slack_drops_exactly_what_cannot_fit_next_to_the_fastest_others():
    from pipetune.latency import longest_path
    from pipetune.optimizer.incumbent import stage_slack

    for pipeline, _profiles, _rps, raw in _small_instances(seed=5, count=12, dag=True):
        slack = stage_slack(pipeline, raw)
        fastest = {so.stage: float(so.lat_slo.min()) for so in raw}
        for so, limit in zip(raw, slack):
            for lat in so.lat_slo:
                # the longest path with this option at its stage and the fastest options elsewhere
                worst, _ = longest_path(pipeline, {**fastest, so.stage: float(lat)})
                fits = worst <= pipeline.sla.seconds * (1 + 1e-9)
                assert (lat <= limit) == fits or abs(worst - pipeline.sla.seconds) < 1e-9 * pipeline.sla.seconds


def test_product_accuracy_search_matches_the_oracle():
    # The pas search (lazy most-accurate end, splits where the chord bound peaks, flat sides, crossings) on
    # random chains and DAGs, some with a core budget; on these draws every branch of the search is taken.
    rng = np.random.default_rng(7)
    checked, bad = 0, []
    while checked < 120:
        pipeline, profiles, rps = random_instance(
            rng,
            int(rng.integers(1, 6)),
            int(rng.integers(1, 5)),
            n_batches=int(rng.integers(2, 5)),
            n_cores=int(rng.integers(1, 3)),
            method="pas",
            budget=bool(rng.random() < 0.25),
            max_replicas=30,
        )
        raw = stage_options(pipeline, rps, profiles)
        if combinations(raw) > MAX_COMBINATIONS // 4:
            continue
        checked += 1
        expected = brute_force(pipeline, raw)
        got = plan_pipeline(pipeline, rps, profiles=profiles)
        if not _agrees(got, expected):
            bad.append((pipeline.name, expected and expected[0], got.objective if got.feasible else None))
    assert not bad


def test_holding_the_current_configuration_never_costs_objective(monkeypatch):
    # Re-planning with `current` picks the least change among optimal plans only: its objective must equal the
    # free optimum. (The tie-break MILP once took a plan one batch unit, 1e-6, below it: HiGHS's default
    # feasibility tolerance on the value row; this draw hit that.)
    monkeypatch.setattr(milp, "ENUMERATE_AT_MOST", 0)
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(12):
        pipeline, profiles, rps = random_instance(
            rng,
            int(rng.integers(12, 18)),
            int(rng.integers(6, 10)),
            method=["sum", "mean", "rank_sum"][int(rng.integers(0, 3))],
        )
        first = plan_pipeline(pipeline, rps, profiles=profiles)
        if not first.feasible:
            continue
        current = {s: c.config for s, c in first.stages.items()}
        for factor in (1.05, 0.9):
            free = plan_pipeline(pipeline, rps * factor, profiles=profiles)
            held = plan_pipeline(pipeline, rps * factor, profiles=profiles, current=current)
            if free.feasible:
                checked += 1
                assert held.objective >= free.objective - 1e-9 * max(1.0, abs(free.objective))
    assert checked >= 20
