"""The optimizer benchmark behind `pipetune bench optimizer`: decision time and oracle agreement."""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipetune.optimizer import Plan, plan_pipeline, stage_options
from pipetune.optimizer.instances import METHODS, random_instance
from pipetune.optimizer.oracle import MAX_COMBINATIONS, brute_force, combinations

IPA_9x9_SECONDS = 2.1  # IPA's Gurobi decision time at 9 stages x 9 variants (shared/reference/ipa.yaml)
REPEATS = 3  # cold decisions timed per instance; the instance's time is their median (the development VM's
# speed drifts by up to 2x over seconds: a fixed numpy loop took 0.18-0.36 s back to back)


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
) -> dict:
    # Everything alive now (modules, the CLI) lives for the whole run: frozen, the full collection before each
    # timed decision walks only what the benchmark made since (67 ms -> ~0 ms a collection here).
    gc.freeze()
    try:
        return _run(cells, instances, oracle_instances, seed, advance, repeats)
    finally:
        gc.unfreeze()


def _run(cells, instances, oracle_instances, seed, advance, repeats) -> dict:
    rng = np.random.default_rng(seed)
    out_cells = []
    by_method: dict[str, list[float]] = {m: [] for m in METHODS}
    for s, v in cells:
        times = []
        for _ in range(instances):
            pipeline, profiles, rps = random_instance(rng, s, v)
            runs = []
            for _ in range(repeats):
                # a fresh copy each time, so nothing cached by an earlier run of this instance is reused: every
                # timed decision starts from scratch (options, reduction, MILPs)
                p, prof = copy.deepcopy((pipeline, profiles))
                gc.collect()  # the garbage of generating and copying the instance is not the decision's to collect
                t0 = time.perf_counter()
                plan_pipeline(p, rps, profiles=prof)
                runs.append((time.perf_counter() - t0) * 1e3)
            dt = float(np.median(runs))
            times.append(dt)
            if (s, v) == (9, 9):
                by_method[pipeline.objective.accuracy].append(dt)
            advance()
        out_cells.append(
            {
                "stages": s,
                "variants": v,
                "median_ms": round(float(np.median(times)), 3),
                "p95_ms": round(float(np.percentile(times, 95)), 3),
                "instances": len(times),
                "repeats": repeats,
            }
        )

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
