"""`pipetune plan PIPELINE --rps R [--policy P] [--json]`: one decision, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import COUNT, DISPERSION, RPS, number
from pipetune.errors import PipetuneError

if TYPE_CHECKING:
    from pipetune.optimizer import Infeasible, Plan


@app.command("plan")
def plan_cmd(
    pipeline: Path = typer.Argument(..., help="pipeline YAML"),
    rps: float = number(..., "--rps", allowed=RPS, help="requests per second to plan for"),
    policy: str = typer.Option("ipa", help="ipa | fa2-low | fa2-high | rim | static-peak"),
    replicas: int | None = number(
        None, "--replicas", allowed=COUNT, help="rim: the fixed replica count per stage (at most the spec's cap)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
    measured_only: bool = typer.Option(
        False, "--measured-only", help="plan on measured profile cells alone (no cell from a fitted law)"
    ),
    arrival_dispersion: float = number(
        1.0,
        "--arrival-dispersion",
        allowed=DISPERSION,
        help="variance / mean of the per-second request counts to plan for: 1 Poisson (default, safe), "
        "0 the same count every second, > 1 burstier",
    ),
    runtime_profile: Path | None = typer.Option(
        None,
        "--runtime-profile",
        help="the serving runtime's CPU on this host (runtime.json, docs/profiles.md); default: runtime.json "
        "beside the pipeline's profile when there is one",
    ),
) -> None:
    """Choose per stage (variant, batch, cores, replicas) for RPS under POLICY.

    Exit 1 when no configuration meets the SLA at RPS (the capacity message and the best-effort fallback are
    printed, as a table or as JSON)."""
    from pipetune.optimizer import plan_pipeline
    from pipetune.runtime_profile import RuntimeProfile, load_runtime_for
    from pipetune.spec import load_pipeline

    p = load_pipeline(pipeline)
    runtime = RuntimeProfile.load(runtime_profile) if runtime_profile is not None else load_runtime_for(p)
    if replicas is not None:
        if policy != "rim":
            raise PipetuneError(f"--replicas {replicas}: only --policy rim takes a fixed replica count")
        if replicas > p.caps.max_replicas:
            raise PipetuneError(
                f"--replicas {replicas}: {p.name} allows at most {p.caps.max_replicas} replicas per stage "
                "(caps.max_replicas)"
            )
        result = plan_pipeline(
            p,
            rps,
            policy=policy,
            measured_only=measured_only,
            arrival_dispersion=arrival_dispersion,
            runtime=runtime,
            replicas=replicas,
        )
    else:
        result = plan_pipeline(
            p, rps, policy=policy, measured_only=measured_only, arrival_dispersion=arrival_dispersion, runtime=runtime
        )
    if as_json:
        print(jsonio.dumps(result.to_dict(), indent=2))
    else:
        render_plan(result, Console())
    if not result.feasible:
        raise typer.Exit(1)  # the answer is negative: no plan meets the SLA at this load


def render_plan(result: Plan | Infeasible, console: Console) -> None:
    from pipetune.optimizer import Infeasible

    plan = result.fallback if isinstance(result, Infeasible) else result
    if isinstance(result, Infeasible):
        console.print(f"[bold red]infeasible[/] ({result.binding}): {result.reason}")
        console.print("[yellow]best-effort fallback (most capacity):[/]")
    t = Table(title=f"{plan.pipeline} · {plan.policy} · {plan.rps:g} rps")
    for col in ("stage", "variant", "acc", "batch", "cores", "replicas", "load/s", "capacity/s", "p-lat (s)"):
        t.add_column(col, justify="left" if col in ("stage", "variant") else "right")
    for name, c in plan.stages.items():
        k = c.config
        t.add_row(
            name,
            k.variant + (" *" if c.fitted else ""),
            f"{c.accuracy:.3f}",
            str(k.batch),
            str(k.cores),
            str(k.replicas),
            f"{c.load_rps:.1f}",
            f"{c.capacity_rps:.1f}",
            f"{c.latency_slo_s:.3f}",
        )
    console.print(t)
    if any(c.fitted for c in plan.stages.values()):
        console.print("[yellow]* rests on a fitted (not measured) profile cell; --measured-only plans without[/]")
    for a in plan.assumptions:
        console.print(f"[yellow]note:[/] {a}")
    if plan.arrival_dispersion != 1.0:
        console.print(
            f"[yellow]note:[/] planned for per-second request counts with variance / mean {plan.arrival_dispersion:g} "
            "(Poisson: 1); burstier arrivals than that may break the SLA"
        )
    console.print(
        f"accuracy {plan.accuracy:.4f} (pas {plan.pas:.4f}) · cost {plan.cost_cores} cores · "
        f"e2e latency {plan.latency_e2e_slo_s:.3f} s at the SLA percentile (mean {plan.latency_e2e_mean_s:.3f} s) · "
        f"critical path {' -> '.join(plan.critical_path)} · objective {plan.objective:.4f} · "
        f"solved in {plan.solve_time_s * 1e3:.1f} ms"
    )
    if plan.host_cpu_cores is not None and plan.host_cpu_budget_cores is not None:
        holds = f" · holds {plan.capacity_rps:.1f} rps" if plan.capacity_rps is not None else ""
        console.print(
            f"host CPU {plan.host_cpu_cores:.2f} of {plan.host_cpu_budget_cores:.2f} cores a plan may use "
            f"(runtime profile counted){holds}"
        )
