"""What results.json holds: the runs and calibration points of an experiment, with what the report needs to
explain them (per-variant facts, SLAs, timings), assembled by `collect`."""

from __future__ import annotations

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
    }
