"""The live demo (`make demo`, `pipetune demo`): the text pipeline on a local Ray, one compressed bursty load,
served twice — by pipetune (the adapter re-plans every interval) and by Ray Serve's own autoscaling on fixed
variants (what a Ray user gets without pipetune) — plus the simulator twin on the same arrivals. The report
(PNG + HTML + JSON) shows load and predicted load, configuration changes, accuracy served, cores held, p99
against the SLA and SLA violations, and the twin's p99 and violation rate beside the live ones (fidelity).

Metric definitions are those of `pipetune.metrics`: an SLA violation is a request refused (503), dropped
(504), failed, or completed after the SLA; accuracy served is the product of the accuracies of the variants
that served a request (PAS); cores held count every replica Ray reports, starting and stopping included, and
the ingress.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.configs import StageConfig
from pipetune.loadgen.client import Outcome, open_loop_at
from pipetune.metrics import (
    COMPLETED,
    HTTP_OK,
    core_seconds,
    outcome_counts,
    outcomes_of_http,
    served_pas,
    sla_masks,
)

SAMPLE_S = 1.0


@dataclass
class LiveRun:
    name: str
    outcomes: list[Outcome]  # planned times are seconds from the run's start
    samples: list[dict]  # every SAMPLE_S: t, cores held, configuration in effect
    decisions: list[dict] = field(default_factory=list)  # pipetune only: t, observed, predicted, changed


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
    autoscale: dict | None = None,
    interval_s: float = 10.0,
    predictor: str = "default",
    body: Callable[[int], dict] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> LiveRun:
    """Serve `offsets_s` (arrival times in seconds) once, with the adapter or under Ray's autoscaling."""
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.session import run_adapter

    be = RayServeBackend(pipeline, initial, profiles, port=port, autoscale=autoscale)
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
        if autoscale is None:

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


def summarise(run: LiveRun, pipeline: Any, seconds: float) -> dict:
    st = np.array([o.status for o in run.outcomes])
    lat = np.array([o.latency_s for o in run.outcomes])
    outcome = outcomes_of_http(st)
    counts = outcome_counts(outcome)
    ok = outcome == COMPLETED
    late, violation = sla_masks(outcome, lat, pipeline.sla.seconds)
    n = len(run.outcomes)
    pas = [served_pas(pipeline, o.variants) for o, k in zip(run.outcomes, ok) if k]
    # each sample holds the cores of the SAMPLE_S before it; cost counts them over the run's [0, seconds)
    t = np.array([s["t"] for s in run.samples], dtype=float) - SAMPLE_S
    cs = (
        float(core_seconds(t, np.array([s["cores"] for s in run.samples], dtype=float), np.array([0.0, seconds]))[0])
        if t.size
        else None
    )
    return {
        "requests": n,
        "completed": counts["completed"],
        "refused": counts["refused"],
        "dropped": counts["dropped"],
        "failed": counts["failed"],
        "lost": int((st == 0).sum()),
        "late": int(late.sum()),
        "sla_violation_rate": int(violation.sum()) / n if n else 0.0,
        "latency_p50_s": float(np.percentile(lat[ok], 50)) if ok.any() else None,
        "latency_p99_s": float(np.percentile(lat[ok], 99)) if ok.any() else None,
        "pas_mean": float(np.nanmean(pas)) if pas else None,
        "mean_cores": cs / seconds if cs is not None and seconds > 0 else None,
        "core_seconds": cs,
        "config_changes": sum(1 for d in run.decisions if d["changed"]),
        "duration_s": seconds,
    }


def plot_report(runs: list[LiveRun], counts: np.ndarray, pipeline: Any, twin: Any, path: Path) -> None:
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(5, 1, figsize=(11, 13), sharex=True)
    t = np.arange(counts.size)
    ax[0].plot(t, counts, color="0.6", lw=1, label="offered load (rps)")
    colors = {"pipetune": "tab:blue", "ray-autoscaling": "tab:orange"}
    sla = pipeline.sla.seconds
    for run in runs:
        c = colors.get(run.name)
        sec = np.array([int(o.planned) for o in run.outcomes])
        st = np.array([o.status for o in run.outcomes])
        lat = np.array([o.latency_s for o in run.outcomes])
        violation = sla_masks(outcomes_of_http(st), lat, sla)[1]
        w = 10
        edges = np.arange(0, counts.size + w, w)
        mid, p99, viol, pas = [], [], [], []
        for a, b in zip(edges[:-1], edges[1:]):
            m = (sec >= a) & (sec < b)
            if not m.any():
                continue
            okm = m & (st == HTTP_OK)
            mid.append((a + b) / 2)
            p99.append(np.percentile(lat[okm], 99) if okm.any() else np.nan)
            viol.append(violation[m].mean())
            pas.append(
                np.nanmean([served_pas(pipeline, o.variants) for o, k in zip(run.outcomes, okm) if k])
                if okm.any()
                else np.nan
            )
        ax[1].plot(mid, p99, "o-", ms=3, color=c, label=f"{run.name} p99")
        ax[2].plot(mid, np.array(viol) * 100, "o-", ms=3, color=c, label=run.name)
        ax[3].plot(mid, pas, "o-", ms=3, color=c, label=run.name)
        ax[4].step(
            [s["t"] for s in run.samples], [s["cores"] for s in run.samples], where="post", color=c, label=run.name
        )
        if run.decisions:
            ax[0].plot([d["t"] for d in run.decisions], [d["predicted_rps"] for d in run.decisions], "s--", ms=4,
                       color=c, label="predicted load (pipetune)")  # fmt: skip
            for d in run.decisions:
                if d["changed"]:
                    ax[0].axvline(d["t"], color=c, alpha=0.25, lw=3)
                    ax[0].text(d["t"], ax[0].get_ylim()[1] * 0.9, ",".join(d["changed"]), fontsize=7, rotation=90)
    if twin is not None:
        ax[1].axhline(twin["latency_p99_s"], color="tab:green", ls=":", label="simulator twin p99 (whole run)")
    ax[1].axhline(sla, color="red", ls="--", label=f"SLA {sla:g} s")
    ax[0].set_ylabel("rps")
    ax[1].set_ylabel("p99 latency (s), per 10 s")
    ax[2].set_ylabel("SLA violations (%)")
    ax[3].set_ylabel("accuracy served (PAS)")
    ax[4].set_ylabel("cores held")
    ax[4].set_xlabel("time (s)")
    for a in ax:
        a.legend(fontsize=8, loc="upper right")
        a.grid(alpha=0.3)
    fig.suptitle(f"{pipeline.name}: pipetune vs Ray Serve autoscaling, live on Ray (bursty, compressed)")
    save_figure(fig, path)


def write_html(path: Path, png: Path, summaries: dict, notes: list[str]) -> None:
    keys = ["requests", "completed", "refused", "dropped", "failed", "lost", "late", "sla_violation_rate",
            "latency_p50_s", "latency_p99_s", "pas_mean", "mean_cores", "config_changes"]  # fmt: skip

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "–" if v is None else str(v)

    rows = "".join(
        f"<tr><th>{k}</th>" + "".join(f"<td>{fmt(s.get(k))}</td>" for s in summaries.values()) + "</tr>" for k in keys
    )
    img = base64.b64encode(png.read_bytes()).decode()
    html = (
        "<!doctype html><meta charset='utf-8'><title>pipetune live demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:3px 10px;text-align:right}"
        "table{border-collapse:collapse}tr:nth-child(odd){background:#f4f4f4}</style>"
        "<h1>pipetune live demo</h1><table><tr><th></th>"
        + "".join(f"<th>{n}</th>" for n in summaries)
        + f"</tr>{rows}</table><ul>"
        + "".join(f"<li>{n}</li>" for n in notes)
        + f"</ul><img style='width:100%' src='data:image/png;base64,{img}'>"
    )
    path.write_text(html, encoding="utf-8")


def run_live_demo(
    out: Path,
    seconds: int = 180,
    peak: float = 24.0,
    num_cpus: int = 16,
    port: int = 8000,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> dict:
    import os

    import ray

    from pipetune.experiments.one_run import simulate
    from pipetune.profiles import load_profiles
    from pipetune.serving.backend import INGRESS_CPUS
    from pipetune.serving.session import initial_configs, planning_pipeline
    from pipetune.spec import example_path, load_pipeline
    from pipetune.workloads import arrival_times, synthetic_pattern

    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(example_path("text"))
    profiles = load_profiles(pipe)
    # The bursty pattern at its natural length, compressed in time to `seconds` (its shape kept).
    full = synthetic_pattern("bursty", seconds=1200, seed=seed, peak=peak)
    counts = np.array([full[int(i * 1200 / seconds) : int((i + 1) * 1200 / seconds)].mean() for i in range(seconds)])
    counts = np.random.default_rng(seed).poisson(counts).astype(float)
    offsets = arrival_times(counts, process="poisson", seed=seed)
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    phys = os.cpu_count() or 1
    say(f"local Ray with {num_cpus} logical CPUs on {phys} physical cores: replicas share the cores, so they "
        "serve slower than their profile (measured one at a time)")  # fmt: skip
    ray.init(num_cpus=num_cpus, namespace="pipetune-demo", log_to_driver=False, include_dashboard=False)
    try:
        planning = planning_pipeline(pipe, float(num_cpus) - 1)
        initial = initial_configs(planning, profiles, float(counts[:10].max()))
        say(f"[bold]1/3 pipetune[/] ({seconds} s, {len(offsets)} requests, peak {counts.max():.0f} rps)")
        live = live_run("pipetune", pipe, planning, profiles, offsets, seconds, initial, port=port, say=say)
        # Ray Serve's autoscaling on the variants pipetune started with (one fixed variant per stage), sized
        # so every stage may grow to its fair share of the same CPUs.
        per_stage = max(1, int(planning.caps.max_total_cores // len(pipe.stage_names)))
        autoscale = {"min_replicas": 1, "max_replicas": per_stage, "target_ongoing_requests": 2,
                     "upscale_delay_s": 3, "downscale_delay_s": 30}  # fmt: skip
        say(f"[bold]2/3 Ray Serve autoscaling[/] (fixed variants, 1..{per_stage} replicas per stage)")
        auto = live_run("ray-autoscaling", pipe, planning, profiles, offsets, seconds, initial, port=port,
                        autoscale=autoscale, say=say)  # fmt: skip
    finally:
        ray.shutdown()
    say("[bold]3/3 the simulator twin[/] (same arrivals, profiles, policy and predictor)")
    # The twin shares the physical cores the way the live run does (SimSettings.host_cores: processor sharing
    # among every busy replica and loading replica) and charges the CPU measured outside the models.
    twin_out = simulate(planning, counts, policy="ipa", predictor="default", seed=seed, profiles=profiles,
                        settings=twin_settings(pipe, phys))  # fmt: skip
    twin = {k: twin_out.summary[k] for k in ("requests", "completed", "sla_violation_rate", "latency_p50_s",
                                             "latency_p99_s", "pas_mean", "mean_cores")}  # fmt: skip
    twin["mean_cores"] += INGRESS_CPUS  # the simulator holds no ingress; live cores held count its core
    summaries = {"pipetune": summarise(live, pipe, seconds), "ray-autoscaling": summarise(auto, pipe, seconds),
                 "simulator twin": twin}  # fmt: skip
    fidelity = compare_with_twin(live, twin_out.result, counts, pipe.sla.seconds)
    lp, tp = fidelity["all"]["p99_live_s"], fidelity["all"]["p99_sim_s"]
    png = out / "live-demo.png"
    plot_report([live, auto], counts, pipe, twin, png)
    notes = [
        f"text pipeline, SLA p{pipe.sla.percentile:g} {pipe.sla.seconds:g} s; bursty pattern compressed to {seconds} s "
        f"(peak {counts.max():.0f} rps, {len(offsets)} requests, Poisson arrivals); local Ray with {num_cpus} logical "
        f"CPUs on {phys} physical cores.",
        "SLA violation = refused (503) + dropped (504) + failed + completed after the SLA.",
        f"simulator fidelity: live p99 {fmt_s(lp)} vs simulated {fmt_s(tp)}; violations "
        f"{fidelity['all']['violations_live_pct']:.1f}% live vs {fidelity['all']['violations_sim_pct']:.1f}% "
        f"simulated. In seconds offered <= {LOW_LOAD_RPS:g} rps: p99 {fmt_s(fidelity['low_load']['p99_live_s'])} live vs "
        f"{fmt_s(fidelity['low_load']['p99_sim_s'])} simulated. The profile was measured one model at a time on "
        f"idle cores; live, Ray's HTTP proxy, the ingress and every replica share the {phys} physical cores. The "
        f"twin models that sharing (processor sharing of {phys} cores among the busy and the loading replicas), "
        f"{HOST_OVERHEAD_S * 1e3:g} ms of ingress + proxy CPU per request, run on the shared cores before the "
        f"first stage, {HOST_HOP_S * 1e3:g} ms of replica CPU per item per stage (the handle hop) and "
        f"{HOST_SIDE_S * 1e3:g} ms per request beside its path (the load generator, Ray's own processes). It "
        "does not model the proxy and the ingress each being one process (at most one core, queueing behind "
        "it), a Ray worker's start before the model loads, nor the OS scheduler (time slices, not ideal "
        "sharing).",
    ]
    write_html(out / "live-demo.html", png, summaries, notes)
    # per second, per live run: cores held and the configuration in effect (what the PNG's cores panel plots)
    samples = {run.name: run.samples for run in (live, auto)}
    result = {"summaries": summaries, "fidelity": fidelity, "counts": counts.tolist(),
              "decisions": live.decisions, "samples": samples}  # fmt: skip
    (out / "live-demo.json").write_text(jsonio.dumps(result, indent=1))
    return result


LOW_LOAD_RPS = 10.0
# CPU the live runtime spends outside the models on the demo's host, for the twin. Measured 2026-12-07 on the
# 2-vCPU demo VM, text pipeline (4 stages, batch 1, one replica each) at 20 rps Poisson for 40 s, CPU time per
# process from /proc (`benchmarks/serving_cpu.py`; repeat runs differ by ~15%): the ingress 14.0 ms and Ray's HTTP proxy 6.1 ms per request (HOST_OVERHEAD_S: their
# sum); the replicas of lang, keywords and merge 3.4, 4.5 and 3.1 ms per item, less their profiled model time
# (0.13, 0.56, ~0 ms): about 3.3 ms per item per stage (HOST_HOP_S); beside the requests' path, about 8 ms per
# request went to the load generator (2.9), Ray's controller (1.6), GCS (1.3) and its other processes (HOST_SIDE_S).
# A loading replica is one Python process importing and loading its model: one core (HOST_LOAD_CORES) for its
# profiled load time.
HOST_OVERHEAD_S = 0.020
HOST_HOP_S = 0.0033
HOST_SIDE_S = 0.008
HOST_LOAD_CORES = 1.0


def twin_settings(pipeline: Any, host_cores: float) -> Any:
    """The simulator settings of the live demo's twin: the live drop deadline, the shared host and its CPU."""
    from pipetune.experiments.spec import Settings

    return Settings(drop_limit_s=2 * pipeline.sla.seconds, host_cores=float(host_cores),
                    host_overhead_s=HOST_OVERHEAD_S, host_hop_s=HOST_HOP_S, host_side_s=HOST_SIDE_S,
                    host_load_cores=HOST_LOAD_CORES)  # fmt: skip


def compare_with_twin(live: LiveRun, sim: Any, counts: np.ndarray, sla_s: float) -> dict:
    """p99 and SLA-violation rate, live vs simulated, over the whole run and over the seconds of low and high
    offered load (requests by the second they were sent / arrived)."""
    sec_live = np.array([int(max(0.0, o.planned)) for o in live.outcomes])
    st = np.array([o.status for o in live.outcomes])
    lat = np.array([o.latency_s for o in live.outcomes])
    sec_sim = sim.arrival_s.astype(int)
    sim_lat = sim.finish_s - sim.arrival_s
    sim_ok = sim.status == COMPLETED
    viol_live = sla_masks(outcomes_of_http(st), lat, sla_s)[1]
    viol_sim = sla_masks(sim.status, sim_lat, sla_s)[1]
    low = np.asarray(counts) <= LOW_LOAD_RPS

    def part(mask_live: np.ndarray, mask_sim: np.ndarray) -> dict:
        ok = mask_live & (st == HTTP_OK)
        sok = mask_sim & sim_ok
        nl, ns = int(mask_live.sum()), int(mask_sim.sum())
        vl = int((mask_live & viol_live).sum())
        vs = int((mask_sim & viol_sim).sum())
        return {
            "requests_live": nl,
            "requests_sim": ns,
            "p99_live_s": float(np.percentile(lat[ok], 99)) if ok.any() else None,
            "p99_sim_s": float(np.percentile(sim_lat[sok], 99)) if sok.any() else None,
            "violations_live_pct": 100 * vl / nl if nl else 0.0,
            "violations_sim_pct": 100 * vs / ns if ns else 0.0,
        }

    in_low_live = low[np.clip(sec_live, 0, low.size - 1)]
    in_low_sim = low[np.clip(sec_sim, 0, low.size - 1)]
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
