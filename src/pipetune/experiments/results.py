"""What results.json holds: the runs and calibration points of an experiment, with what the report needs to
explain them (per-variant facts, SLAs, timings), assembled by `collect`."""

from __future__ import annotations

import math

import numpy as np

from pipetune.experiments.spec import Experiment


def variant_facts(pipe) -> dict:
    """Per stage and variant: accuracy and the best throughput per core over the allowed (batch, cores), plus the
    objective's weights: what the report needs to explain a policy's variant choices."""
    from pipetune.profiles import load_profiles

    prof = load_profiles(pipe)
    stages = {}
    for st in pipe.stages:
        rows = []
        for v in st.variants:
            per_core = max(
                prof.row(st.name, v.name, b, c).throughput_rps / c
                for b in pipe.batch_sizes_for(st.name)
                for c in pipe.cores_for(st.name)
            )
            rows.append(
                {
                    "variant": v.name,
                    "accuracy": v.accuracy,
                    "items_per_s_per_core": per_core,
                    "load_time_s": prof.get(st.name, v.name).load_time_s,
                }
            )
        stages[st.name] = rows
    return {
        "alpha": pipe.objective.alpha,
        "beta": pipe.objective.beta,
        "accuracy": pipe.objective.accuracy,
        "stages": stages,
    }


def collect(
    exp: Experiment,
    runs: list[dict],
    cal: list[dict],
    variants: dict[str, dict],
    *,
    wall_s: float,
    grid_wall_s: float,
    workers: int,
) -> dict:
    """The results.json mapping: successful runs and calibration points apart from the failed ones."""
    from pipetune.spec import load_pipeline

    errors = [r for r in runs + cal if "error" in r]
    runs = [r for r in runs if "error" not in r]
    cal = [r for r in cal if "error" not in r]
    paths = exp.pipeline_paths()
    slas = {k: load_pipeline(p, check_profiles=False).sla.seconds for k, p in paths.items()}
    return {
        "experiment": exp.model_dump(mode="json"),
        "pipelines": {k: str(p) for k, p in paths.items()},
        "sla_s": slas,
        "runs": runs,
        "calibration": cal,
        "wall_s": wall_s,
        "grid_wall_s": grid_wall_s,
        "workers": workers,
        "variants": variants,
        "errors": errors,
        "cpu_s": sum(r.get("cpu_s", 0.0) for r in runs + cal),
        "grid_cpu_s": sum(r.get("cpu_s", 0.0) for r in runs),
        "load_check": load_check(exp),
    }


def _rounded_up(rps: float, quantum: float) -> float:
    return math.ceil(rps / quantum - 1e-9) * quantum if quantum > 0 else rps


def load_check(exp: Experiment, bisect_steps: int = 20) -> dict[str, dict]:
    """Per pipeline: can the windows' peak (as the planner would be asked for it, rounded up to rps_quantum) be
    served within the SLA by any configuration? Asked of the ipa policy, which may choose any variant, batch,
    cores and replicas within the caps, so an Infeasible there is one for every policy. Reported before and after
    the experiment's load_scale, with the largest factor (by bisection) at which the peak is servable."""
    from pipetune.experiments.tasks import workload_counts
    from pipetune.optimizer import plan_pipeline
    from pipetune.profiles import load_profiles
    from pipetune.spec import load_pipeline

    peak = max(float(np.max(workload_counts(w, exp))) for w in exp.workloads)
    q = exp.settings.rps_quantum
    out: dict[str, dict] = {}
    for label, path in exp.pipeline_paths().items():
        pipe = load_pipeline(path)
        prof = load_profiles(pipe)

        def ask(factor: float, pipe=pipe, prof=prof):
            return plan_pipeline(pipe, _rounded_up(peak * factor, q), policy="ipa", profiles=prof)

        raw = ask(1.0)
        scale = float(exp.load_scale.get(label, 1.0))
        scaled = ask(scale) if scale != 1.0 else raw
        servable = 1.0
        if not raw.feasible:
            lo, hi = 0.0, 1.0
            for _ in range(bisect_steps):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if ask(mid).feasible else (lo, mid)
            servable = lo
        out[label] = {
            "peak_rps": peak,
            "feasible": bool(raw.feasible),
            "binding": getattr(raw, "binding", None),
            "reason": getattr(raw, "reason", None),
            "max_servable_scale": servable,
            "scale": scale,
            "scaled_peak_rps": peak * scale,
            "scaled_feasible": bool(scaled.feasible),
            "scaled_reason": getattr(scaled, "reason", None),
        }
    return out
