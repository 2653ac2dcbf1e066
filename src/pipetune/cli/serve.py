"""`pipetune serve PIPELINE`: serve a pipeline on Ray Serve behind an Open Inference Protocol endpoint and keep
re-configuring it with the adapter (`--no-adapt`: serve the starting plan as it is). Several pipelines (or
`--budget-cores`): served side by side on one Ray, one port each, decided jointly (`cli/serve_fleet.py`).

Serving that outlives its adapter: on a Ray cluster started apart (`ray start --head`, then `--address`), the
pipeline's applications belong to the cluster's Ray Serve, not to this process. If this process dies (killed,
crashed, the node's supervisor restarting it), serving goes on untouched, only the re-planning stops; run the
same command with `--resume LOG` (its decision log) and it takes over what serves (no re-deploy; a switch under
way completes), goes on with the same clock and appends its decisions to LOG. With no pipeline served there,
`--resume` starts from the log's last configuration, not a fresh plan (and with no log yet, as usual: the same
command serves for the first start and every restart). `--keep-serving` makes a stop leave the pipeline serving.

SIGTERM (what Kubernetes and systemd send) and SIGINT (Ctrl-C) stop it the same way: the adapter stops, Ray
Serve drains (its apps are deleted, so the proxy stops routing to them, and each replica finishes the requests it
holds, up to its graceful_shutdown_timeout_s), Ray shuts down with every process it started, one line is printed
and the command exits 0. Further signals during that bounded stop are ignored.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from pipetune.cli.app import app
from pipetune.cli.options import PORT, RPS, Range, number, out_file


@app.command("serve")
def serve_cmd(
    pipelines: list[Path] = typer.Argument(
        ..., help="pipeline YAML (every variant needs a `model:` mapping); several: served side by side"
    ),
    address: str = typer.Option(None, help="an existing Ray cluster (host:port or ray://...); default: a local Ray"),
    num_cpus: int | None = number(
        None,
        "--num-cpus",
        allowed=Range(int, ge=2, le=4096),
        help="local Ray only: the logical CPUs Ray may hand out (default: the machine's cores). More than the "
        "physical cores oversubscribes them: replicas then share cores and serve slower than profiled.",
    ),
    host: str = typer.Option("127.0.0.1", help="address the HTTP endpoint binds"),
    port: int = number(8000, allowed=PORT, help="HTTP port"),
    adapt: bool = typer.Option(True, "--adapt/--no-adapt", help="re-plan every --interval seconds"),
    policy: str = typer.Option("ipa", help="ipa | fa2-low | fa2-high | rim | static-peak"),
    predictor: str = typer.Option("default", help="load predictor (default, reactive, max, arima, lstm, ...)"),
    interval: float = number(10.0, allowed=Range(float, ge=0.5), help="seconds between decisions"),
    rps: float = number(1.0, allowed=RPS, help="the load the starting plan is made for (without --plan)"),
    plan: Path | None = typer.Option(None, "--plan", help="start from this plan (`pipetune plan --json` output)"),
    duration: float | None = number(
        None, allowed=Range(float, ge=1), help="stop after this many seconds (default: run until Ctrl-C)"
    ),
    log: Path | None = out_file(None, "--log", help="write the adapter's decisions here (JSON lines)"),
    export: Path | None = out_file(
        None, "--export", help="write the Ray Serve config of the starting plan (for `serve deploy` / KubeRay) and exit"
    ),
    switch_reserve: float = number(
        0.25,
        allowed=Range(float, ge=0, le=0.9),
        help="share of the replica CPUs the planner leaves free for make-before-break switches",
    ),
    budget_cores: int | None = number(
        None,
        "--budget-cores",
        allowed=Range(int, ge=1, le=1_000_000),
        help="cores every pipeline named shares (default: what Ray has less the ingresses and the switch reserve); "
        "the pipelines are decided jointly within it",
    ),
    resume: Path | None = typer.Option(
        None,
        "--resume",
        metavar="LOG",
        help="continue an adapter from its decision log LOG (written by --log; appended to): take over the "
        "pipeline the cluster serves as it is, or start from the log's last configuration; no log yet: start as "
        "usual",
    ),
    keep_serving: bool = typer.Option(
        False,
        "--keep-serving",
        help="on stop (signal, --duration) leave the pipeline serving on the cluster (needs --address); a later "
        "`--resume` takes it over",
    ),
) -> None:
    """Serve PIPELINE on Ray Serve (V2 endpoint at http://HOST:PORT/v2, metrics at /metrics) and adapt it; several
    pipelines side by side, the i-th (from 0) on PORT + i, adapted jointly within --budget-cores."""
    if len(pipelines) > 1 or budget_cores is not None:
        from pipetune.cli.serve_fleet import serve_fleet

        if resume is not None or keep_serving:
            from pipetune.errors import PipetuneError

            raise PipetuneError(
                "--resume and --keep-serving take one pipeline (without --budget-cores); several served side by "
                "side cannot be resumed yet"
            )

        return serve_fleet(
            pipelines, address=address, num_cpus=num_cpus, host=host, port=port, adapt=adapt, policy=policy,
            predictor=predictor, interval=interval, rps=rps, plan=plan, duration=duration, log=log, export=export,
            switch_reserve=switch_reserve, budget_cores=budget_cores, stop_on_signals=_stop_on_signals,
        )  # fmt: skip
    pipeline = pipelines[0]
    import yaml

    from pipetune.errors import PipetuneError
    from pipetune.profiles import load_profiles
    from pipetune.serving.session import configs_from_plan_file, initial_configs, planning_pipeline
    from pipetune.spec import load_pipeline

    con = Console()
    pipe = load_pipeline(pipeline)
    profiles = load_profiles(pipe)
    # Everything the user named is checked here, before a Ray cluster starts (minutes, and a port held).
    from pipetune.optimizer import POLICIES
    from pipetune.predictors import PREDICTORS

    if policy not in POLICIES:
        raise PipetuneError(f"--policy {policy!r} is unknown; choose one of {', '.join(POLICIES)}")
    if adapt and predictor != "default" and predictor not in PREDICTORS:
        raise PipetuneError(f"--predictor {predictor!r} is unknown; use one of default, {', '.join(PREDICTORS)}")
    if resume is not None:
        for flag, given in (("--plan", plan is not None), ("--export", export is not None)):
            if given:
                raise PipetuneError(
                    f"--resume and {flag}: choose one (--resume continues from the log's last decision)"
                )
        if log is not None and Path(log).resolve() != Path(resume).resolve():
            raise PipetuneError(f"--log {log} and --resume {resume}: a resumed adapter appends to the log it resumes")
        log = resume
    if keep_serving and address is None:
        raise PipetuneError(
            "--keep-serving needs --address: a local Ray ends with this command, and its serving with it; start one "
            "apart (`ray start --head --num-cpus N`) and pass --address"
        )
    from_plan = configs_from_plan_file(plan, pipe) if plan is not None else None
    from_log = None
    if resume is not None:
        from pipetune.serving.session import read_decision_log, resume_configs

        decisions = read_decision_log(resume)
        from_log = resume_configs(decisions, pipe, resume)
        if from_log is None:
            con.print(f"no decision in {resume} yet: starting as usual; decisions go there")
    if export is not None:
        from pipetune.serving.config import ServeOptions, export_config

        cpus = float(num_cpus or os.cpu_count() or 2)
        planning = planning_pipeline(pipe, cpus - 1, switch_reserve)
        configs = from_plan or initial_configs(planning, profiles, rps, policy)
        config = export_config(pipe, configs, profiles, ServeOptions.for_pipeline(pipe, host=host, port=port))
        try:
            export.write_text(yaml.safe_dump(config, sort_keys=False))
        except OSError as e:
            raise PipetuneError(f"--export {export}: cannot write ({e}); give a writable file path") from None
        con.print(
            f"wrote the Ray Serve config of {pipe.name} ({', '.join(f'{s}={c.variant}' for s, c in configs.items())}) to {export}"
        )
        return

    import ray

    from pipetune.cli.ray_session import start_or_connect_ray
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.session import run_adapter

    start_or_connect_ray(address, num_cpus, pipe.name, con)
    be = None
    with _stop_on_signals() as stopped:  # after ray.init, which sets its own SIGTERM handler (sys.exit(15))
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0))
            planning = planning_pipeline(pipe, cpus - 1, switch_reserve)
            served = False
            if address is not None:  # a local Ray started above serves nothing yet
                from pipetune.serving import ray_api
                from pipetune.serving.config import ingress_app_name

                served = ingress_app_name(pipe.name) in ray_api.deployed_apps()
            if served and resume is None:
                raise PipetuneError(
                    f"the cluster at {address} already serves pipeline {pipe.name!r}: continue its adapter with "
                    "--resume LOG (the decision log it wrote), or stop it first (`serve shutdown`)"
                )
            configs = from_plan or from_log or initial_configs(planning, profiles, rps, policy)
            if not served:  # what this command deploys, it removes if stopped before serving
                stopped["deploying"] = "yes"
            be = RayServeBackend(pipe, configs, profiles, host=host, port=port, attach=served)
            if be.attached:
                differ = {s: c for s, c in (from_log or {}).items() if be.in_effect().get(s) != c}
                con.print(
                    f"[green]attached[/] to {pipe.name} as the cluster serves it (nothing re-deployed; its clock "
                    f"is at t={be.now():.1f} s)"
                    + (f"; the log's last configuration differs for {sorted(differ)}" if differ else "")
                )
            con.print(
                f"[green]serving[/] http://{be.host}:{be.port}/v2/models/{pipe.name}/infer · metrics "
                f"http://{be.host}:{be.port}/metrics · {cpus:g} Ray CPUs, plans use at most "
                f"{planning.caps.max_total_cores:g}"
            )
            for s, c in be.in_effect().items():
                con.print(f"  {s}: {c.variant} batch {c.batch} x {c.replicas} replicas of {c.cores} cores")
            until = duration if duration is not None else math.inf
            if adapt:

                def show(d) -> None:  # noqa: ANN001 - a Decision
                    what = ", ".join(d.changed_stages) or "no change"
                    con.print(
                        f"t={d.t:7.1f}s observed {d.observed_rps:6.1f} rps, predicted {d.predicted_rps:6.1f} -> "
                        f"{what}; {d.cost_cores} cores; violations {d.violations_last_interval}/"
                        f"{d.requests_last_interval}"
                    )

                run_adapter(
                    be, planning, profiles, policy=policy, predictor=predictor, interval_s=interval, until_s=until,
                    log=log, append=resume is not None, on_step=show,
                )  # fmt: skip
            else:
                be.wait_until(until)
        except KeyboardInterrupt:
            con.print(
                f"stopping ({stopped.get('signal', 'SIGINT')}): draining in-flight requests, then shutting Ray Serve "
                "and Ray down"
            )
        finally:
            stopped["closing"] = "yes"  # a signal from here on is ignored: the shutdown below always completes
            try:
                if be is not None:
                    if keep_serving:
                        con.print(f"the pipeline keeps serving on {address}; `--resume` takes it over")
                    # serve.shutdown(): the graceful drain, bounded by the replicas' shutdown timeout
                    be.close(keep_serving=keep_serving)
                elif (
                    "deploying" in stopped and not keep_serving
                ):  # stopped while deploying: what was deployed goes too (a cluster's
                    # Ray outlives this process)
                    from pipetune.serving.ray_api import shutdown_serve

                    shutdown_serve()
            finally:
                ray.shutdown()


class _Stop(KeyboardInterrupt):
    """A stop signal, raised in the main thread to unwind serving the way Ctrl-C does."""


@contextmanager
def _stop_on_signals() -> Iterator[dict[str, str]]:
    """SIGTERM and SIGINT raise `_Stop` once (its name recorded in the yielded dict); later ones, and any once the
    caller has set "closing" in the dict, are ignored, so a signal cannot cut the drain and shutdown short. Python's
    handler also replaces the native one Ray's core worker installs (which prints a stack dump on SIGTERM). The
    previous handlers come back on exit."""
    stopped: dict[str, str] = {}
    sigs = (signal.SIGTERM, signal.SIGINT)

    def handler(signum: int, _frame: object) -> None:
        if "signal" in stopped or "closing" in stopped:
            return
        stopped["signal"] = signal.Signals(signum).name
        raise _Stop

    previous = {sig: signal.signal(sig, handler) for sig in sigs}
    try:
        yield stopped
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
