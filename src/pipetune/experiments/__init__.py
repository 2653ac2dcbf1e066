"""Experiments: YAML grids of (workload × system × seed) simulated runs, run in parallel, with a report."""

from pipetune.experiments.spec import Experiment, ExperimentError, load_experiment, parse_experiment

__all__ = ["Experiment", "ExperimentError", "load_experiment", "parse_experiment", "run_experiment", "simulate"]


def __getattr__(name: str):
    if name in ("run_experiment", "simulate"):
        from pipetune.experiments import runner

        return getattr(runner, name)
    raise AttributeError(name)
