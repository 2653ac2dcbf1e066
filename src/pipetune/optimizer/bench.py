"""The optimizer benchmark behind `pipetune bench optimizer`: decision time and oracle agreement.

Each (stages, variants) cell times random instances in two modes: cold (a new pipeline object, nothing cached)
and re-plan (the adapter's mode: the same pipeline re-planned at a 3% higher load with the plan in effect as
`current`, so the least-change tie-break runs too). Beside the times, the solver's counts (LPs, exact finishings,
HiGHS branch-and-bound runs and nodes, simplex iterations) say where the work went on a machine whose speed drifts,
and each cell names its slowest instances (`slowest`: paths, frontier width, objective, time, branch-and-bound
runs and nodes per mode). Mixing cells (`mix2`, caps.mix_variants = 2) are timed in both modes too.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipetune.optimizer import Plan, plan_pipeline, stage_options
from pipetune.optimizer.frontier import frontier_width
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.milp import COUNTS
from pipetune.optimizer.oracle import MAX_COMBINATIONS, brute_force, combinations

IPA_9x9_SECONDS = 2.1  # IPA's Gurobi decision time at 9 stages x 9 variants (shared/reference/ipa.yaml)
REPEATS = 3  # cold decisions timed per instance; the instance's time is their median (a shared VM's speed
# drifts over seconds, so one timing alone says little)
REPLAN_LOAD_STEP = 1.03  # re-plan mode: the next decision's load, relative to the plan in effect (the adapter
# re-plans every few seconds, so consecutive loads are close)


def parse_range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def agrees(result, oracle) -> bool:
    if oracle is None:
        return not result.feasible
    return bool(result.feasible) and abs(result.objective - oracle[0]) <= 1e-6 * max(1.0, abs(oracle[0]))


def run_optimizer_benchmark(
    cells: list[tuple[int, int]],
    instances: int,
    oracle_instances: int,
    seed: int = 0,
    advance: Callable[[], None] = lambda: None,
    repeats: int = REPEATS,
    mix_cells: frozenset[tuple[int, int]] = frozenset(),
) -> dict:
    """Decision times per cell (cold and re-plan; `mix_cells` also with caps.mix_variants = 2) and oracle
    agreement; see the module docstring."""
    # Everything alive now (modules, the CLI) lives for the whole run: frozen, the full collection before each
    # timed decision walks only what the benchmark made since (a full collection would be timed otherwise).
    gc.freeze()
    try:
        return _run(cells, instances, oracle_instances, seed, advance, repeats, mix_cells)
    finally:
        gc.unfreeze()


def _timed(decide: Callable[[Any], Any], prepare: Callable[[], Any], repeats: int) -> tuple[float, dict[str, int], Any]:
    """The median of `repeats` timed `decide(prepare())` calls, in ms, the solver's counts of the last one (a
    decision's counts do not depend on the machine: they are the same every repeat) and its result."""
    runs = []
    result = None
    for _ in range(repeats):
        state = prepare()
        gc.collect()  # the garbage of generating and copying the instance is not the decision's to collect
        COUNTS.reset()
        t0 = time.perf_counter()
        result = decide(state)
        runs.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(runs)), COUNTS.to_dict(), result


def _stats(times: list[float], counts: list[dict[str, int]]) -> dict[str, Any]:
    if not times:
        return {"instances": 0}
    return {
        "median_ms": round(float(np.median(times)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "max_ms": round(float(np.max(times)), 3),
        "instances": len(times),
        # per decision: median and max of each count over the instances
        "counts": {
            k: {"median": float(np.median([c[k] for c in counts])), "max": int(max(c[k] for c in counts))}
            for k in counts[0]
        },
    }


def _time_instance(pipeline, profiles, rps: float, repeats: int):
    """One instance timed in both modes: (cold ms, cold counts, (re-plan ms, re-plan counts) or None when the
    instance has no feasible plan to re-plan from, the cold plan)."""
    # Cold: a fresh copy each time, so nothing cached by an earlier run of this instance is reused: every timed
    # decision starts from scratch (options, reduction, MILPs).
    dt, n, plan = _timed(
        lambda pp: plan_pipeline(pp[0], rps, profiles=pp[1]), lambda: copy.deepcopy((pipeline, profiles)), repeats
    )
    if not plan.feasible:
        return dt, n, None, plan

    # Re-plan (the adapter's mode): the same pipeline object, planned once at `rps` (untimed), re-planned at the
    # next load with that plan as the current configuration (among optimal plans, the least change).
    def warmed():
        p, prof = copy.deepcopy((pipeline, profiles))
        return p, prof, plan_pipeline(p, rps, profiles=prof).configs

    dt_r, n_r, _ = _timed(
        lambda st: plan_pipeline(st[0], rps * REPLAN_LOAD_STEP, profiles=st[1], current=st[2]), warmed, repeats
    )
    return dt, n, (dt_r, n_r), plan


SLOWEST_SHOWN = 3  # instances per cell described in `slowest`


def _describe(pipeline, cold_ms: float, cold_counts: dict[str, int], again) -> dict[str, Any]:
    """One timed instance, for the `slowest` list: its shape (source-to-sink paths, the frontier enumeration's
    width, the objective) and, per mode, its time, HiGHS branch-and-bound runs and nodes."""
    out: dict[str, Any] = {
        "paths": len(pipeline.paths()),
        "width": frontier_width(pipeline),
        "accuracy": pipeline.objective.accuracy,
        "cold_ms": round(cold_ms, 3),
        "cold_branch_runs": cold_counts["branch_runs"],
        "cold_nodes": cold_counts["nodes"],
    }
    if again is not None:
        out |= {
            "replan_ms": round(again[0], 3),
            "replan_branch_runs": again[1]["branch_runs"] + again[1]["least_change_runs"],
            "replan_nodes": again[1]["nodes"],
        }
    return out


def _mixed(pipeline, k: int = 2):
    return pipeline.model_copy(update={"caps": pipeline.caps.model_copy(update={"mix_variants": k})})


def _time_mixing(pipeline, profiles, rps: float, repeats: int, one_variant):
    """The instance decided with mixing (k = 2), cold and re-planned as in `_time_instance`: (cold ms, cold
    counts, (re-plan ms, re-plan counts) or None when the mixed instance has no feasible plan, and its objective
    gain over the one-variant plan `one_variant` (0 when neither is feasible; never negative: k = 2's options
    contain k = 1's))."""
    dt, n, again, plan = _time_instance(_mixed(pipeline), profiles, rps, repeats)
    gain = plan.objective - one_variant.objective if plan.feasible and one_variant.feasible else 0.0
    return dt, n, again, gain


def _run(cells, instances, oracle_instances, seed, advance, repeats, mix_cells=frozenset()) -> dict:
    rng = np.random.default_rng(seed)
    out_cells = []
    by_method: dict[str, list[float]] = {m: [] for m in METHODS}
    for s, v in cells:
        cold: tuple[list[float], list[dict[str, int]]] = ([], [])
        replan: tuple[list[float], list[dict[str, int]]] = ([], [])
        mix: tuple[list[float], list[dict[str, int]]] = ([], [])
        mix_replan: tuple[list[float], list[dict[str, int]]] = ([], [])
        slowest: list[dict[str, Any]] = []
        gains: list[float] = []
        for _ in range(instances):
            pipeline, profiles, rps = random_instance(rng, s, v)
            dt, n, again, plan = _time_instance(pipeline, profiles, rps, repeats)
            cold[0].append(dt)
            cold[1].append(n)
            slowest.append(_describe(pipeline, dt, n, again))
            if (s, v) in mix_cells:
                dt_m, n_m, again_m, gain = _time_mixing(pipeline, profiles, rps, repeats, plan)
                mix[0].append(dt_m)
                mix[1].append(n_m)
                if again_m is not None:
                    mix_replan[0].append(again_m[0])
                    mix_replan[1].append(again_m[1])
                gains.append(gain)
            if (s, v) == (9, 9):
                by_method[pipeline.objective.accuracy].append(dt)
            if again is not None:
                replan[0].append(again[0])
                replan[1].append(again[1])
            advance()
        cell = {"stages": s, "variants": v, **_stats(*cold), "repeats": repeats}
        cell["replan"] = _stats(*replan)
        # where the tail comes from: the slowest instances (by the slower of their two modes), what shape they
        # have and what the solver did for them
        cell["slowest"] = sorted(slowest, key=lambda d: -max(d["cold_ms"], d.get("replan_ms", 0.0)))[:SLOWEST_SHOWN]
        if (s, v) in mix_cells:
            # cold decisions with caps.mix_variants = 2, and how often (and by how much) splitting a stage's
            # load beat the best one-variant plan of the same instance
            tol = 1e-9
            cell["mix2"] = _stats(*mix) | {
                "replan": _stats(*mix_replan),
                "improved": sum(g > tol for g in gains),
                "gain_median_when_improved": round(float(np.median([g for g in gains if g > tol])), 6)
                if any(g > tol for g in gains)
                else 0.0,
            }
        out_cells.append(cell)

    checked = agree = 0
    attempts = 0
    mismatches: list[dict[str, Any]] = []
    while checked < oracle_instances and attempts < oracle_instances * 4:
        attempts += 1
        s = int(rng.integers(1, 5))
        v = int(rng.integers(1, 5))
        pipeline, profiles, rps = random_instance(
            rng,
            s,
            v,
            n_batches=int(rng.integers(2, 5)),
            n_cores=int(rng.integers(1, 3)),
            method=METHODS[attempts % len(METHODS)],
            budget=bool(rng.random() < 0.25),
            max_replicas=30,
        )
        raw = stage_options(pipeline, rps, profiles)
        if combinations(raw) > MAX_COMBINATIONS // 4:
            continue
        expected = brute_force(pipeline, raw)
        got = plan_pipeline(pipeline, rps, profiles=profiles)
        checked += 1
        ok = agrees(got, expected)
        agree += ok
        if not ok and len(mismatches) < 5:
            mismatches.append(
                {
                    "stages": s,
                    "variants": v,
                    "method": pipeline.objective.accuracy,
                    "oracle": None if expected is None else expected[0],
                    "milp": got.objective if isinstance(got, Plan) else None,
                }
            )
        advance()
    result: dict[str, Any] = {"cells": out_cells, "oracle": {"instances": checked, "agree": agree}}
    if mismatches:
        result["oracle"]["mismatches"] = mismatches
    c99 = next((c for c in out_cells if (c["stages"], c["variants"]) == (9, 9)), None)
    summary = {}
    if c99:
        summary["median_ms_9x9"] = c99["median_ms"]
        summary["speedup_vs_ipa_9x9"] = round(IPA_9x9_SECONDS * 1e3 / c99["median_ms"], 1)
        summary["median_ms_9x9_by_method"] = {m: round(float(np.median(t)), 3) for m, t in by_method.items() if t}
    c25 = next((c for c in out_cells if (c["stages"], c["variants"]) == (25, 9)), None)
    if c25:
        summary["median_ms_25x9"] = c25["median_ms"]
    result["summary"] = summary
    return result
