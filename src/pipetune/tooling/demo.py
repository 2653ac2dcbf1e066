"""The live demo (`make demo`, `pipetune demo`): the text pipeline on a local Ray under one burst of load whose
peak only the fastest configuration holds on this host and whose troughs are well below what the accurate one
holds, served live, on the same arrivals, by three contenders:

* `pipetune`: the adapter re-plans every interval (variant, batch, replicas, cores per stage);
* `ray-autoscaling`: Ray Serve's own autoscaling on the ACCURATE variants (the most accurate variant of every
  stage, what a Ray user who wants the accuracy gets without pipetune);
* `static-fast`: the best static configuration that holds the peak (the most accurate variants whose
  configuration, sized for the peak, the host can carry: the fast ones);

plus the simulator twin of pipetune's run (fidelity). The load's scale is derived from the host, not typed in
(`capacity`, planned with this machine's runtime profile): the peak is above what a middle configuration holds
(PEAK_OVER_MIDDLE, at most PEAK_SHARE of what the fastest holds), the trough TROUGH_SHARE of what the accurate
one holds. The report (PNG + HTML + JSON) shows
load and predicted load, the variant per stage over time, accuracy served, cores held, p99 against the SLA and
SLA violations for every contender; the run ends with one line per criterion saying who won (`who_won`), the
demo's goals met or missed (`goal_lines`) and the twin's fidelity (`fidelity_lines`).

Every figure comes from `pipetune.metrics` (a live run is turned into the record the simulator returns,
`live_result`): an SLA violation is a request refused (503), dropped (504), failed, or completed after the SLA;
accuracy served is the product of the accuracies of the variants that served a request (PAS); cores held count
every replica Ray reports, starting and stopping included, and the ingress.
"""

from __future__ import annotations

import base64
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune import jsonio, metrics
from pipetune.configs import StageConfig
from pipetune.errors import PipetuneError
from pipetune.loadgen.client import Outcome, open_loop_at
from pipetune.runtime_profile import LOADING_CORES

SAMPLE_S = 1.0
WINDOW_S = 10.0  # the report's per-window figures (p99, violations, accuracy served)
CONTENDERS = ("pipetune", "ray-autoscaling", "static-fast")
TWIN = "simulator twin"
COLORS = {"pipetune": "tab:blue", "ray-autoscaling": "tab:orange", "static-fast": "tab:purple", TWIN: "tab:green"}
# The fidelity goal of the twin (issue "Adaptation that pays off live"): live p99 within 20% of the twin's and
# SLA violations within 2 percentage points.
FIDELITY_P99 = 0.20
FIDELITY_VIOLATION_POINTS = 2.0
# The demo's goals for pipetune (same issue): variant changes in the one burst, SLA violations, PAS gain over the
# best static configuration.
GOAL_VARIANT_CHANGES = 2
GOAL_VIOLATIONS = 0.01
GOAL_PAS_GAIN = 0.03
# The demo's defaults: its length, pipetune's re-plan interval, the peak (PEAK_OVER_MIDDLE x what a middle
# configuration holds, the most accurate one holding half the fastest's rate, so that only trading accuracy holds
# it; at most PEAK_SHARE of what the fastest holds), the trough as a share of what the accurate one holds.
DEMO_SECONDS = 120
DEMO_INTERVAL_S = 5.0
PEAK_SHARE = 0.85
PEAK_OVER_MIDDLE = 1.05
TROUGH_SHARE = 0.4
SHOULDER_SHARE = 0.3  # of what the middle configuration holds (what pipetune keeps it for, its reserve kept)


@dataclass
class LiveRun:
    name: str
    outcomes: list[Outcome]  # planned times are seconds from the run's start
    samples: list[dict]  # every SAMPLE_S: t, cores held, configuration in effect
    decisions: list[dict] = field(default_factory=list)  # pipetune only: t, observed, predicted, changed


def without_warm_variants(pipeline: Any) -> Any:
    """The pipeline with no stage keeping warm variants (for a contender that never switches variant)."""
    stages = [st.model_copy(update={"warm_variants": []}) for st in pipeline.stages]
    return pipeline.model_copy(update={"stages": stages})


def live_run(
    name: str,
    pipeline: Any,
    planning: Any,
    profiles: Any,
    offsets_s: np.ndarray,
    seconds: float,
    initial: dict[str, StageConfig],
    *,
    port: int,
    adapt: bool = True,
    autoscale: dict | None = None,
    interval_s: float = 10.0,
    predictor: Any = "default",
    body: Callable[[int], dict] | None = None,
    runtime: Any = None,
    say: Callable[[str], None] = lambda _m: None,
) -> LiveRun:
    """Serve `offsets_s` (arrival times in seconds) once: with the adapter (`adapt`), under Ray's autoscaling
    (`autoscale`: Ray Serve's autoscaling_config per stage) or held static (neither). `runtime`: this host's
    runtime profile (what the adapter plans with and admission follows; None: the pipeline's own)."""
    if adapt and autoscale is not None:
        raise ValueError("the adapter must not drive a backend under Ray's autoscaling: pass adapt=False")
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.session import run_adapter

    be = RayServeBackend(pipeline, initial, profiles, port=port, autoscale=autoscale, runtime=runtime)
    url = f"http://127.0.0.1:{port}/v2/models/{pipeline.name}/infer"
    body_fn = body or _bodies(pipeline, be.inputs[0])
    samples: list[dict] = []
    outcomes: list[Outcome] = []
    stop = threading.Event()
    t_wall = time.time()  # the run's clock starts with the sender (its lead-in is 50 ms)
    shift = t_wall - be.epoch  # backend clock -> run clock

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            samples.append(
                {
                    "t": time.time() - t_wall,
                    "cores": be.cores_held(),
                    "config": {s: c.to_dict() for s, c in be.in_effect().items()},
                }
            )

    sender = threading.Thread(target=lambda: outcomes.extend(open_loop_at(url, body_fn, offsets_s)))
    sampler = threading.Thread(target=sample, daemon=True)
    sender.start()
    sampler.start()
    decisions: list[dict] = []
    try:
        if adapt:

            def on_step(d: Any) -> None:
                decisions.append(
                    {"t": d.t - shift, "observed_rps": d.observed_rps, "predicted_rps": d.predicted_rps,
                     "changed": d.changed_stages, "configs": d.configs, "solve_s": d.solve_time_s}
                )  # fmt: skip
                say(f"  [{name}] t={d.t - shift:5.0f}s observed {d.observed_rps:5.1f} rps, predicted "
                    f"{d.predicted_rps:5.1f} -> {', '.join(d.changed_stages) or 'no change'}")  # fmt: skip

            run_adapter(be, planning, profiles, predictor=predictor, interval_s=interval_s,
                        until_s=shift + seconds, on_step=on_step)  # fmt: skip
        else:
            be.wait_until(shift + seconds)
        sender.join()
    finally:
        stop.set()
        be.close()
    return LiveRun(name, outcomes, samples, decisions)


def _bodies(pipeline: Any, spec: Any) -> Callable[[int], dict]:
    from pipetune.models.registry import variant_model_ref
    from pipetune.protocol import encode_request

    src = next(iter(pipeline.source_shares()))
    xs = variant_model_ref(pipeline, src, pipeline.stage(src).variants[0].name)().sample_inputs(200)
    bodies = [encode_request([x], spec) for x in xs]
    return lambda i: bodies[i % len(bodies)]


# --- a live run's figures, by pipetune.metrics ---------------------------------------------------------------


def live_result(run: LiveRun, pipeline: Any, seconds: float) -> Any:
    """A live run as the record the simulator returns (`SimResult`), so that `pipetune.metrics` computes its
    figures: each HTTP answer's outcome (`metrics.outcomes_of_http`), PAS as served (`metrics.served_pas`; no
    normalised accuracy), and cores held with each sample standing for the SAMPLE_S before it."""
    from pipetune.backends.simulator.engine import SimResult

    outcome = metrics.outcomes_of_http([o.status for o in run.outcomes])
    arrival = np.array([max(0.0, o.planned) for o in run.outcomes], dtype=float)
    order = np.argsort(arrival, kind="stable")
    finish = arrival + np.array([o.latency_s for o in run.outcomes], dtype=float)
    ok = outcome == metrics.COMPLETED
    pas = np.array([metrics.served_pas(pipeline, o.variants) if k else np.nan for o, k in zip(run.outcomes, ok)])
    t = np.array([float(s["t"]) - SAMPLE_S for s in run.samples] or [0.0])
    cores = np.array([float(s["cores"]) for s in run.samples] or [0.0])
    return SimResult(
        arrival_s=arrival[order],
        finish_s=finish[order],
        status=outcome[order],
        pas=pas.astype(float)[order],
        norm_acc=np.full(arrival.size, np.nan),
        cost_t=t,
        cost_cores=cores,
        events=[],
        sla_s=float(pipeline.sla.seconds),
        horizon_s=float(seconds),
    )


def variant_changes(samples: list[dict]) -> int:
    """Times the variant in effect changed, any stage, between consecutive samples (what the report plots)."""
    seen = [{s: c["variant"] for s, c in x["config"].items()} for x in samples if x.get("config")]
    return sum(1 for a, b in zip(seen, seen[1:]) if any(a.get(s) != v for s, v in b.items()))


def summarise(run: LiveRun, pipeline: Any, seconds: float) -> dict:
    """`metrics.summarise` of the live run, plus what only a live run has: lost (no answer), re-plans that
    changed something and variant changes seen in effect."""
    s = metrics.summarise(live_result(run, pipeline, seconds), seconds, decisions=len(run.decisions), switches=0)
    s.update(
        lost=sum(1 for o in run.outcomes if o.status == 0),
        config_changes=sum(1 for d in run.decisions if d["changed"]),
        variant_changes=variant_changes(run.samples),
        failures=failure_reasons(run.outcomes),
    )
    return s


FAILURE_REASON_CHARS = 160  # of an error's text kept as its reason (the reasons a run saw, counted)


def failure_reasons(outcomes: list[Outcome]) -> dict[str, int]:
    """Per reason, how many requests got neither an answer nor a refusal (503): lost (status 0), dropped (504) or
    failed (5xx, 4xx), by their status and error text (its start: ids and numbers vary)."""
    reasons: dict[str, int] = {}
    for o in outcomes:
        if o.status in (200, 503):
            continue
        why = f"{o.status}: {' '.join(str(o.error).split())[:FAILURE_REASON_CHARS]}"
        reasons[why] = reasons.get(why, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


# --- the load's scale and the static contenders: what the host holds -----------------------------------------


def demo_runtime(pipeline: Any, profiles: Any, say: Callable[[str], None] = print) -> Any:
    """The runtime profile of this machine: the pipeline's `runtime.json` when it was measured on a machine like
    this one (same CPU model and cores), else measured now (`pipetune profile --runtime`, about a minute). The
    planner, the live runtime and the twin all go by it: one host model, measured where the demo runs."""
    from pipetune.runtime_profile import load_runtime_for
    from pipetune.serving.runtime_probe import cpu_model, host_cores, measure_runtime

    rt = load_runtime_for(pipeline)
    here = {"cpu_model": cpu_model(), "host_cores": host_cores()}
    if rt is not None and all(rt.conditions.get(k) == v for k, v in here.items()):
        return rt
    say(f"measuring the runtime on this machine ({here['cpu_model']}, {here['host_cores']:g} cores): "
        f"{'no runtime profile' if rt is None else 'the runtime profile was measured on another machine'}")  # fmt: skip
    return measure_runtime(pipeline, profiles, progress=say)


def twin_settings(pipeline: Any, runtime: Any, interval_s: float = DEMO_INTERVAL_S) -> Any:
    """The simulator settings of the live demo's twin beside the runtime profile (the rest of its host CPU comes
    from that profile, `simulate(..., runtime=...)`): pipetune's re-plan interval, the live drop deadline, the
    host's cores and a loading replica's core."""
    from pipetune.experiments.spec import Settings

    return Settings(
        interval_s=interval_s,
        drop_limit_s=2 * pipeline.sla.seconds,
        host_cores=runtime.host_cores,
        host_load_cores=LOADING_CORES,
    )


@dataclass(frozen=True)
class HostPlan:
    """A configuration and what it is worth on this host: the planner's plan at `rps` with its variants fixed,
    its PAS, and the rate the host's cores carry under it."""

    configs: dict[str, StageConfig]
    pas: float
    rps: float
    host_capacity_rps: float

    @property
    def holds(self) -> bool:
        return self.host_capacity_rps >= self.rps

    def variants(self) -> dict[str, str]:
        return {s: c.variant for s, c in self.configs.items()}


def host_plan(
    planning: Any, profiles: Any, rps: float, runtime: Any, variants: dict[str, str] | None
) -> HostPlan | None:
    """The planner's configuration at `rps` with `variants` fixed (None: the most accurate of every stage), the
    runtime's CPU on the host counted, or None when the planner finds none (caps, SLA or the host)."""
    from pipetune.optimizer import Infeasible, plan_pipeline
    from pipetune.optimizer.options import host_capacity_rps

    plan = plan_pipeline(planning, rps, policy="fa2-high", profiles=profiles, heavy=variants or {}, runtime=runtime)
    if isinstance(plan, Infeasible):
        return None
    cap = host_capacity_rps(planning, profiles, plan.configs, runtime)
    return HostPlan(dict(plan.configs), float(plan.pas), float(rps), cap)


def capacity(
    planning: Any, profiles: Any, runtime: Any, variants: dict[str, str] | None = None, tol: float = 0.02
) -> HostPlan:
    """The configuration of `variants` (None: the most accurate variant of every stage) at the highest rate it
    holds on this host: the planner's plan must exist (its SLA and caps) and the host's cores must carry the
    rate. Bisection on the rate, to `tol` relative."""
    lo, hi = 0.0, 1.0
    best = None
    while (p := host_plan(planning, profiles, hi, runtime, variants)) is not None and p.holds:
        lo, best, hi = hi, p, hi * 2
        if hi > 1e5:
            break
    while hi - lo > tol * max(hi, 1e-9):
        mid = (lo + hi) / 2
        p = host_plan(planning, profiles, mid, runtime, variants)
        if p is not None and p.holds:
            lo, best = mid, p
        else:
            hi = mid
    if best is None:
        which = "the accurate configuration" if variants is None else f"the configuration {variants}"
        raise PipetuneError(
            f"{which} holds no load on this host (its profile's latency at the SLA percentile exceeds the SLA, or "
            "one request costs more CPU than the host has): re-measure the profile on a quiet machine "
            "(`pipetune profile`, `pipetune profile --runtime`)"
        )
    return best


def fastest_variants(planning: Any, profiles: Any) -> dict[str, str]:
    """Per stage, the variant with the highest profiled throughput on one core at batch 1: the configuration
    that holds the most load on this host."""
    return {
        st.name: max(st.variants, key=lambda v: profiles.row(st.name, v.name, 1, 1).throughput_rps).name
        for st in planning.stages
    }


def best_static(planning: Any, profiles: Any, peak_rps: float, runtime: Any) -> HostPlan:
    """The most accurate static configuration that holds `peak_rps` on this host: every combination of variants
    by PAS, highest first, planned for the peak; the first the host carries. Refuses when none does."""
    stages = planning.stages
    combos = sorted(
        itertools.product(*[list(st.variants) for st in stages]),
        key=lambda vs: -math.prod(v.accuracy for v in vs),
    )
    for vs in combos:
        p = host_plan(planning, profiles, peak_rps, runtime, {st.name: v.name for st, v in zip(stages, vs)})
        if p is not None and p.holds:
            return p
    raise PipetuneError(
        f"no static configuration holds {peak_rps:.1f} rps on {runtime.host_cores:g} cores: lower --peak or "
        "--peak-share"
    )


# The demo load's shape: (share of its length, level) keypoints, smoothly joined. A trough; a shoulder the middle
# configuration holds, for a while; one spike only the fastest holds; the trough again: most of the time the load
# is well below its peak, which a configuration sized for the peak pays for in accuracy all along. Rises take
# tens of seconds (as the surges of IPA's bursty window do): an adapter that re-plans every few seconds and a
# variant that takes seconds to start must be able to follow them.
LOAD_SHAPE = (
    (0.0, "trough"), (0.1, "trough"), (0.22, "shoulder"), (0.45, "shoulder"), (0.6, "peak"), (0.68, "peak"),
    (0.82, "trough"), (1.0, "trough"),
)  # fmt: skip


def demo_rate(seconds: int, trough: float, peak: float, shoulder: float | None = None) -> np.ndarray:
    """The demo load's expected rate per second (LOAD_SHAPE): `trough`, `shoulder` (default: halfway) and
    `peak` rps at their keypoints, joined by smooth steps."""
    shoulder = (trough + peak) / 2 if shoulder is None else shoulder
    if not 0 <= trough <= shoulder <= peak:
        raise PipetuneError(
            f"the demo load needs 0 <= trough <= shoulder <= peak, got trough {trough:g}, shoulder {shoulder:g} "
            f"and peak {peak:g} rps"
        )
    level = {"trough": trough, "shoulder": shoulder, "peak": peak}
    at = np.array([share for share, _ in LOAD_SHAPE]) * seconds
    rate = np.array([level[name] for _, name in LOAD_SHAPE])
    t = np.arange(seconds, dtype=float) + 0.5
    k = np.clip(np.searchsorted(at, t, side="right") - 1, 0, at.size - 2)
    x = np.clip((t - at[k]) / np.maximum(at[k + 1] - at[k], 1e-9), 0.0, 1.0)
    smooth = x * x * (3 - 2 * x)
    return rate[k] + (rate[k + 1] - rate[k]) * smooth


def demo_load(seconds: int, trough: float, peak: float, seed: int = 0, shoulder: float | None = None) -> np.ndarray:
    """Per-second request counts: Poisson draws around `demo_rate`."""
    return np.random.default_rng(seed).poisson(demo_rate(seconds, trough, peak, shoulder)).astype(float)


# --- the verdict ---------------------------------------------------------------------------------------------


def who_won(summaries: dict[str, dict], contenders: tuple[str, ...] = CONTENDERS) -> list[str]:
    """One line per criterion: who won on accuracy served (highest), SLA violations, cores held and p99 (lowest),
    every contender's figure beside. A tie names every winner; a contender without the figure cannot win it."""
    crits = [
        ("accuracy served (PAS)", "pas_mean", max, lambda v: f"{v:.3f}"),
        ("SLA violations", "sla_violation_rate", min, lambda v: f"{100 * v:.2f}%"),
        ("cores held (mean)", "mean_cores", min, lambda v: f"{v:.2f}"),
        ("p99 latency", "latency_p99_s", min, lambda v: f"{v:.3f} s"),
    ]
    lines = []
    for label, key, best, fmt in crits:
        vals = {n: summaries[n].get(key) for n in contenders if n in summaries}
        have = {n: float(v) for n, v in vals.items() if v is not None and math.isfinite(float(v))}
        if not have:
            lines.append(f"{label}: no contender has a figure")
            continue
        top = best(have.values())
        winners = [n for n, v in have.items() if fmt(v) == fmt(top)]
        rest = ", ".join(f"{n} {fmt(v)}" if n in have else f"{n} –" for n, v in vals.items())
        lines.append(f"{label}: {' and '.join(winners)} won ({rest})")
    return lines


def fidelity_lines(fidelity: dict) -> list[str]:
    """The twin against pipetune's live run, whole run: p99 within FIDELITY_P99, violations within
    FIDELITY_VIOLATION_POINTS percentage points; each says met or missed."""
    a = fidelity["all"]
    lp, tp = a["p99_live_s"], a["p99_sim_s"]
    if lp is None or tp is None:
        p99 = f"twin fidelity, p99: live {fmt_s(lp)} vs twin {fmt_s(tp)}: cannot compare (no completed request)"
    else:
        rel = (tp - lp) / lp if lp > 0 else math.inf
        ok = abs(rel) <= FIDELITY_P99
        p99 = (f"twin fidelity, p99: live {lp:.3f} s vs twin {tp:.3f} s ({100 * rel:+.0f}%; goal within "
               f"{100 * FIDELITY_P99:.0f}%: {'met' if ok else 'MISSED'})")  # fmt: skip
    vl, vs = a["violations_live_pct"], a["violations_sim_pct"]
    ok = abs(vs - vl) <= FIDELITY_VIOLATION_POINTS
    viol = (f"twin fidelity, SLA violations: live {vl:.2f}% vs twin {vs:.2f}% ({vs - vl:+.2f} points; goal within "
            f"{FIDELITY_VIOLATION_POINTS:g}: {'met' if ok else 'MISSED'})")  # fmt: skip
    return [p99, viol]


def goal_lines(summaries: dict[str, dict]) -> list[str]:
    """The demo's goals for pipetune, each met or missed: variants changed at least GOAL_VARIANT_CHANGES times
    (the load has one burst), nothing lost and SLA violations within GOAL_VIOLATIONS; accuracy served at least
    GOAL_PAS_GAIN above the best static configuration's while Ray's autoscaling on the accurate variants violates
    the SLA."""
    p = summaries.get("pipetune")
    if p is None:
        return []

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    changes, viol = int(p.get("variant_changes") or 0), float(p["sla_violation_rate"])
    lines = [
        f"goal, pipetune trades variants: {changes} variant changes in one burst (goal >= {GOAL_VARIANT_CHANGES}: "
        f"{met(changes >= GOAL_VARIANT_CHANGES)})",
        f"goal, pipetune serves: {p.get('lost', 0)} lost, {100 * viol:.2f}% SLA violations (goal 0 lost and <= "
        f"{100 * GOAL_VIOLATIONS:g}%: {met(p.get('lost', 0) == 0 and viol <= GOAL_VIOLATIONS)})",
    ]
    if p.get("failures"):
        lines.append(
            "pipetune's requests neither answered nor refused, by reason: "
            + "; ".join(f"{n} x {why}" for why, n in p["failures"].items())
        )
    s, r = summaries.get("static-fast"), summaries.get("ray-autoscaling")
    if s is not None and p.get("pas_mean") is not None and s.get("pas_mean") is not None:
        gain = float(p["pas_mean"]) - float(s["pas_mean"])
        lines.append(
            f"goal, accuracy for the load: pipetune's PAS {gain:+.3f} over the best static configuration's (goal >= "
            f"+{GOAL_PAS_GAIN:g} at <= {100 * GOAL_VIOLATIONS:g}% violations: "
            f"{met(gain >= GOAL_PAS_GAIN and viol <= GOAL_VIOLATIONS)})"
        )
    if r is not None:
        rv = float(r["sla_violation_rate"])
        lines.append(
            f"goal, the accurate variants cannot hold the peak: Ray Serve autoscaling on them violates the SLA for "
            f"{100 * rv:.1f}% of requests ({met(rv > GOAL_VIOLATIONS)})"
        )
    return lines


# --- the report ----------------------------------------------------------------------------------------------


def _varying_stages(runs: list[LiveRun], pipeline: Any) -> list[str]:
    """Stages whose variant differs over time or between contenders (what the configuration panel shows)."""
    out = []
    for s in pipeline.stage_names:
        seen = {x["config"][s]["variant"] for r in runs for x in r.samples if s in x.get("config", {})}
        if len(seen) > 1:
            out.append(s)
    return out


def plot_report(
    runs: list[LiveRun],
    counts: np.ndarray,
    pipeline: Any,
    twin: Any,
    path: Path,
    capacities: dict[str, float] | None = None,
) -> None:
    """Six panels over time, every contender in each: load (offered, pipetune's prediction, the accurate
    configuration's capacity on this host), the variant in effect per stage, accuracy served, cores held, p99
    against the SLA (the twin's beside pipetune's) and SLA violations, per WINDOW_S window (`metrics.per_interval`).
    `capacities`: rates to draw on the load panel, by name (what a configuration holds on this host)."""
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(6, 1, figsize=(11, 16), sharex=True, gridspec_kw={"height_ratios": [1, 1.3, 1, 1, 1, 1]})
    seconds = float(counts.size)
    t = np.arange(counts.size)
    ax[0].plot(t, counts, color="0.6", lw=1, label="offered load (rps)")
    for (which, cap), ls in zip((capacities or {}).items(), (":", "-.", "--")):
        ax[0].axhline(cap, color="k", ls=ls, lw=1, label=f"{which} configuration's capacity here ({cap:.1f} rps)")
    sla = pipeline.sla.seconds
    # the configuration panel: one row per (stage, variant) that anyone used, variants in accuracy order
    varying = _varying_stages(runs, pipeline) or [
        max(pipeline.stage_names, key=lambda s: len(pipeline.stage(s).variants))
    ]
    rows: list[tuple[str, str]] = []
    for s in varying:
        rows += [(s, v.name) for v in sorted(pipeline.stage(s).variants, key=lambda v: v.accuracy)]
    y_of = {r: i for i, r in enumerate(rows)}
    offset = {r.name: (k - (len(runs) - 1) / 2) * 0.12 for k, r in enumerate(runs)}
    series: list[tuple[str, Any, LiveRun | None]] = [(r.name, live_result(r, pipeline, seconds), r) for r in runs]
    if twin is not None:
        series.append((TWIN, twin, None))
    for name, res, run in series:
        c = COLORS.get(name)
        pi = metrics.per_interval(res, WINDOW_S, seconds)
        mid = pi["t_start_s"] + WINDOW_S / 2
        has = pi["arrivals"] > 0
        style = ":" if run is None else "-"
        ax[2].plot(mid[has], pi["pas_mean"][has], "o" + style, ms=3, color=c, label=name)
        ax[4].plot(mid[has], pi["latency_p99_s"][has], "o" + style, ms=3, color=c, label=f"{name} p99")
        ax[5].plot(mid[has], 100 * pi["sla_violation_rate"][has], "o" + style, ms=3, color=c, label=name)
        if run is None:
            continue
        ax[3].step([s["t"] for s in run.samples], [s["cores"] for s in run.samples], where="post", color=c, label=name)
        for s in varying:
            pts = [(x["t"], y_of[(s, x["config"][s]["variant"])]) for x in run.samples if s in x.get("config", {})]
            if pts:
                ts, ys = zip(*pts)
                ax[1].step(ts, np.array(ys) + offset[name], where="post", color=c, lw=2,
                           label=name if s == varying[0] else None)  # fmt: skip
        if run.decisions:
            ax[0].plot([d["t"] for d in run.decisions], [d["predicted_rps"] for d in run.decisions], "s--", ms=4,
                       color=c, label=f"predicted load ({name})")  # fmt: skip
            for d in run.decisions:
                if d["changed"]:
                    ax[0].axvline(d["t"], color=c, alpha=0.2, lw=3)
    ax[1].set_yticks(range(len(rows)), [f"{s}: {v}" for s, v in rows], fontsize=8)
    ax[1].set_ylim(-0.6, len(rows) - 0.4)
    ax[4].axhline(sla, color="red", ls="--", label=f"SLA {sla:g} s")
    ax[0].set_ylabel("rps")
    ax[1].set_ylabel("variant in effect")
    ax[2].set_ylabel(f"accuracy served (PAS), per {WINDOW_S:g} s")
    ax[3].set_ylabel("cores held")
    ax[4].set_ylabel(f"p99 latency (s), per {WINDOW_S:g} s")
    ax[5].set_ylabel("SLA violations (%)")
    ax[5].set_xlabel("time (s)")
    for a in ax:
        a.legend(fontsize=7, loc="upper right")
        a.grid(alpha=0.3)
    fig.suptitle(f"{pipeline.name}: pipetune vs Ray Serve autoscaling (accurate variants) vs the best static\n"
                 "configuration, live on Ray (one burst); dotted: the simulator twin of pipetune")  # fmt: skip
    save_figure(fig, path)


SUMMARY_KEYS = ("requests", "completed", "refused", "dropped", "failed", "lost", "late", "sla_violation_rate",
                "latency_p50_s", "latency_p99_s", "pas_mean", "mean_cores", "config_changes", "variant_changes")  # fmt: skip


def write_html(path: Path, png: Path, summaries: dict, notes: list[str], verdict: list[str] | None = None) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "–" if not math.isfinite(v) else f"{v:.4g}"
        return "–" if v is None else str(v)

    rows = "".join(
        f"<tr><th>{k}</th>" + "".join(f"<td>{fmt(s.get(k))}</td>" for s in summaries.values()) + "</tr>"
        for k in SUMMARY_KEYS
    )
    img = base64.b64encode(png.read_bytes()).decode()
    html = (
        "<!doctype html><meta charset='utf-8'><title>pipetune live demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:3px 10px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(odd){background:#f4f4f4}</style>"
        "<h1>pipetune live demo</h1>"
        + ("<h2>Who won</h2><ul>" + "".join(f"<li>{v}</li>" for v in verdict) + "</ul>" if verdict else "")
        + "<table><tr><th></th>"
        + "".join(f"<th>{n}</th>" for n in summaries)
        + f"</tr>{rows}</table><ul>"
        + "".join(f"<li>{n}</li>" for n in notes)
        + f"</ul><img style='width:100%' src='data:image/png;base64,{img}'>"
    )
    path.write_text(html, encoding="utf-8")


def run_live_demo(
    out: Path,
    seconds: int = DEMO_SECONDS,
    peak_share: float = PEAK_SHARE,
    trough_share: float = TROUGH_SHARE,
    peak: float | None = None,
    trough: float | None = None,
    interval_s: float = DEMO_INTERVAL_S,
    num_cpus: int = 16,
    port: int = 8000,
    seed: int = 0,
    contenders: tuple[str, ...] = CONTENDERS,
    say: Callable[[str], None] = print,
) -> dict:
    """The whole demo: scale the load to this host, serve it live with every contender (one Ray for all), run
    the twin, write the report. The load (`demo_load`) peaks at PEAK_OVER_MIDDLE x what a middle configuration
    holds on this host (the most accurate one holding half the fastest's rate), at most `peak_share` x what the
    fastest holds, so that only trading accuracy holds it, and troughs at `trough_share` x what the accurate
    configuration holds; `peak` / `trough` (rps) replace either. pipetune re-plans every `interval_s`."""
    import os

    import ray

    from pipetune.experiments.one_run import simulate
    from pipetune.profiles import load_profiles
    from pipetune.serving.backend import INGRESS_CPUS
    from pipetune.serving.session import initial_configs, planning_pipeline
    from pipetune.spec import example_path, load_pipeline
    from pipetune.workloads import arrival_times

    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown or not contenders:
        raise PipetuneError(f"contenders {list(contenders)}: choose among {list(CONTENDERS)}")
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(example_path("text"))
    profiles = load_profiles(pipe)
    planning = planning_pipeline(pipe, float(num_cpus) - 1)
    runtime = demo_runtime(pipe, profiles, say)
    phys = runtime.host_cores
    # What configurations hold once serving (no switch reserve: a static configuration never starts a replica);
    # pipetune plans with the reserve (runtime), so that a switch's new replica has a core to start on.
    steady = runtime.without_reserve()
    accurate = capacity(planning, profiles, steady)
    fastest = capacity(planning, profiles, steady, fastest_variants(planning, profiles))
    middle = capacity(planning, profiles, steady, best_static(planning, profiles, 0.5 * fastest.rps, steady).variants())
    if peak is None:
        peak = peak_share * fastest.rps
        if middle.variants() != fastest.variants():
            peak = min(peak, PEAK_OVER_MIDDLE * middle.rps)
    peak = float(peak)
    trough = float(trough) if trough is not None else trough_share * accurate.rps
    shoulder = min(max(SHOULDER_SHARE * middle.rps, trough), peak)
    counts = demo_load(seconds, trough, peak, seed, shoulder)
    offsets = arrival_times(counts, process="poisson", seed=seed)
    say(f"load: on {phys:g} cores the accurate configuration ({', '.join(accurate.variants().values())}) holds "
        f"{accurate.rps:.1f} rps, a middle one ({', '.join(middle.variants().values())}) {middle.rps:.1f}, the "
        f"fastest ({', '.join(fastest.variants().values())}) {fastest.rps:.1f}; the load troughs at {trough:.1f} "
        f"rps, holds a shoulder at {shoulder:.1f} and peaks at {peak:.1f} ({peak / accurate.rps:.1f}x the accurate "
        "configuration's capacity); "
        f"{len(offsets)} requests in {seconds} s; pipetune plans with {runtime.switch_reserve_cores:g} core kept "
        "free for replicas starting")  # fmt: skip
    static = best_static(planning, profiles, float(counts.max()), steady)
    # The contenders that never switch a variant (Ray's autoscaling, the static configuration) are served without
    # warm variants: holding them would only slow every replica's start (Ray's scale-out above all).
    cold = without_warm_variants(pipe)
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    say(f"local Ray with {num_cpus} logical CPUs on {phys:g} physical cores: the planner counts the physical ones")
    runs: list[LiveRun] = []
    ray.init(num_cpus=num_cpus, namespace="pipetune-demo", log_to_driver=False, include_dashboard=False)
    try:
        n = len(contenders)
        for k, name in enumerate(contenders, 1):
            if name == "pipetune":
                # the plan the twin starts from too: the first interval's busiest second
                first = float(counts[: max(1, int(round(interval_s)))].max())
                initial = initial_configs(planning, profiles, first, runtime=runtime)
                say(f"[bold]{k}/{n + 1} pipetune[/] (re-plans every {interval_s:g} s)")
                runs.append(live_run(name, pipe, planning, profiles, offsets, seconds, initial, port=port,
                                     interval_s=interval_s, runtime=runtime,
                                     say=say))  # fmt: skip
            elif name == "ray-autoscaling":
                # Ray Serve's autoscaling on the accurate variants, each stage free to grow to its fair share of
                # the CPUs the planner may use.
                # (the accurate configuration at the highest rate it holds when the planner has none at the first
                # load: a plan's SLA terms are not monotone in the load, e.g. batch formation falls as it rises)
                start = host_plan(planning, profiles, float(counts[:10].max()), runtime, None) or accurate
                # (never below what the first plan starts with: Ray refuses initial replicas above the maximum)
                per_stage = max(
                    1,
                    int(planning.caps.max_total_cores // len(pipe.stage_names)),
                    *(c.replicas for c in start.configs.values()),
                )
                autoscale = {"min_replicas": 1, "max_replicas": per_stage, "target_ongoing_requests": 2,
                             "upscale_delay_s": 3, "downscale_delay_s": 30}  # fmt: skip
                say(
                    f"[bold]{k}/{n + 1} Ray Serve autoscaling[/] (accurate variants, 1..{per_stage} replicas per stage)"
                )
                runs.append(live_run(name, cold, planning, profiles, offsets, seconds, start.configs, port=port,
                                     adapt=False, autoscale=autoscale, runtime=runtime, say=say))  # fmt: skip
            else:
                say(f"[bold]{k}/{n + 1} the best static configuration for the peak[/] "
                    f"({', '.join(static.variants().values())}, PAS {static.pas:.3f})")  # fmt: skip
                runs.append(live_run(name, cold, planning, profiles, offsets, seconds, static.configs, port=port,
                                     adapt=False, runtime=runtime, say=say))  # fmt: skip
    finally:
        ray.shutdown()
    say(f"[bold]{len(contenders) + 1}/{len(contenders) + 1} the simulator twin[/] of pipetune (same arrivals, "
        "profiles, policy and predictor)")  # fmt: skip
    # The twin shares the physical cores the way the live run does (SimSettings.host_cores: processor sharing
    # among every busy replica and loading replica) and charges the CPU measured outside the models.
    twin_out = simulate(planning, counts, policy="ipa", predictor="default", seed=seed, profiles=profiles,
                        settings=twin_settings(pipe, runtime, interval_s), runtime=runtime)  # fmt: skip
    twin = metrics.summarise(twin_out.result, float(seconds), decisions=len(twin_out.decisions))
    twin["mean_cores"] += INGRESS_CPUS  # the simulator holds no ingress; live cores held count its core
    summaries = {run.name: summarise(run, pipe, seconds) for run in runs}
    summaries[TWIN] = twin
    live = {r.name: r for r in runs}
    fidelity = compare_with_twin(live["pipetune"], twin_out.result, counts, pipe) if "pipetune" in live else None
    verdict = (
        who_won(summaries, tuple(r.name for r in runs))
        + goal_lines(summaries)
        + (fidelity_lines(fidelity) if fidelity else [])
    )
    png = out / "live-demo.png"
    plot_report(runs, counts, pipe, twin_out.result, png,
                capacities={"accurate": accurate.rps, "fastest": fastest.rps})  # fmt: skip
    notes = [
        f"text pipeline, SLA p{pipe.sla.percentile:g} {pipe.sla.seconds:g} s; one burst in {seconds} s (trough "
        f"{trough:.1f} rps, shoulder {shoulder:.1f} rps, peak {peak:.1f} rps = {peak / accurate.rps:.1f}x the {accurate.rps:.1f} rps the accurate "
        f"configuration holds on this host and {100 * peak / fastest.rps:.0f}% of the {fastest.rps:.1f} rps the "
        f"fastest holds; {len(offsets)} requests, Poisson arrivals); pipetune re-plans every {interval_s:g} s; "
        f"local Ray with {num_cpus} logical CPUs on {phys:g} physical cores.",
        "contenders: pipetune (the adapter); Ray Serve autoscaling on the accurate variants "
        f"({', '.join(accurate.variants().values())}); the best static configuration that holds the peak "
        f"({', '.join(static.variants().values())}).",
        "SLA violation = refused (503) + dropped (504) + failed + completed after the SLA.",
        f"the host model (planner, live adapter and twin: this machine's runtime profile, "
        f"{runtime.conditions.get('how', 'measured')}): {runtime.request_cpu_s * 1e3:.2f} ms of ingress CPU per "
        f"request, {runtime.call_cpu_s * 1e3:.2f} ms per remote stage call, {runtime.side_cpu_s * 1e3:.2f} ms per "
        f"request beside its path, processor sharing of {phys:g} cores among the busy and the loading replicas. "
        "It does not model the ingress being one process, nor the OS scheduler.",
    ]
    write_html(out / "live-demo.html", png, summaries, notes, verdict)
    # per second, per live run: cores held and the configuration in effect (what the PNG's panels plot)
    result = {"summaries": summaries, "fidelity": fidelity, "verdict": verdict, "counts": counts.tolist(),
              "load": {"peak_rps": peak, "trough_rps": trough, "shoulder_rps": shoulder, "accurate_capacity_rps": accurate.rps,
                       "fastest_capacity_rps": fastest.rps, "accurate": accurate.variants(),
                       "fastest": fastest.variants(), "static": static.variants(), "host_cores": phys,
                       "interval_s": interval_s, "runtime": runtime.to_dict()},
              "decisions": live["pipetune"].decisions if "pipetune" in live else [],
              "samples": {r.name: r.samples for r in runs}}  # fmt: skip
    (out / "live-demo.json").write_text(jsonio.dumps(result, indent=1))
    return result


LOW_LOAD_RPS = 10.0


def _subset(res: Any, mask: np.ndarray) -> Any:
    from dataclasses import replace

    return replace(res, arrival_s=res.arrival_s[mask], finish_s=res.finish_s[mask], status=res.status[mask],
                   pas=res.pas[mask], norm_acc=res.norm_acc[mask])  # fmt: skip


def compare_with_twin(live: LiveRun, sim: Any, counts: np.ndarray, pipeline: Any) -> dict:
    """p99 and SLA-violation rate (`metrics.summarise`), live vs simulated (`sim`: the twin's SimResult), over
    the whole run and over the seconds of low and high offered load (requests by the second they were sent /
    arrived)."""
    seconds = float(np.asarray(counts).size)
    rl = live_result(live, pipeline, seconds)
    low = np.asarray(counts) <= LOW_LOAD_RPS

    def part(ml: np.ndarray, ms: np.ndarray) -> dict:
        a, b = metrics.summarise(_subset(rl, ml), seconds), metrics.summarise(_subset(sim, ms), seconds)
        return {
            "requests_live": a["requests"],
            "requests_sim": b["requests"],
            "p99_live_s": _finite(a["latency_p99_s"]),
            "p99_sim_s": _finite(b["latency_p99_s"]),
            "violations_live_pct": 100 * a["sla_violation_rate"],
            "violations_sim_pct": 100 * b["sla_violation_rate"],
        }

    in_low_live = low[np.clip(rl.arrival_s.astype(int), 0, low.size - 1)]
    in_low_sim = low[np.clip(np.asarray(sim.arrival_s).astype(int), 0, low.size - 1)]
    return {
        "all": part(np.ones_like(in_low_live), np.ones_like(in_low_sim)),
        "low_load": part(in_low_live, in_low_sim),
        "high_load": part(~in_low_live, ~in_low_sim),
        "low_load_rps": LOW_LOAD_RPS,
    }


def fmt_s(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.3f} s"


def _finite(x: Any) -> Any:
    from pipetune.jsonio import finite

    return finite(x)
