"""Measure what the live runtime itself costs on this host: the RuntimeProfile the planner and the twin use.

The pipeline is served on a local Ray as `pipetune serve` serves it, an open-loop Poisson load runs through it, and
the CPU of every process of that Ray (all of them descend from this process) is read from /proc before and after.
The models' own CPU is counted where they run (each replica and the ingress time their `predict` on the calling
thread), so what is left is the runtime's:

* `request_cpu_s`: the ingress process less its inline models, per request answered (HTTP, decoding and encoding
  the protocol, walking the DAG, and the caller's side of the stage calls at the batching this load produced);
* `call_cpu_s`: the stage replicas less their models, per call (a call carries a batch; `item_cpu_s` is not told
  apart from it and stays 0, which charges a call the same whatever it carries);
* `side_cpu_s`: every other process of the Ray (controller, GCS, raylet, agents), per request;
* `host_cores`: the cores this process may run on (Ray's CPUs when connected to a cluster);
* `replica_start_s`: after the load, one replica is added to a remote stage: the seconds until it serves, less its
  model's profiled load time (a Ray worker process starting and importing its libraries);
* `switch_reserve_cores`: not measured: one starting replica's core (LOADING_CORES), kept free when planning.

Which stages the ingress runs itself is decided by the same rule as in the planner (`inline_stages`) on the assumed
profile (`assumed_runtime`: a call assumed to cost ASSUMED_CALL_CPU_S), as `pipetune serve` does without a runtime
profile; the measured profile keeps `fusion` on, so a stage lighter than the measured call runs inline from then on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipetune.runtime_profile import LOADING_CORES, RuntimeProfile, assumed_runtime

PROBE_PORT = 8790


def process_tree_cpu(root: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of `root` and every process below it, with each one's command line: a local
    Ray started by this process is all below it, and nothing else on the machine is counted. Linux (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline") as f:
                cmd = f.read().replace("\0", " ").strip()
        except OSError:
            continue  # gone meanwhile
        procs[int(name)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / tick)
    keep, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _c, _t) in procs.items():
            if ppid == parent and child not in keep:
                keep.add(child)
                frontier.append(child)
    return {pid: (procs[pid][1], procs[pid][2]) for pid in keep if pid in procs}


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def host_cores() -> float:
    """Cores this process may run on: what a local Ray's replicas, its ingress and its load share."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return float(os.cpu_count() or 1)


def replica_model_cpu(handle: Any, replicas: int) -> float:
    """CPU seconds the model of a deployment's replicas has used (each replica's `cpu_stats()`): a handle call
    reaches one replica, chosen by Ray, so ask until `replicas` different ones have answered (bounded)."""
    seen: dict[str, float] = {}
    for _ in range(20 * max(1, replicas)):
        st = handle.options(method_name="cpu_stats").remote().result(timeout_s=30)
        seen[st["replica"]] = float(st["seconds"])
        if len(seen) >= replicas:
            break
    return sum(seen.values())


def measure_runtime(
    pipeline: Any,
    profiles: Any,
    *,
    rps: float = 20.0,
    seconds: float = 30.0,
    num_cpus: int | None = None,
    port: int = PROBE_PORT,
    progress: Callable[[str], None] | None = None,
) -> RuntimeProfile:
    """Serve `pipeline` on a local Ray (started here unless one is), load it at `rps` for `seconds`, and return the
    runtime's costs measured (see the module's docstring), and how long a replica added takes to start beyond its
    model's load (`replica_start_s`)."""
    import ray

    from pipetune.loadgen.client import open_loop_at
    from pipetune.protocol import encode_request
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.session import initial_configs, planning_pipeline

    say = progress or (lambda _m: None)
    cores = host_cores()
    boot = assumed_runtime(cores)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus or 16, namespace="pipetune-runtime-probe", log_to_driver=False,
                 include_dashboard=False)  # fmt: skip
    me = os.getpid()
    be = None
    try:
        replica_cpus = float(ray.cluster_resources().get("CPU", 0)) - 1.0
        # The runtime's cost does not depend on which models serve, so the cheapest variants (fa2-low), which the
        # host holds at the measured rate: a saturated host would inflate every process's CPU.
        configs = initial_configs(planning_pipeline(pipeline, replica_cpus), profiles, rps, policy="fa2-low")
        say(f"serving {pipeline.name} on {cores:g} cores: {', '.join(f'{s} {c.variant}' for s, c in configs.items())}")
        be = RayServeBackend(pipeline, configs, profiles, port=port, runtime=boot)
        spec = be.inputs[0]
        src = next(iter(pipeline.source_shares()))
        from pipetune.models.registry import variant_model_ref

        xs = variant_model_ref(pipeline, src, pipeline.stage(src).variants[0].name)().sample_inputs(200)
        bodies = [encode_request([x], spec) for x in xs]
        url = f"http://127.0.0.1:{port}/v2/models/{pipeline.name}/infer"
        open_loop_at(url, lambda i: bodies[i % len(bodies)], np.arange(0, 3, 0.05))  # warm every replica
        say(f"measuring {seconds:g} s at {rps:g} requests/s")
        offsets = np.cumsum(np.random.default_rng(0).exponential(1 / rps, max(1, int(rps * seconds))))
        stats0, model0 = _counts(be)
        cpu0 = process_tree_cpu(me)
        outs = open_loop_at(url, lambda i: bodies[i % len(bodies)], offsets)
        cpu1 = process_tree_cpu(me)
        stats1, model1 = _counts(be)
        start_s = _replica_start_s(be, configs, profiles, say)
    finally:
        if be is not None:
            be.close()
        if started:
            ray.shutdown()
    answered = sum(o.status == 200 for o in outs)
    if answered == 0:
        raise RuntimeError(f"no request was answered while measuring ({len(outs)} sent): the runtime is not serving")
    ingress = path = side = 0.0
    for pid, (cmd, t1) in cpu1.items():
        used = t1 - cpu0.get(pid, (cmd, 0.0))[1]
        if pid == me:
            continue  # the load generator
        if "ServeReplica" in cmd and ":ingress" in cmd:
            ingress += used
        elif "ServeReplica" in cmd:
            path += used
        else:
            side += used
    inline_model = model1["ingress"] - model0["ingress"]
    replica_model = model1["replicas"] - model0["replicas"]
    calls = sum(c["calls"] for c in stats1.values()) - sum(c["calls"] for c in stats0.values())
    items = sum(c["items"] for c in stats1.values()) - sum(c["items"] for c in stats0.values())
    return RuntimeProfile(
        host_cores=cores,
        request_cpu_s=max(0.0, ingress - inline_model) / answered,
        call_cpu_s=max(0.0, path - replica_model) / max(1, calls),
        item_cpu_s=0.0,
        side_cpu_s=max(0.0, side) / answered,
        replica_start_s=start_s,
        # a switch starts a replica while the old one serves: keep its core free when planning
        switch_reserve_cores=LOADING_CORES,
        fusion=True,
        conditions={
            "cpu_model": cpu_model(),
            "host_cores": cores,
            "measured": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "how": "pipetune profile --runtime: open-loop Poisson load on a local Ray, CPU per process from /proc",
            "rps": rps,
            "seconds": seconds,
            "requests_answered": answered,
            "requests_sent": len(outs),
            "calls": calls,
            "items_per_call": items / calls if calls else None,
            "inline_stages": sorted(be.inline) if be is not None else [],
            "models_cpu_ms_per_request": (inline_model + replica_model) / answered * 1e3,
        },
    )


def _replica_start_s(be: Any, configs: dict, profiles: Any, say: Callable[[str], None]) -> float:
    """Seconds a replica added to a remote stage takes beyond its model's profiled load time (the worker process
    starting, importing its libraries), on the idle host; 0 when every stage runs in the ingress."""
    from dataclasses import replace

    remote = [s for s in configs if s not in be.inline]
    if not remote:
        return 0.0
    stage = remote[0]
    c = configs[stage]
    be.apply({stage: replace(c, replicas=c.replicas + 1)})
    took = be.wait_applied(stage)
    load = float(profiles.get(stage, c.variant).load_time_s)
    say(f"a replica added to {stage} ({c.variant}) served after {took:.1f} s (its model loads in {load:.1f} s)")
    return max(0.0, took - load)


def _counts(be: Any) -> tuple[dict, dict]:
    """The ingress's calls per stage since it started, and the models' CPU so far (ingress, replicas)."""
    from pipetune.serving import ray_api
    from pipetune.serving.config import STAGE_DEPLOYMENT

    st = be.ingress_handle().stats.remote().result(timeout_s=30)
    replicas = 0.0
    for s, c in be.in_effect().items():
        if s not in be.inline:
            h = ray_api.deployment_handle(STAGE_DEPLOYMENT, be.app_of(s, c))
            replicas += replica_model_cpu(h, c.replicas)
    return st["calls"], {"ingress": sum(st["model_cpu"]["seconds"].values()), "replicas": replicas}
