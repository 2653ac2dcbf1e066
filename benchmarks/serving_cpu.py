"""Where the live runtime's CPU goes per request: the text pipeline on a local Ray, an open-loop Poisson load, and
the CPU time of every process on the machine (from /proc) over the load.

    .venv/bin/python benchmarks/serving_cpu.py [--rps 20] [--seconds 40]

Prints one line per process that used CPU (seconds, ms per request, what it is) and a summary by role: ingress,
HTTP proxy, each stage replica (its per-item CPU less its profiled model time: the handle hop), and what runs
beside the requests' path (this process, i.e. the load generator; Ray's controller, GCS and agents). These are the
figures behind the live demo's twin (`pipetune.tooling.demo`: HOST_OVERHEAD_S, HOST_HOP_S, HOST_SIDE_S). Linux
only (/proc); run it on a quiet machine, nothing else running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _cpu_by_process() -> dict[str, tuple[str, float]]:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read().replace("\0", " ").strip()[:90]
        except OSError:
            continue  # gone meanwhile
        out[pid] = (cmd, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
    return out


def _role(cmd: str) -> str:
    if "ServeReplica" in cmd and ":ingress" in cmd:
        return "ingress"
    if "ServeReplica" in cmd:
        return "stage " + cmd.split("ServeReplica:", 1)[1].split(":", 1)[0].split("--", 1)[-1]
    if "ProxyActor" in cmd:
        return "proxy"
    if str(os.getpid()) == cmd:
        return "load generator"
    return "beside the path"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rps", type=float, default=20.0, help="offered load, requests per second (1-200)")
    ap.add_argument("--seconds", type=float, default=40.0, help="length of the measured load (5-600)")
    a = ap.parse_args()
    if not (1 <= a.rps <= 200):
        sys.exit("--rps must be from 1 to 200 (the text pipeline serves about 50 on 2 cores)")
    if not (5 <= a.seconds <= 600):
        sys.exit("--seconds must be from 5 to 600")
    if not os.path.isdir("/proc/self"):
        sys.exit("needs Linux /proc to read per-process CPU time")

    import ray

    from pipetune import example_path
    from pipetune.loadgen.client import open_loop_at
    from pipetune.profiles import load_profiles
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.session import initial_configs, planning_pipeline
    from pipetune.spec import load_pipeline
    from pipetune.tooling.demo import _bodies

    pipe = load_pipeline(example_path("text"))
    profiles = load_profiles(pipe)
    os.environ.setdefault("RAY_TMPDIR", "/tmp/pipetune-ray")
    ray.init(num_cpus=16, namespace="pipetune-serving-cpu", log_to_driver=False, include_dashboard=False)
    try:
        initial = initial_configs(planning_pipeline(pipe, 15.0), profiles, 5.0)
        be = RayServeBackend(pipe, initial, profiles, port=8000)
        url = f"http://127.0.0.1:8000/v2/models/{pipe.name}/infer"
        body = _bodies(pipe, be.inputs[0])
        open_loop_at(url, body, np.arange(0, 3, 0.1))  # warm every replica
        offsets = np.cumsum(np.random.default_rng(1).exponential(1 / a.rps, int(a.rps * a.seconds)))
        before, t0 = _cpu_by_process(), time.time()
        outs = open_loop_at(url, body, offsets)
        wall, after = time.time() - t0, _cpu_by_process()
        be.close()
    finally:
        ray.shutdown()

    n = len(outs)
    lat = np.array([o.latency_s for o in outs if o.status == 200])
    print(f"{n} requests at {a.rps:g} rps over {wall:.1f} s: {lat.size} answered 200, "
          f"p50 {np.percentile(lat, 50) * 1e3:.1f} ms, p99 {np.percentile(lat, 99) * 1e3:.1f} ms")  # fmt: skip
    by_role: dict[str, float] = {}
    rows = []
    for pid, (cmd, cpu) in after.items():
        used = cpu - before.get(pid, (cmd, 0.0))[1]
        if used > 0.01:
            role = "load generator" if pid == str(os.getpid()) else _role(cmd)
            by_role[role] = by_role.get(role, 0.0) + used
            rows.append((used, pid, cmd))
    for used, pid, cmd in sorted(rows, reverse=True):
        print(f"{used:7.2f} s  {used / n * 1e3:6.2f} ms/request  {pid:>7}  {cmd}")
    model_ms = {c.variant: profiles.get(s, c.variant).row(1, c.cores).latency_mean_s * 1e3 for s, c in initial.items()}
    print("\nby role (ms of CPU per request; stages: per item, and less the profiled model time):")
    for role, used in sorted(by_role.items(), key=lambda kv: -kv[1]):
        ms = used / n * 1e3
        extra = ""
        if role.startswith("stage "):
            variant = role.split(" ", 1)[1].split("--")[1]  # "stage STAGE--VARIANT--cN"
            if variant in model_ms:
                extra = f"  (model {model_ms[variant]:.2f} ms: outside it {ms - model_ms[variant]:.2f} ms)"
        print(f"  {role:40s} {ms:6.2f}{extra}")
    total = sum(by_role.values())
    print(f"  {'all':40s} {total / n * 1e3:6.2f}  ({total / wall:.2f} cores on average)")


if __name__ == "__main__":
    main()
