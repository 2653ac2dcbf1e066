"""`pipetune bench serving`: what the live runtime itself costs and how fast it re-configures, on no-op models.

Figures (one JSON object):
* `hop_overhead_ms`  — one call through a Ray Serve handle to a no-op stage replica (p50, p99): what each stage
                       hop adds to a request, bounded below by Ray's actor RPC (at batch size 1 a replica
                       skips the `@serve.batch` queue, so the rest is its thread pool);
                       `peer_p50`/`peer_p99` are a bare Ray Serve deployment's, measured in interleaved rounds
                       in the same run, and `ratio_*` ours over the peer's;
* `noop_max_rps`     — the highest open-loop rate a 2-stage no-op pipeline sustains through the V2 endpoint
                       (delivered >= 98% of offered, none refused, p99 <= 200 ms); bounded by the CPU the
                       ingress (its HTTP front included) and the two stage calls burn per request;
* `apply_s`          — decision to applied for a batch change (in place, user_config), a replica added (in
                       place, num_replicas; includes starting a Ray worker) and a variant switch (the new
                       generation's start + load + warm-up, then the route move); `variant_after_ready_s` is
                       the route move alone: from the new generation reported RUNNING to the first response
                       it served;
* `loadgen`          — the load generator against a trivial local V2 server (`pipetune.loadgen`);
* `lost`             — requests of the open loop running through the apply measurements that got no HTTP
                       answer or an error other than 503 (refused) or 504 (goal: 0); `dropped` counts the 504s
                       (dropped at the SLA deadline: answered, an SLA violation); `not_served_detail` lists
                       when and why for both.

`run_text_benchmark` (the `text` object): the bundled text pipeline, for pipetune, the same runtime with its
request-path changes off ("before") and the idiomatic Ray Serve DAG ("peer", `tooling/serving_peer.py`), each
serving the same configuration on the same Ray in the same run: CPU ms per request by role and the highest rate
held (`max_rps`, doubling then bisection), with their ratios.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipetune import metrics
from pipetune.configs import StageConfig
from pipetune.models.base import ModelAdapter


class NoOp(ModelAdapter):
    """Returns its inputs: a stage that costs nothing but the runtime's own overhead."""

    name = "noop"

    def __init__(self, tag: str = "noop"):
        self.tag = tag

    def load(self) -> None:
        pass

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        return list(batch)

    def sample_inputs(self, n: int) -> list[Any]:
        return ["x" * 16 for _ in range(n)]


def noop_pipeline(stages: int = 2) -> Any:
    from pipetune.spec import parse_pipeline

    names = [f"s{i}" for i in range(stages)]
    model = {"adapter": "pipetune.tooling.serving_bench:NoOp"}
    return parse_pipeline(
        {
            "name": "noop",
            "sla": {"seconds": 0.2},
            "caps": {"batch_sizes": [1, 8], "cores": [1], "max_replicas": 4},
            "stages": [
                {"name": n, "variants": [{"name": "a", "accuracy": 1.0, "model": model},
                                         {"name": "b", "accuracy": 1.0, "model": {**model, "params": {"tag": "b"}}}]}
                for n in names
            ],
            "edges": [{"from": a, "to": b} for a, b in zip(names, names[1:])],
        }
    )  # fmt: skip


PEER_APP = "hop-peer"
HOP_ROUNDS = 5


def _pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, float), q)) if len(xs) else float("nan")


def run_serving_benchmark(
    num_cpus: int = 8,
    port: int = 8765,
    rates: Sequence[float] = (40, 60, 80, 90, 100, 110, 120, 140),
    step_s: float = 8.0,
    hops: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> dict:
    import threading

    import ray
    from ray import serve

    from pipetune.loadgen.client import Outcome, open_loop
    from pipetune.protocol import encode_request
    from pipetune.serving.backend import RayServeBackend

    say = progress or (lambda _m: None)
    pipe = noop_pipeline(2)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, namespace="pipetune-bench", log_to_driver=False, include_dashboard=False)
    init = {s: StageConfig("a", 1, 1, 1) for s in pipe.stage_names}
    # The peer: a bare Ray Serve deployment (no batch queue, no thread pool), started before the backend with the
    # same HTTP options, so that a hop through our stage replica is measured against Ray's own in the same run.
    serve.start(proxy_location="Disabled")  # the peer is called through its handle; the ingress serves HTTP itself

    @serve.deployment(name="peer")
    class _Peer:
        async def __call__(self, item: Any) -> Any:
            return item

    serve.run(_Peer.bind(), name=PEER_APP, route_prefix=None)  # type: ignore[attr-defined]  # a Deployment at run time
    be = RayServeBackend(pipe, init, None, port=port)
    url = f"http://127.0.0.1:{port}/v2/models/noop/infer"
    body = encode_request(["x" * 16], be.inputs[0])
    result: dict[str, Any] = {"device": "this machine", "ray_cpus": be.cluster_cpus}
    try:
        say("hop overhead")
        h = serve.get_deployment_handle("stage", app_name=be.app_name("s0", ("a", 1)))
        peer = serve.get_deployment_handle("peer", app_name=PEER_APP)
        ts: list[float] = []
        ts_peer: list[float] = []
        for _ in range(HOP_ROUNDS):  # interleaved rounds: a slow minute of the machine hits both alike
            for handle, out in ((h, ts), (peer, ts_peer)):
                for _ in range(20):
                    handle.remote("x").result()
                for _ in range(max(1, hops // HOP_ROUNDS)):
                    t0 = time.perf_counter()
                    handle.remote("x").result()
                    out.append(time.perf_counter() - t0)
        serve.delete(PEER_APP)
        hop = {"p50": _pct(ts, 50) * 1e3, "p99": _pct(ts, 99) * 1e3}
        hop.update(peer_p50=_pct(ts_peer, 50) * 1e3, peer_p99=_pct(ts_peer, 99) * 1e3)
        hop.update(ratio_p50=hop["p50"] / hop["peer_p50"], ratio_p99=hop["p99"] / hop["peer_p99"])
        result["hop_overhead_ms"] = hop

        say("no-op pipeline ceiling")
        steps: list[dict[str, Any]] = []
        best = 0.0
        for rps in rates:
            step_recs = open_loop(url, body, rps, step_s)
            ok = [r for r in step_recs if r.status == 200]
            lat = [r.latency_s for r in ok]
            delivered = len(ok) / max(1, len(step_recs))
            p99_ms = _pct(lat, 99) * 1e3 if lat else None
            steps.append(
                {
                    "target_rps": rps,
                    "delivered": delivered,
                    "refused": sum(r.status == 503 for r in step_recs),
                    "p99_ms": p99_ms,
                }
            )
            sustained = delivered >= 0.98 and p99_ms is not None and p99_ms <= 200
            say(f"  {rps:g} rps: delivered {delivered:.1%}, p99 {p99_ms or 0:.0f} ms")
            if sustained:
                best = rps
            elif best:
                break
            time.sleep(1.0)
        result["noop_max_rps"] = best
        result["noop_steps"] = steps

        say("apply times under 20 rps")
        recs: list[Outcome] = []
        sender = threading.Thread(target=lambda: recs.extend(open_loop(url, body, 20, 40)))
        t_send0 = time.perf_counter() + 0.05  # the load generator's lead-in
        sender.start()
        time.sleep(3)
        apply_s: dict[str, float] = {}
        for change, config in (("batch", StageConfig("a", 8, 1, 1)), ("replicas", StageConfig("a", 8, 1, 2))):
            t_ask = time.perf_counter()
            be.apply({"s1": config})
            be.wait_applied("s1")  # not in effect within its timeout, or refused by Ray: ServingError, saying why
            apply_s[change] = time.perf_counter() - t_ask
            time.sleep(2)
        t_ask = time.perf_counter()
        be.apply({"s0": StageConfig("b", 1, 1, 1)})
        t_running = None
        new_app = be.app_name("s0", ("b", 1))
        while time.perf_counter() - t_ask < 60:
            st = serve.status().applications.get(new_app)
            if st is not None and str(st.status).endswith("RUNNING"):
                t_running = time.perf_counter()
                break
            time.sleep(0.02)
        be.wait_applied("s0")
        apply_s["variant"] = time.perf_counter() - t_ask
        sender.join()
        first_b = min(
            (r.planned for r in recs if r.status == 200 and r.variants and r.variants.get("s0") == "b"), default=None
        )
        # planned send times count from the sender's start (t_send0); the first request the new variant served
        apply_s["variant_after_ready"] = (
            (t_send0 + first_b - t_running) if (first_b is not None and t_running) else float("nan")
        )
        result["apply_s"] = apply_s
        # lost: no answer, or an error other than a refusal (503) or a deadline drop (504). A 504 is answered
        # at once and counted as an SLA violation (`dropped`), not as lost; both are listed with their cause.
        lost = [r for r in recs if r.status not in (200, 503, 504)]
        dropped = [r for r in recs if r.status == 504]
        result["lost"] = len(lost)
        result["dropped"] = len(dropped)
        result["not_served_detail"] = [{"planned_s": round(r.planned, 3), "status": r.status, "reason": r.error[:200]}
                                       for r in (lost + dropped)[:20]]  # fmt: skip
        result["apply_phase"] = {"sent": len(recs), "completed": sum(r.status == 200 for r in recs),
                                 "refused": sum(r.status == 503 for r in recs),
                                 "dropped": len(dropped)}  # fmt: skip
    finally:
        be.close()
        if started:
            ray.shutdown()
    try:
        from pipetune.loadgen import bench_loadgen  # type: ignore[attr-defined]

        say("load generator against a trivial local server")
        result["loadgen"] = bench_loadgen(500.0, 10.0)
    except ImportError:
        result["loadgen"] = None
    except Exception as e:  # noqa: BLE001 - the serving figures above stay; this part says why it is missing
        import traceback

        say(traceback.format_exc())
        result["loadgen"] = {"error": f"{type(e).__name__}: {e}"}
    return result


# ---- the text pipeline: CPU per request by role, and the highest rate held, for pipetune, before, and the peer --
TEXT_SYSTEMS = ("pipetune", "before", "peer", "direct", "direct+batching")
# How each system serves: pipetune's request path today; "before": the same runtime with its request-path changes
# off (Ray Serve's HTTP proxy in front, every stage a remote replica, one handle call per item batched on the
# replica: the path of the runtime before them); "peer": the idiomatic Ray Serve DAG (`tooling/serving_peer.py`).
_BACKEND_MODES: dict[str, dict[str, Any]] = {
    "pipetune": {"front": "direct", "inline": True, "caller_batching": True},
    "before": {"front": "proxy", "inline": False, "caller_batching": False},
    # one change at a time, for what each buys: the direct front alone, then with batches from the caller
    "direct": {"front": "direct", "inline": False, "caller_batching": False},
    "direct+batching": {"front": "direct", "inline": False, "caller_batching": True},
}
TEXT_PLAN_RPS = 60.0  # the configuration every system serves: the planner's for this rate
HELD_VIOLATIONS = 0.01  # a rate is held at <= 1% SLA violations with nothing refused


def _role(cmd: str, pid: int, me: int) -> str:
    """path: on a request's way (HTTP proxy, ingress, stage replicas); loadgen: this process; beside: the rest."""
    if pid == me:
        return "loadgen"
    if "ServeReplica" in cmd or "ProxyActor" in cmd:
        return "path"
    return "beside"


def _held(outs: list[Any], sla_s: float) -> tuple[bool, dict]:
    """Whether a trial's answers hold the rate (nothing refused, SLA violations at most HELD_VIOLATIONS, by
    `pipetune.metrics`) and its facts."""
    n = len(outs)
    outcome = metrics.outcomes_of_http([o.status for o in outs])
    latency = np.array([o.latency_s for o in outs], dtype=float)
    _late, violated = metrics.sla_masks(outcome, latency, sla_s)
    refused = int(np.count_nonzero(outcome == metrics.REFUSED))
    bad = int(np.count_nonzero(violated))
    lat = latency[outcome == metrics.COMPLETED]
    facts = {
        "sent": n,
        "refused": refused,
        "violations": bad / max(1, n),
        "p99_s": _pct(list(lat), 99) if lat.size else None,
    }
    return (n > 0 and refused == 0 and bad <= HELD_VIOLATIONS * n), facts


def _max_rps(send: Callable[[float], list[Any]], sla_s: float, say: Callable[[str], None], start: float) -> dict:
    """The highest open-loop rate held (see HELD_VIOLATIONS): doubling from `start` until a rate fails, then
    bisecting between the last held and the first failed rate down to 10% of the held one."""
    trials = []
    lo, hi = 0.0, None
    rate = start
    while True:
        ok, facts = _held(send(rate), sla_s)
        trials.append({"rps": rate, "held": ok, **facts})
        say(f"    {rate:.1f} rps: {'held' if ok else 'not held'} ({facts['violations']:.1%} violations, "
            f"{facts['refused']} refused)")  # fmt: skip
        if ok:
            lo = rate
        else:
            hi = rate
        time.sleep(3.0)  # a failed rate leaves work queued: let it drain before the next one
        if hi is None:
            rate = rate * 2
            if rate > 1000:
                break
            continue
        if hi - lo <= max(1.0, 0.1 * lo):
            break
        rate = (lo + hi) / 2
    return {"max_rps": lo, "trials": trials}


def run_text_benchmark(
    rps: float = 20.0,
    seconds: float = 30.0,
    trial_s: float = 12.0,
    num_cpus: int = 16,
    port: int = 8766,
    systems: Sequence[str] = TEXT_SYSTEMS,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The bundled text pipeline, each system in turn on one local Ray serving the same configuration: CPU ms per
    request by role at `rps` over `seconds` (open loop, Poisson), then `text_max_rps` by doubling and bisection.

    `cpu_ms_per_request`: `models` (inside predict, counted by the replicas and the ingress), `runtime` (every
    other CPU of the processes on the requests' path: HTTP proxy, ingress, stage replicas), `beside` (Ray's
    controller, GCS, raylet, agents: processes of this Ray off the path), `loadgen` (this process: the load
    generator, and the backend's status polling)."""
    import os

    import ray
    from ray import serve

    from pipetune.loadgen.client import open_loop_at
    from pipetune.optimizer.options import capacity_rps
    from pipetune.profiles import load_profiles
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.runtime_probe import cpu_model, process_tree_cpu
    from pipetune.serving.session import initial_configs, planning_pipeline
    from pipetune.spec import example_path, load_pipeline
    from pipetune.tooling.demo import _bodies
    from pipetune.tooling.serving_peer import PEER_APP, peer_app

    say = progress or (lambda _m: None)
    pipe = load_pipeline(example_path("text"))
    profiles = load_profiles(pipe)
    configs = initial_configs(planning_pipeline(pipe, float(num_cpus - 1)), profiles, TEXT_PLAN_RPS)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, namespace="pipetune-bench-text", log_to_driver=False, include_dashboard=False)
    me = os.getpid()
    out: dict[str, Any] = {
        "configuration": {s: c.to_dict() for s, c in configs.items()},
        "offered_rps": rps,
        "seconds": seconds,
        "cpu_model": cpu_model(),
    }
    try:
        for system in systems:
            say(f"text pipeline: {system}")
            be = None
            if system == "peer":
                serve.start(http_options={"host": "127.0.0.1", "port": port})
                serve.run(peer_app(pipe, configs), name=PEER_APP, route_prefix="/")
                spec = None
            else:
                be = RayServeBackend(pipe, configs, profiles, port=port, **_BACKEND_MODES[system])
                spec = be.inputs[0]
            from pipetune.protocol import TensorSpec

            body = _bodies(pipe, spec or TensorSpec("input", "BYTES", (-1,)))
            url = f"http://127.0.0.1:{port}/v2/models/{pipe.name}/infer"
            open_loop_at(url, body, np.arange(0, 3, 0.05))  # warm every replica
            offsets = np.cumsum(np.random.default_rng(1).exponential(1 / rps, int(rps * seconds)))
            model0 = _model_cpu(system, be, configs)
            before, t0 = process_tree_cpu(me), time.time()
            outs = open_loop_at(url, body, offsets)
            wall, after = time.time() - t0, process_tree_cpu(me)
            model = _model_cpu(system, be, configs) - model0
            roles = {"path": 0.0, "beside": 0.0, "loadgen": 0.0}
            for pid, (cmd, cpu) in after.items():
                roles[_role(cmd, pid, me)] += cpu - before.get(pid, (cmd, 0.0))[1]
            n = max(1, len(outs))
            _ok, facts = _held(outs, pipe.sla.seconds)
            res: dict[str, Any] = {
                "cpu_ms_per_request": {
                    "models": model / n * 1e3,
                    "runtime": (roles["path"] - model) / n * 1e3,
                    "beside": roles["beside"] / n * 1e3,
                    "loadgen": roles["loadgen"] / n * 1e3,
                },
                "measured": {"wall_s": wall, **facts},
            }
            c = res["cpu_ms_per_request"]
            c["runtime_over_models"] = c["runtime"] / c["models"] if c["models"] > 0 else None
            say(f"  CPU ms per request: models {c['models']:.2f}, runtime {c['runtime']:.2f}, beside "
                f"{c['beside']:.2f}, loadgen {c['loadgen']:.2f}")  # fmt: skip

            def send(rate: float, url: str = url, body: Any = body) -> list[Any]:
                return open_loop_at(
                    url, body, np.cumsum(np.random.default_rng(2).exponential(1 / rate, int(rate * trial_s)))
                )

            say("  text_max_rps")
            res.update(_max_rps(send, pipe.sla.seconds, say, start=max(5.0, rps)))
            if be is not None and be.runtime is not None:
                # what the planner's host model says this configuration carries on this host's whole cores (the
                # runtime profile counted), against the rate held live; and what it plans with, below its cap
                steady = be.runtime.without_reserve()
                predicted = capacity_rps(pipe, profiles, configs, dataclasses.replace(steady, utilisation_cap=1.0))
                res["predicted_max_rps"] = predicted
                res["max_rps_vs_predicted"] = res["max_rps"] / predicted if predicted > 0 else None
                res["planned_max_rps"] = capacity_rps(pipe, profiles, configs, steady)
                say(f"  planner's host model: this configuration carries {predicted:.1f} rps on the whole host (held "
                    f"live: {res['max_rps']:.1f}, {res['max_rps'] / predicted:.2f}x); it plans it for "
                    f"{res['planned_max_rps']:.1f} (utilisation cap {steady.utilisation_cap:g})")  # fmt: skip
            out[system] = res
            if be is not None:
                be.close()
            else:
                serve.shutdown()
            time.sleep(2.0)
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()
    if "pipetune" in out and "peer" in out:
        out["runtime_vs_peer"] = out["pipetune"]["cpu_ms_per_request"]["runtime"] / max(
            1e-9, out["peer"]["cpu_ms_per_request"]["runtime"]
        )
        out["max_rps_vs_peer"] = out["pipetune"]["max_rps"] / max(1e-9, out["peer"]["max_rps"])
    if "pipetune" in out and "before" in out:
        out["max_rps_vs_before"] = out["pipetune"]["max_rps"] / max(1e-9, out["before"]["max_rps"])
    return out


def _model_cpu(system: str, be: Any, configs: dict[str, StageConfig]) -> float:
    """CPU seconds the models have used so far, summed over every replica (and the ingress's inline stages)."""
    from ray import serve

    from pipetune.serving.runtime_probe import replica_model_cpu

    total = 0.0
    if system == "peer":
        from pipetune.tooling.serving_peer import PEER_APP, STAGES

        for s in STAGES:
            h = serve.get_deployment_handle(f"peer-{s}", app_name=PEER_APP)
            total += replica_model_cpu(h, configs[s].replicas)
        return total
    for s, c in be.in_effect().items():
        if s in be.inline:
            continue
        h = serve.get_deployment_handle("stage", app_name=be.app_of(s, c))
        total += replica_model_cpu(h, c.replicas)
    st = be.ingress_handle().stats.remote().result(timeout_s=30)
    return total + sum(st["model_cpu"]["seconds"].values())
