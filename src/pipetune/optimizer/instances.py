"""Random planning instances (pipeline + profiles in memory) for the optimizer benchmark and property tests.

Profiles follow the same scaling law the real ones are fitted with (affine in batch, Amdahl in cores) with
per-variant parameters drawn so that more accurate variants are slower, plus lognormal noise on measured cells,
so instances look like real profile packs: a few fast, inaccurate variants and a few slow, accurate ones.
"""

from __future__ import annotations

import numpy as np

from pipetune.profiles import PipelineProfiles, ProfileRow, VariantProfile
from pipetune.spec import Pipeline, parse_pipeline

BATCH_POOL = [1, 2, 4, 8, 16, 32, 64]
CORE_POOL = [1, 2, 4, 8]
METHODS = ["pas", "sum", "mean", "rank_sum"]


def random_instance(
    rng: np.random.Generator,
    stages: int,
    variants: int,
    *,
    n_batches: int | None = None,
    n_cores: int | None = None,
    dag: bool | None = None,
    method: str | None = None,
    budget: bool = False,
    max_replicas: int = 100,
) -> tuple[Pipeline, PipelineProfiles, float]:
    """A (pipeline, profiles, rps) triple. The SLA is drawn between the tightest and a loose bound so that
    most instances are feasible and the SLA binds."""
    n_batches = n_batches or int(rng.integers(4, 8))
    n_cores = n_cores or int(rng.integers(1, 4))
    dag = bool(rng.integers(0, 2)) if dag is None else dag
    method = method or METHODS[int(rng.integers(0, len(METHODS)))]
    batches = sorted(rng.choice(BATCH_POOL, size=min(n_batches, len(BATCH_POOL)), replace=False).tolist())
    if 1 not in batches:
        batches[0] = 1
        batches.sort()
    cores = sorted(rng.choice(CORE_POOL, size=min(n_cores, len(CORE_POOL)), replace=False).tolist())

    names = [f"s{i}" for i in range(stages)]
    edges = []
    for i in range(1, stages):
        if dag and i >= 2 and rng.random() < 0.5:
            parents = sorted(set(rng.choice(i, size=int(rng.integers(1, min(i, 3) + 1)), replace=False).tolist()))
        else:
            parents = [i - 1]
        for p in parents:
            mult = float(rng.choice([1.0, 1.0, 1.0, 2.0, 3.0])) if dag else 1.0
            edges.append({"from": names[p], "to": names[i], "multiplicity": mult})

    spec_stages, cells = [], {}
    for s in names:
        base_acc = np.sort(rng.uniform(0.5, 0.99, size=variants))
        vs = []
        for j in range(variants):
            v = f"{s}-v{j}"
            vs.append({"name": v, "accuracy": float(round(base_acc[j], 4))})
            heavy = (j + 1) / variants
            a = rng.uniform(0.002, 0.01) * (1 + 4 * heavy)
            k = rng.uniform(0.001, 0.01) * (1 + 9 * heavy)
            ser = rng.uniform(0.05, 0.5)
            p99r = rng.uniform(1.05, 1.6)
            rows = []
            for b in batches:
                for c in cores:
                    mean = (a + k * b) * (ser + (1 - ser) / c) * float(rng.lognormal(0, 0.03))
                    rows.append(ProfileRow(v, b, c, mean, mean * 0.98, mean * p99r, b / mean, 1.0, 100.0))
            cells[(s, v)] = VariantProfile(v, rows)
        spec_stages.append({"name": s, "variants": vs})

    data = {
        "name": f"random-{stages}x{variants}",
        "sla": {"seconds": 1.0},  # replaced below once latencies are known
        "objective": {"accuracy": method, "alpha": 10.0, "beta": 0.05, "gamma": 1e-6},
        "caps": {"batch_sizes": batches, "cores": cores, "max_replicas": max_replicas},
        "stages": spec_stages,
        "edges": edges,
    }
    pipeline = parse_pipeline(data)
    profiles = PipelineProfiles(cells)
    # SLA drawn uniformly from 2x the unloaded p99 of the fastest path (each stage's fastest variant, batch 1, most
    # cores) up to the larger of 2.5x that and 2x the slowest path (each stage's heaviest variant, batch 1, fewest
    # cores).
    fast = {s: min(cells[(s, f"{s}-v{j}")].row(1, cores[-1]).latency_p99_s for j in range(variants)) for s in names}
    slow = {s: cells[(s, f"{s}-v{variants - 1}")].row(1, cores[0]).latency_p99_s for s in names}
    from pipetune.latency import longest_path

    lo, _ = longest_path(pipeline, fast)
    hi, _ = longest_path(pipeline, slow)
    sla = float(rng.uniform(2.0 * lo, max(2.5 * lo, 2.0 * hi)))
    # Load: enough to need several replicas of a mid variant at the busiest stage.
    mid = {
        s: cells[(s, f"{s}-v{variants // 2}")].row(batches[len(batches) // 2], cores[0]).throughput_rps for s in names
    }
    factors = pipeline.load_factors()
    rps = float(rng.uniform(0.5, 8.0) * min(mid[s] / factors[s] for s in names))
    caps = {"batch_sizes": batches, "cores": cores, "max_replicas": max_replicas}
    if budget:
        caps["max_total_cores"] = float(rng.integers(stages * 2, stages * 12))
    data["sla"] = {"seconds": sla}
    data["caps"] = caps
    return parse_pipeline(data), profiles, rps
