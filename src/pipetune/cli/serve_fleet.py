"""`pipetune serve A.yaml B.yaml [--budget-cores N]`: several pipelines side by side on one Ray (serving/fleet.py),
the i-th (from 0) on port PORT + i, with one joint adapter loop deciding for all of them within the budget.

Everything the user named is checked before Ray starts where it can be (names, flags, a budget below what the
pipelines need); the budget against Ray's CPUs once Ray is up. Stops on SIGTERM/SIGINT as one pipeline does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from rich.console import Console

from pipetune.errors import PipetuneError


def serve_fleet(
    files: list[Path],
    *,
    address: str | None,
    num_cpus: int | None,
    host: str,
    port: int,
    adapt: bool,
    policy: str,
    predictor: str,
    interval: float,
    rps: float,
    plan: Path | None,
    duration: float | None,
    log: Path | None,
    export: Path | None,
    switch_reserve: float,
    budget_cores: int | None,
    stop_on_signals: Callable[[], AbstractContextManager[dict[str, str]]],
) -> None:
    """`stop_on_signals`: `pipetune serve`'s handling of SIGTERM/SIGINT (cli/serve.py), the same for a fleet."""
    from pipetune.optimizer.joint import SharedBudgetPlanner
    from pipetune.predictors import PREDICTORS
    from pipetune.profiles import load_profiles
    from pipetune.runtime_profile import load_runtime_for
    from pipetune.serving.fleet import Fleet, check_names, plan_budget, run_joint_adapter, start_configs
    from pipetune.spec import load_pipeline

    con = Console()
    used = [flag for flag, v in (("--plan", plan), ("--export", export)) if v is not None]
    if used:
        raise PipetuneError(
            f"{' and '.join(used)}: one pipeline's options; several pipelines (or --budget-cores) start from their "
            "joint plan: leave them out"
        )
    if policy != "ipa":
        raise PipetuneError(
            f"--policy {policy}: several pipelines are decided jointly with each one's own objective (IPA's); "
            "leave --policy out"
        )
    if adapt and predictor != "default" and predictor not in PREDICTORS:
        raise PipetuneError(f"--predictor {predictor!r} is unknown; use one of default, {', '.join(PREDICTORS)}")
    if port + len(files) - 1 > 65535:
        raise PipetuneError(f"--port {port}: {len(files)} pipelines need ports {port}..{port + len(files) - 1}")
    pipes = [load_pipeline(f) for f in files]
    check_names(pipes, files)
    profiles = [load_profiles(p) for p in pipes]
    runtimes = [load_runtime_for(p) for p in pipes]
    rates = [rps] * len(pipes)
    if budget_cores is not None:  # a budget below what the pipelines need is refused before Ray starts
        start_configs(SharedBudgetPlanner(pipes, profiles, budget_cores, runtimes=runtimes), rates)

    import ray

    from pipetune.cli.ray_session import start_or_connect_ray

    start_or_connect_ray(address, num_cpus, ", ".join(p.name for p in pipes), con)
    fleet = None
    with stop_on_signals() as stopped:
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0))
            budget = plan_budget(cpus, len(pipes), switch_reserve, budget_cores)
            planner = SharedBudgetPlanner(pipes, profiles, budget, runtimes=runtimes)
            origin = None
            if budget_cores is None:
                origin = f"Ray's {cpus:g} CPUs leave for plans (after {len(pipes)} ingresses and the switch reserve)"
            configs, missed = start_configs(planner, rates, origin)
            stopped["deploying"] = "yes"
            fleet = Fleet(pipes, configs, profiles, host=host, port=port)
            con.print(
                f"[green]serving[/] {len(pipes)} pipelines on {cpus:g} Ray CPUs; their plans share {budget} cores"
                + (" (the starting load has no plan within them: best effort)" if missed else "")
            )
            for be in fleet.backends:
                con.print(f"  {be.name}: http://{host}:{be.port}/v2/models/{be.name}/infer · metrics /metrics")
                for s, c in be.in_effect().items():
                    con.print(f"    {s}: {c.variant} batch {c.batch} x {c.replicas} replicas of {c.cores} cores")
            until = duration if duration is not None else math.inf
            if adapt:

                def show(d) -> None:  # noqa: ANN001 - a FleetDecision
                    each = "; ".join(
                        f"{k} {d.observed_rps[k]:.1f}->{d.predicted_rps[k]:.1f} rps "
                        f"{', '.join(d.changed_stages[k]) or 'no change'}"
                        for k in d.predicted_rps
                    )
                    con.print(f"t={d.t:7.1f}s {each}; {d.planned_cores}/{d.budget_cores} cores")

                run_joint_adapter(
                    fleet, planner, predictor=predictor, interval_s=interval, until_s=until, log=log, on_step=show
                )
            else:
                fleet.backends[0].wait_until(until)
        except KeyboardInterrupt:
            con.print(
                f"stopping ({stopped.get('signal', 'SIGINT')}): draining in-flight requests, then shutting Ray Serve "
                "and Ray down"
            )
        finally:
            stopped["closing"] = "yes"
            try:
                if fleet is not None:
                    fleet.close()
                elif "deploying" in stopped:  # stopped while deploying (a Fleet that failed has closed its own)
                    from pipetune.serving.ray_api import shutdown_serve

                    shutdown_serve()
            finally:
                ray.shutdown()
