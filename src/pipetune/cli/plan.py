"""`pipetune plan PIPELINE --rps R [--policy P] [--json]`: one decision, as a table or JSON.

`pipetune plan A.yaml B.yaml ... --budget-cores N --rps a,b,...`: several pipelines decided jointly in one MILP
within one core budget (pipetune.optimizer.joint), beside each planned alone on an equal share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from pipetune import jsonio
from pipetune.cli.app import app
from pipetune.cli.options import COUNT, DISPERSION, RPS, Range, number
from pipetune.errors import PipetuneError

if TYPE_CHECKING:
    from pipetune.optimizer import Infeasible, Plan


@dataclass(frozen=True)
class _Rates(Range):
    """--rps at parse time (before any work): one rate, or several comma-separated, each within the range; the
    count is checked against the pipelines later. Returns the rates as text (`parse_rates` reads them)."""

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and "," in value:
            parts = [x for x in value.replace(" ", "").split(",") if x]
            if not parts:
                raise typer.BadParameter(f"{value!r} is not {self.describe()}, nor a comma-separated list of them")
            return ",".join(str(super(_Rates, self).__call__(x)) for x in parts)
        return str(super().__call__(value))


RATES = _Rates(RPS.kind, ge=RPS.ge, le=RPS.le)


def parse_rates(text: str, n: int) -> list[float]:
    """--rps: one rate (for every pipeline) or one per pipeline, comma-separated; each within RPS."""
    rates = [float(x) for x in str(RATES(text)).split(",")]
    if len(rates) == 1:
        return rates * n
    if len(rates) != n:
        raise typer.BadParameter(f"--rps {text!r}: {len(rates)} rates for {n} pipelines; give one, or one per pipeline")
    return rates


@app.command("plan")
def plan_cmd(
    pipelines: list[Path] = typer.Argument(..., help="pipeline YAML (several: planned jointly, see --budget-cores)"),
    rps: str = typer.Option(
        ...,
        "--rps",
        parser=RATES,
        metavar="NUMBER[,NUMBER...]",
        help=f"requests per second to plan for ({RPS}); several pipelines: one rate for all or one per pipeline, "
        "comma-separated in the order of the files (a,b,c)",
    ),
    budget_cores: int | None = number(
        None,
        "--budget-cores",
        allowed=COUNT,
        help="total cores every pipeline named shares (needed with several pipelines; they are decided jointly)",
    ),
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
    exact_shares: bool = typer.Option(
        False,
        "--exact-shares",
        help="caps.mix_variants 2: decide each split's shares as continuous numbers, proven optimal to a relative "
        "1e-6 (or say the gap proven when the work cap stops first), instead of on the 1/20 grid",
    ),
) -> None:
    """Choose per stage (variant, batch, cores, replicas) for RPS under POLICY; with several pipelines and
    --budget-cores N, decide them jointly within N cores (one MILP), beside each alone on an equal share.

    Exit 1 when no configuration meets the SLA at RPS (the capacity message and the best-effort fallback are
    printed, as a table or as JSON), or no joint plan fits the budget."""
    from pipetune.optimizer import plan_pipeline
    from pipetune.runtime_profile import RuntimeProfile, load_runtime_for
    from pipetune.spec import load_pipeline

    rates = parse_rates(rps, len(pipelines))
    if len(pipelines) > 1 or budget_cores is not None:
        if budget_cores is None:
            raise PipetuneError(f"{len(pipelines)} pipelines: give --budget-cores N, the total cores they share")
        knobs = {"--policy": policy != "ipa", "--replicas": replicas is not None, "--measured-only": measured_only,
                 "--arrival-dispersion": arrival_dispersion != 1.0,
                 "--runtime-profile": runtime_profile is not None}  # fmt: skip
        used = [k for k, v in knobs.items() if v]
        if used:
            raise PipetuneError(
                f"{', '.join(used)}: options of one pipeline's plan; joint planning (--budget-cores) plans every "
                "pipeline with the ipa policy"
            )
        joint_cmd([load_pipeline(f) for f in pipelines], rates, budget_cores, as_json)
        return
    p = load_pipeline(pipelines[0])
    rps_one = rates[0]
    runtime = RuntimeProfile.load(runtime_profile) if runtime_profile is not None else load_runtime_for(p)
    if exact_shares:
        exact_shares_cmd(p, rps_one, policy, replicas, measured_only, arrival_dispersion, runtime, as_json)
        return
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
            rps_one,
            policy=policy,
            measured_only=measured_only,
            arrival_dispersion=arrival_dispersion,
            runtime=runtime,
            replicas=replicas,
        )
    else:
        result = plan_pipeline(
            p,
            rps_one,
            policy=policy,
            measured_only=measured_only,
            arrival_dispersion=arrival_dispersion,
            runtime=runtime,
        )
    if as_json:
        print(jsonio.dumps(result.to_dict(), indent=2))
    else:
        render_plan(result, Console())
    if not result.feasible:
        raise typer.Exit(1)  # the answer is negative: no plan meets the SLA at this load


def exact_shares_cmd(p, rps: float, policy, replicas, measured_only, arrival_dispersion, runtime, as_json) -> None:
    """`plan --exact-shares`: the decision with continuous shares and its certificate (optimizer/shares.py)."""
    from pipetune.optimizer import Infeasible
    from pipetune.optimizer.shares import plan_continuous_shares

    knobs = {"--policy": policy != "ipa", "--replicas": replicas is not None, "--measured-only": measured_only}
    used = [k for k, v in knobs.items() if v]
    if used:
        raise PipetuneError(f"{', '.join(used)}: --exact-shares decides with the ipa policy on every profile cell")
    if runtime is not None and p.caps.mix_variants > 1:
        raise PipetuneError(
            "--exact-shares: caps.mix_variants: 2 cannot be combined with a runtime profile yet (a split's host CPU "
            "is not modelled); plan without the runtime profile (move runtime.json aside) or set mix_variants: 1"
        )
    d = plan_continuous_shares(p, rps, arrival_dispersion=arrival_dispersion)
    cert = {k: v for k, v in d.to_dict().items() if k != "plan"}
    if as_json:
        print(jsonio.dumps({**d.plan.to_dict(), "continuous_shares": cert}, indent=2))
    else:
        con = Console()
        if isinstance(d.plan, Infeasible) and not d.proven:
            con.print(
                f"[bold yellow]no plan found[/] within the work cap ({d.iterations} relaxations): not proven "
                f"infeasible (the grid of shares has none: {d.plan.reason})"
            )
        else:
            render_plan(d.plan, con)
        plan = d.plan if not isinstance(d.plan, Infeasible) else None
        for stage, parts in (plan.mix if plan is not None else {}).items():
            desc = ", ".join(f"{c.variant} b{c.batch} c{c.cores} x{c.replicas} {f:.6%}" for c, f in parts)
            con.print(f"split {stage}: {desc}")
        if d.stopped == "optimal":
            con.print(
                f"continuous shares: proven optimal to eps {d.eps:g} (upper bound {d.upper:.6f}, gap {d.gap:.3g}; "
                f"1/20 grid {d.grid_objective if d.grid_objective is not None else 'infeasible'}; "
                f"{d.iterations} relaxations, {d.solve_time_s:.2f} s)"
            )
        elif d.stopped == "infeasible":
            con.print("continuous shares: proven infeasible (the relaxation over share ranges has no plan)")
        else:
            con.print(
                f"[yellow]continuous shares: NOT proven optimal to eps {d.eps:g}[/]: the work cap ({d.stopped}) "
                f"stopped the search at a proven gap of {d.gap:.3g} (upper bound {d.upper:.6f})"
            )
    if not d.plan.feasible:
        raise typer.Exit(1)


def joint_cmd(pipes: list, rates: list[float], budget: int, as_json: bool) -> None:
    """Plan `pipes` jointly within `budget` cores; print it beside each pipeline planned alone on an equal share."""
    from pipetune.optimizer import Plan as Plan_
    from pipetune.optimizer.joint import budget_frontier, equal_shares, labels_for, plan_jointly, plan_separately
    from pipetune.profiles import load_profiles
    from pipetune.runtime_profile import load_runtime_for

    labels = labels_for(pipes)
    profs = [load_profiles(p) for p in pipes]
    rts = [load_runtime_for(p) for p in pipes]  # each pipeline's runtime.json, as `plan` reads for one
    fronts = {k: budget_frontier(p, r, budget, pr, rt) for k, p, r, pr, rt in zip(labels, pipes, rates, profs, rts)}
    joint = plan_jointly(pipes, rates, budget, profs, frontiers=fronts, runtimes=rts)
    shares = equal_shares(budget, len(pipes))
    sep = plan_separately(pipes, rates, shares, profs, frontiers=fronts, runtimes=rts)
    sep_ok = all(r.feasible for r in sep.values())
    separate: dict[str, Any] = {
        "shares": dict(zip(labels, shares)),
        "feasible": sep_ok,
        "objective": sum(r.objective for r in sep.values() if isinstance(r, Plan_)) if sep_ok else None,
        "cost_cores": sum(r.cost_cores for r in sep.values() if isinstance(r, Plan_)) if sep_ok else None,
        "pipelines": {k: r.to_dict() for k, r in sep.items()},
    }
    if as_json:
        print(jsonio.dumps({**joint.to_dict(), "rps": dict(zip(labels, rates)), "separate": separate}, indent=2))
    else:
        con = Console()
        if not joint.feasible:
            con.print(f"[bold red]infeasible[/] ({joint.binding}): {joint.reason}")
        else:
            t = Table(title=f"{len(pipes)} pipelines, one budget of {budget} cores: joint vs equal shares")
            for col in ("pipeline", "rps", "joint cores", "joint accuracy", "joint objective", "equal share",
                        "alone: cores", "alone: accuracy", "alone: objective"):  # fmt: skip
                t.add_column(col, justify="left" if col == "pipeline" else "right")
            for k, r in zip(labels, rates):
                j, s = joint.plans[k], sep[k]
                alone = (str(s.cost_cores), f"{s.accuracy:.4f}", f"{s.objective:.4f}") if isinstance(s, Plan_) else (
                    "infeasible", "-", "-")  # fmt: skip
                t.add_row(k, f"{r:g}", str(j.cost_cores), f"{j.accuracy:.4f}", f"{j.objective:.4f}",
                          str(separate["shares"][k]), *alone)  # fmt: skip
            con.print(t)
            gain = (
                f"{joint.objective - separate['objective']:+.4f}" if sep_ok else "(equal shares have no plan for all)"
            )
            con.print(
                f"joint: objective {joint.objective:.4f} on {joint.cost_cores} of {budget} cores "
                f"({joint.columns} frontier plans in one MILP, {joint.solve_time_s * 1e3:.0f} ms); vs equal shares: {gain}"
            )
            for p in joint.plans.values():
                render_plan(p, con)
    if not joint.feasible:
        raise typer.Exit(1)


def render_plan(result: Plan | Infeasible, console: Console) -> None:
    from pipetune.optimizer import Infeasible

    plan = result.fallback if isinstance(result, Infeasible) else result
    if isinstance(result, Infeasible):
        console.print(f"[bold red]infeasible[/] ({result.binding}): {result.reason}")
        console.print("[yellow]best-effort fallback (most capacity):[/]")
    t = Table(title=f"{plan.pipeline} · {plan.policy} · {plan.rps:g} rps")
    for col in ("stage", "variant", "acc", "batch", "cores", "replicas", "load/s", "capacity/s", "p-lat (s)"):
        # on a narrow terminal nothing is cut short: names stay whole (two parts of a split differ only in them),
        # numbers fold onto a second line
        named = col in ("stage", "variant")
        t.add_column(col, justify="left" if named else "right", no_wrap=named, overflow="fold")
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
        # a stage split over several variants (caps.mix_variants): each part, its share of the stage's load
        for part, share in plan.mix.get(name, []):
            t.add_row(
                f"  {100 * share:.0f}% of it",
                part.variant,
                "",
                str(part.batch),
                str(part.cores),
                str(part.replicas),
                f"{share * c.load_rps:.1f}",
                "",
                "",
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
