"""`pipetune bench reliability`: what the live endpoint answers under load, overload, a killed replica (one of two,
and a stage's only one), a variant switch, Ray Serve's controller restarted, the adapter killed and restarted, and
a flood of malformed requests, on the digits example (real scikit-learn models, fast enough for 2 cores).

One record per scenario: `{scenario, offered_rps, duration_s, sent, completed, refused, failed: {reason: count},
lost, p99_accepted_s, sla_s}` plus scenario facts (`note`, the action's timing, `longest_gap_s`: the longest time
between two requests answered 200, by send time; at the offered rate the gap is 1 / rate). `completed` counts
200s, `refused` 503s (admission control) and, in the malformed scenario, the 4xx refusals that are the right
answer there; `failed` every other answer by status and reason (a 504 is a request dropped at the deadline: an
SLA violation, answered); `lost` requests that got no HTTP answer at all (the goal: 0 everywhere).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.configs import ApplyState, StageConfig
from pipetune.errors import PipetuneError
from pipetune.spec import example_path

SCENARIOS = (
    "sustainable",
    "overload-2x",
    "replica-killed",
    "only-replica-killed",
    "variant-switch",
    "controller-restarted",
    "adapter-restarted",
    "malformed",
)
FULL_S = {"sustainable": 600.0, "overload-2x": 120.0, "malformed": 0.0} | dict.fromkeys(SCENARIOS[2:7], 120.0)
SHORT_S = {"sustainable": 15.0, "overload-2x": 15.0, "malformed": 0.0} | dict.fromkeys(SCENARIOS[2:7], 20.0)
MALFORMED_FULL, MALFORMED_SHORT = 10_000, 2_000
MALFORMED_RPS = 200.0  # bounded: the flood is refused cheaply, and the load generator shares the 2 cores
INITIAL = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 2)}
SWITCH_TO = StageConfig("knn", 1, 1, 2)
KILLED_STAGE = "classify"
REASON_CHARS = 80
APPLY_WAIT_S = 180.0  # a replaced replica or a switched variant not back by then is reported as such
SEARCH_RPS = (10, 20, 30, 40, 50, 60, 80, 100, 120, 160, 200)  # the sustainable rate: the highest that holds
SEARCH_STEP_S, SEARCH_STEP_SHORT_S = 6.0, 3.0
CHUNK_S = 5.0  # the load of an action scenario is sent in chunks of this long until the action has finished
SERVE_CONTROLLER = ("SERVE_CONTROLLER_ACTOR", "serve")  # the Serve controller's actor name and namespace
ADAPTER_INTERVAL_S = 2.0  # the restarted scenario's adapter decides this often
ADAPTER_DECISIONS = 2  # decisions each adapter makes before it is killed / stopped
ADAPTER_DOWN_S = 3.0  # how long the adapter stays dead before it is restarted
ADAPTER_START_S = 180.0  # an adapter that has not decided by then is reported as such
ADAPTER_STOP_S = 60.0


def summarize(name: str, outs: list[Any], rps: float, seconds: float, sla_s: float, refusals: tuple[int, ...]) -> dict:
    """One scenario's record from its outcomes (`loadgen.client.Outcome`: status 0 is no answer)."""
    failed: Counter[str] = Counter()
    for o in outs:
        if o.status not in (0, 200) and o.status not in refusals:
            failed[(o.error or f"http {o.status}")[:REASON_CHARS]] += 1
    lat = [o.latency_s for o in outs if o.status == 200 and np.isfinite(o.latency_s)]
    lost = Counter((o.error or "no answer")[:REASON_CHARS] for o in outs if o.status == 0)
    return {
        "scenario": name,
        "offered_rps": rps,
        "duration_s": seconds,
        "sent": len(outs),
        "completed": sum(o.status == 200 for o in outs),
        "refused": sum(o.status in refusals for o in outs),
        "failed": dict(failed.most_common()),
        "lost": sum(o.status == 0 for o in outs),
        "p99_accepted_s": float(np.percentile(lat, 99)) if lat else None,
        "sla_s": sla_s,
        **({"lost_reasons": dict(lost.most_common())} if lost else {}),
    }


def holds(rec: dict) -> bool:
    """Whether a load was sustained: at least 98% completed, none lost, and the p99 of those within the SLA."""
    p99 = rec["p99_accepted_s"]
    return rec["lost"] == 0 and rec["completed"] >= 0.98 * rec["sent"] and p99 is not None and p99 <= rec["sla_s"]


def malformed_corpus(valid: dict, n: int = 400, seed: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """`n` distinct request bodies (with their headers), each one that `protocol.decode_request` refuses, made by
    breaking a valid request in the ways hostile clients do: garbage bytes, truncation, deep nesting, wrong
    fields, shapes, datatypes and values, NaN, huge numbers, wrong content types and binary header lengths."""
    from pipetune.protocol import HEADER_LENGTH, ProtocolError, TensorSpec, decode_request

    rng = random.Random(seed)
    text = jsonio.dumps(valid)
    inp = valid["inputs"][0]
    spec = TensorSpec(inp["name"], inp["datatype"], (-1, *inp["shape"][1:]))
    json_h = {"content-type": "application/json"}

    def mutated() -> tuple[bytes, dict[str, str]]:
        kind = rng.randrange(12)
        body = dict(valid)
        t = dict(inp)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), json_h
        if kind == 1:
            return text[: rng.randrange(1, len(text) - 1)].encode(), json_h
        if kind == 2:
            d = rng.randrange(65, 5000)
            return ("[" * d + "]" * d).encode(), json_h
        if kind == 3:
            t["shape"] = [rng.randrange(2, 9), *inp["shape"][1:]]
        elif kind == 4:
            t["datatype"] = rng.choice(["FP16", "INT8", "BOOL", "BYTES", "fp32", "", "X" * 50])
        elif kind == 5:
            data = list(inp["data"])
            data[rng.randrange(len(data))] = rng.choice(["NaN", "x", None, [1], {"a": 1}, float("inf"), True])
            t["data"] = data
        elif kind == 6:
            t.pop(rng.choice(["name", "shape", "datatype", "data"]))
        elif kind == 7:
            t["name"] = rng.choice(["", "inputs", "x" * 300, "input\x00"])
        elif kind == 8:
            body["parameters"] = rng.choice(["string", [1], 7, {"k": float("nan")}, {"k": float("inf")}])
        elif kind == 9:
            return text.encode(), {
                "content-type": rng.choice(["text/xml", "image/png", "multipart/form-data", "a" * 300])
            }
        elif kind == 10:
            return text.encode(), {**json_h, HEADER_LENGTH: rng.choice(["-1", "abc", str(len(text) + 5), "1e9"])}
        else:
            body["inputs"] = rng.choice([[], {}, "input", [inp] * rng.randrange(2, 4), None])
            return jsonio.dumps(body).encode(), json_h
        body["inputs"] = [t]
        # the stdlib's json writes what strict JSON refuses (NaN, Infinity), as a careless client would
        return json.dumps(body).encode(), json_h

    out: list[tuple[bytes, dict[str, str]]] = []
    seen: set[bytes] = set()
    for _ in range(50 * n):
        if len(out) >= n:
            break
        b, h = mutated()
        key = b + repr(sorted(h.items())).encode()
        if key in seen:
            continue
        seen.add(key)
        try:
            decode_request(b, [spec], header_length=h.get(HEADER_LENGTH), content_type=h.get("content-type"))
        except ProtocolError:
            out.append((b, h))  # refused by the codec: a malformed request for sure
    return out


def longest_gap_s(outs: list[Any]) -> float | None:
    """The longest time between two requests answered 200, by their send times (`planned`: seconds on one clock):
    a stretch in which nothing was served; None with fewer than two 200s."""
    ok = sorted(o.planned for o in outs if o.status == 200)
    return float(np.diff(ok).max()) if len(ok) > 1 else None


def _replica_actors(apps: str | list[str]) -> list[tuple[str, str]]:
    """(name, namespace) of the live Ray actors that are replicas of Serve application(s) `apps`."""
    import ray

    prefixes = tuple(f"SERVE_REPLICA::{a}#" for a in ([apps] if isinstance(apps, str) else apps))
    return [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if str(a.get("name", "")).startswith(prefixes)
    ]


def kill_one_replica(app: str) -> str:
    """Kill one replica actor of `app` (as a crash would: no graceful stop); its name."""
    import ray

    actors = _replica_actors(app)
    if not actors:
        raise RuntimeError(f"no replica of {app} to kill")
    name, ns = actors[0]
    ray.kill(ray.get_actor(name, namespace=ns), no_restart=True)
    return name


def parse_scenarios(text: str) -> list[str]:
    """A comma-separated list of scenario names, in the bench's order; an unknown or empty one is an error."""
    names = [n.strip() for n in text.split(",")]
    bad = [n for n in names if n not in SCENARIOS]
    if not text.strip() or bad:
        raise PipetuneError(
            f"--scenarios {text!r}: {'unknown ' + ', '.join(map(repr, bad)) if text.strip() else 'empty'}; choose from "
            f"{', '.join(SCENARIOS)} (comma-separated)"
        )
    return [n for n in SCENARIOS if n in names]


def _replaced(app: str, replicas: int, before: set[str], killed: str, deployment: str = "stage") -> bool:
    """Whether the replica `killed` of `app` is gone, a replica that was not there `before` has started, and Serve
    reports `replicas` running (its status alone lags: it still counts the dead one for a moment)."""
    from pipetune.serving import ray_api
    from pipetune.serving.reconcile import read_status

    names = {a for a, _ in _replica_actors(app)}
    if killed in names or not names - before:
        return False
    rep = read_status(ray_api.serve_status(), deployment).get(app)
    return rep is not None and rep.running >= replicas


def _wait(what: Callable[[], bool], timeout_s: float, poll_s: float = 0.2) -> bool:
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        try:
            if what():
                return True
        except Exception:  # noqa: BLE001 - a control plane restarting answers with errors meanwhile
            pass
        time.sleep(poll_s)
    return False


def _decisions(log: Path) -> list[dict]:
    """The complete decision lines of an adapter's log so far."""
    try:
        lines = log.read_text(encoding="utf-8").split("\n")[:-1]  # the last one may be cut short
    except OSError:
        return []
    return [json.loads(x) for x in lines if x.strip()]


class _Bench:
    """One live digits pipeline and the load against it; each scenario is a method returning its record."""

    def __init__(self, port: int, rps: float, secs: dict[str, float], say: Callable[[str], None]) -> None:
        from pipetune.models.registry import variant_model_ref
        from pipetune.profiles import load_profiles
        from pipetune.protocol import encode_request
        from pipetune.serving.backend import RayServeBackend
        from pipetune.spec import load_pipeline

        self.pipe = load_pipeline(example_path("digits"))
        self.profiles = load_profiles(self.pipe)
        self.sla = float(self.pipe.sla.seconds)
        self.port, self.rps, self.secs, self.say = port, rps, secs, say
        say("starting the digits pipeline (remote stages, no inline ones: a replica to kill)")
        self.be = RayServeBackend(self.pipe, dict(INITIAL), self.profiles, port=port, inline=False)
        self.url = f"http://127.0.0.1:{port}/v2/models/{self.pipe.name}/infer"
        sample = variant_model_ref(self.pipe, "features", "pca-16")().sample_inputs(1)
        self.valid = encode_request(sample, self.be.inputs[0])

    def load(self, rate: float, seconds: float) -> list[Any]:
        from pipetune.loadgen.client import open_loop

        return open_loop(self.url, self.valid, rate, seconds)

    def under_load(self, name: str, at: float, action: Callable[[Callable[[], float]], dict]) -> dict:
        """The sustainable load for at least the scenario's seconds, `action(clock)` started `at` of the way in
        (`clock()`: seconds since the load started); the load goes on in whole chunks until the action has
        returned (however long it takes on a loaded machine), so its end is seen under load. Send times are on
        the scenario's clock (longest_gap_s reads them)."""
        outs: list[Any] = []
        done = threading.Event()
        seconds = self.secs[name]
        t0 = time.monotonic()

        def clock() -> float:
            return time.monotonic() - t0

        def send() -> None:
            while True:
                last = done.is_set() and clock() >= seconds
                start = clock()
                outs.extend(dataclasses.replace(o, planned=o.planned + start) for o in self.load(self.rps, CHUNK_S))
                if last:
                    return

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(seconds * at)
        try:
            facts = action(clock)
        finally:
            done.set()
            sender.join()
        rec = summarize(name, outs, self.rps, len(outs) / self.rps, self.sla, (503,))
        return {**rec, "longest_gap_s": longest_gap_s(outs), **facts}

    def set_replicas(self, stage: str, n: int) -> None:
        c = self.be.in_effect()[stage]
        self.be.apply({stage: dataclasses.replace(c, replicas=n)})
        _wait(lambda: self.be.stage_status()[stage].state is not ApplyState.PENDING, APPLY_WAIT_S)

    # ---- scenarios -------------------------------------------------------------------------------------------
    def sustainable(self) -> dict:
        name = "sustainable"
        self.say(f"{name}: {self.rps:g} rps for {self.secs[name]:g} s")
        return summarize(name, self.load(self.rps, self.secs[name]), self.rps, self.secs[name], self.sla, (503,))

    def overload(self) -> dict:
        name = "overload-2x"
        self.say(f"{name}: {2 * self.rps:g} rps for {self.secs[name]:g} s")
        rec = summarize(name, self.load(2 * self.rps, self.secs[name]), 2 * self.rps, self.secs[name], self.sla, (503,))
        after = self.load(self.rps, 3.0)  # served again right after?
        rec["after_overload_completed_share"] = sum(o.status == 200 for o in after) / max(1, len(after))
        return rec

    def replica_killed(self, name: str, replicas: int) -> dict:
        """One replica of KILLED_STAGE killed at 1/3, the stage first set to `replicas` (1: its only one)."""
        self.set_replicas(KILLED_STAGE, replicas)
        c = self.be.in_effect()[KILLED_STAGE]
        app = self.be.app_of(KILLED_STAGE, c)
        self.say(f"{name}: {self.rps:g} rps; one of {KILLED_STAGE}'s {replicas} replicas killed at 1/3")

        def kill(clock: Callable[[], float]) -> dict:
            at = clock()
            before = {a for a, _ in _replica_actors(app)}
            killed = kill_one_replica(app)
            back = _wait(lambda: _replaced(app, replicas, before, killed), APPLY_WAIT_S)
            return {
                "replicas_before": replicas,
                "killed": killed,
                "killed_at_s": at,
                "replaced_after_s": clock() - at if back else None,
            }

        return self.under_load(name, 1 / 3, kill)

    def variant_switch(self) -> dict:
        name = "variant-switch"
        self.say(f"{name}: {self.rps:g} rps; {KILLED_STAGE} -> {SWITCH_TO.variant} at 1/4")

        def switch(clock: Callable[[], float]) -> dict:
            at = clock()
            self.be.apply({KILLED_STAGE: SWITCH_TO})
            st = self.be.stage_status()[KILLED_STAGE]
            if _wait(lambda: self.be.stage_status()[KILLED_STAGE].state is not ApplyState.PENDING, APPLY_WAIT_S, 0.05):
                st = self.be.stage_status()[KILLED_STAGE]
            state = st.state.name if st.state is not ApplyState.PENDING else "PENDING"
            return {
                "apply": state,
                "applied_after_s": clock() - at if state != "PENDING" else None,
                "reason": st.reason,
            }

        return self.under_load(name, 1 / 4, switch)

    def controller_restarted(self) -> dict:
        """Ray Serve's controller killed (Ray restarts it: it is a detached actor with restarts): the replicas and
        the ingress are not the controller's children, so serving should go on; what was lost is counted."""
        import ray

        from pipetune.serving import ray_api
        from pipetune.serving.reconcile import AppStatus, read_status

        name = "controller-restarted"
        self.say(f"{name}: {self.rps:g} rps; Ray Serve's controller killed at 1/3 (Ray restarts it)")
        apps = [a for a in read_status(ray_api.serve_status()) if a.startswith(f"{self.pipe.name}--")]
        before = {a for a, _ in _replica_actors(apps)}

        def restart(clock: Callable[[], float]) -> dict:
            at = clock()
            ray.kill(ray.get_actor(*SERVE_CONTROLLER), no_restart=False)

            def running() -> bool:
                st = read_status(ray_api.serve_status())
                return all(a in st and st[a].status is AppStatus.RUNNING for a in apps)

            time.sleep(0.5)  # the kill takes effect first; a status from the dying controller proves nothing
            back = _wait(running, APPLY_WAIT_S)
            facts = {"killed_at_s": at, "controller_back_after_s": clock() - at if back else None}
            _wait(lambda: {a for a, _ in _replica_actors(apps)} >= before, 10.0)  # replaced ones have started
            return {**facts, "replicas_replaced": sorted(before - {a for a, _ in _replica_actors(apps)})}

        return self.under_load(name, 1 / 3, restart)

    def adapter_restarted(self, workdir: Path) -> dict:
        """The adapter (`pipetune serve --resume LOG --keep-serving` attached to this bench's cluster) killed with
        SIGKILL while serving, then started again with the same command: serving goes on untouched, and the second
        adapter takes over what serves (nothing re-deployed) and continues the log and the clock."""
        import ray

        from pipetune.serving import ray_api
        from pipetune.serving.backend import RayServeBackend

        name = "adapter-restarted"
        log, out1, out2 = workdir / "decisions.jsonl", workdir / "adapter-1.out", workdir / "adapter-2.out"
        cmd = [
            sys.executable, "-m", "pipetune", "serve", example_path("digits"), "--address",
            ray.get_runtime_context().gcs_address, "--resume", str(log), "--keep-serving",
            "--interval", f"{ADAPTER_INTERVAL_S:g}", "--port", str(self.port),
        ]  # fmt: skip
        self.say(f"{name}: {self.rps:g} rps; the adapter started, killed (SIGKILL) and started again under load")
        self.be.close(keep_serving=True)  # this process's backend lets go: the pipeline serves on, no adapter
        mine = f"{self.pipe.name}--"

        def deployed() -> dict:
            return {a: c for a, c in ray_api.deployed_apps().items() if a.startswith(mine)}

        def start(out: Path) -> subprocess.Popen:
            with open(out, "w") as f:
                return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})

        def run(clock: Callable[[], float]) -> dict:
            facts: dict[str, Any] = {}
            first = start(out1)
            try:
                ok = _wait(
                    lambda: len(_decisions(log)) >= ADAPTER_DECISIONS or first.poll() is not None, ADAPTER_START_S
                )
                n1 = len(_decisions(log))
                if not ok or first.poll() is not None:
                    return {"error": f"the first adapter made {n1} decisions (exit {first.poll()})"}
                before = deployed()
                # a stage with two generations: a switch the first adapter asked for is still under way
                stages = [c.get("args", {}).get("stage") for a, c in before.items() if c and "--ingress" not in a]
                facts["switch_under_way_at_kill"] = len(stages) != len(set(stages))
                facts["killed_at_s"] = clock()
                first.send_signal(signal.SIGKILL)
                first.wait()
            finally:
                if first.poll() is None:
                    first.kill()
                    first.wait()
            killed = clock()
            time.sleep(ADAPTER_DOWN_S)  # no adapter: serving must not notice
            facts["deployed_unchanged_while_down"] = deployed() == before
            second = start(out2)
            try:
                attached = _wait(lambda: "attached" in out2.read_text() or second.poll() is not None, ADAPTER_START_S)
                after_attach = deployed()
                facts["attached_after_s"] = clock() - killed if attached and second.poll() is None else None
                # applications whose config the attach changed: none, unless a switch under way had finished
                # meanwhile (its route moves and the old generation goes, as the first adapter would have done)
                facts["redeployed_on_attach"] = sorted(
                    a for a in set(before) | set(after_attach) if before.get(a) != after_attach.get(a)
                )
                _wait(
                    lambda: len(_decisions(log)) >= n1 + ADAPTER_DECISIONS or second.poll() is not None, ADAPTER_START_S
                )
                second.send_signal(signal.SIGTERM)  # a clean stop; --keep-serving leaves the pipeline serving
                facts["second_adapter_exit"] = second.wait(timeout=ADAPTER_STOP_S)
            finally:
                if second.poll() is None:
                    second.kill()
                    second.wait()
            ds = _decisions(log)
            d1, d2 = ds[:n1], ds[n1:]
            facts["adapter_down_s"] = d2[0]["t"] - d1[-1]["t"] if d1 and d2 else None
            facts["decisions"] = [
                {"adapter": 1 if i < n1 else 2, "t": round(d["t"], 2), "changed": d["changed_stages"],
                 "configs": {s: f"{c['variant']} b{c['batch']} x{c['replicas']}" for s, c in d["configs"].items()}}
                for i, d in enumerate(ds)
            ]  # fmt: skip
            if d1 and d2:  # the second adapter went on from what the first one asked for, on the same clock
                facts["same_plan_after_restart"] = d2[0]["configs"] == d1[-1]["configs"]
                facts["asked_again_after_restart"] = d2[0]["changed_stages"]  # []: nothing re-applied
                facts["clock_continued"] = d2[0]["t"] > d1[-1]["t"]
            return facts

        try:
            rec = self.under_load(name, 1 / 4, run)
        finally:  # this process takes the pipeline over again, as the adapter did (a switch under way completes)
            self.be = RayServeBackend(self.pipe, self.be.in_effect(), self.profiles, port=self.port, attach=True)
        return rec

    def malformed(self, n_bad: int) -> dict:
        from pipetune.loadgen.client import Outcome
        from pipetune.loadgen.runner import RunOptions, run

        name = "malformed"
        corpus = malformed_corpus(self.valid)
        self.say(f"{name}: {n_bad} requests from {len(corpus)} distinct malformed bodies at {MALFORMED_RPS:g} rps")
        records = run(
            np.arange(n_bad) / MALFORMED_RPS,
            RunOptions(
                url=self.url, bodies=[b for b, _ in corpus], body_headers=[h for _, h in corpus], timeout_s=30.0
            ),
        )
        bad = [
            Outcome(float(records.planned[i]), int(records.status[i]), records.reasons[i] or "", None, float(records.latency[i]))
            for i in range(records.planned.size)
        ]  # fmt: skip
        rec = summarize(name, bad, MALFORMED_RPS, n_bad / MALFORMED_RPS, self.sla, tuple(range(400, 500)) + (503,))
        rec["distinct_bodies"] = len(corpus)
        rec["note"] = "refused = 4xx answers (the right one here); completed = malformed requests accepted"
        return rec


def run_reliability_benchmark(
    *,
    rps: float | None = None,
    short: bool = False,
    durations: dict[str, float] | None = None,
    malformed: int | None = None,
    scenarios: list[str] | None = None,
    port: int = 8766,
    num_cpus: int = 8,
    progress: Callable[[str], None] | None = None,
    advance: Callable[[], None] | None = None,
) -> dict:
    """The scenarios (default: all, in SCENARIOS' order) in turn against one live digits pipeline; returns
    `{"scenarios": [...], ...}`. `rps`: the sustainable rate; None finds it first (the highest of SEARCH_RPS that
    `holds`, stepping up until one fails). Uses the connected Ray if there is one, else starts a local one."""
    import ray

    say = progress or (lambda _m: None)
    step = advance or (lambda: None)
    chosen = list(scenarios or SCENARIOS)
    secs = {**(SHORT_S if short else FULL_S), **(durations or {})}
    n_bad = malformed if malformed is not None else (MALFORMED_SHORT if short else MALFORMED_FULL)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, namespace="pipetune-bench", log_to_driver=False, include_dashboard=False)
    bench = None
    try:
        bench = _Bench(port, rps or 0.0, secs, say)
        result: dict[str, Any] = {
            "pipeline": bench.pipe.name, "ray_cpus": bench.be.cluster_cpus, "short": short, "scenarios": [],
        }  # fmt: skip
        bench.load(10, 2.0)  # warm every path; not counted
        if rps is None:
            steps = []
            for rate in SEARCH_RPS:
                step_s = SEARCH_STEP_SHORT_S if short else SEARCH_STEP_S
                rec = summarize("search", bench.load(rate, step_s), rate, step_s, bench.sla, (503,))
                steps.append(rec)
                say(f"  search {rate:g} rps: {rec['completed']}/{rec['sent']} completed, p99 {rec['p99_accepted_s']}")
                if not holds(rec):
                    break
                time.sleep(1)
            held = [r["offered_rps"] for r in steps if holds(r)]
            bench.rps = float(held[-1]) if held else float(SEARCH_RPS[0])
            result["rate_search"] = [{k: r[k] for k in ("offered_rps", "sent", "completed", "refused", "lost",
                                                         "p99_accepted_s")} for r in steps]  # fmt: skip
            result["rate_search_note"] = "" if held else f"no rate held; {bench.rps:g} rps used"
        result["sustainable_rps"] = bench.rps
        with tempfile.TemporaryDirectory(prefix="pipetune-reliability-") as tmp:
            runs: dict[str, Callable[[], dict]] = {
                "sustainable": bench.sustainable,
                "overload-2x": bench.overload,
                "replica-killed": lambda: bench.replica_killed("replica-killed", 2),
                "only-replica-killed": lambda: bench.replica_killed("only-replica-killed", 1),
                "variant-switch": bench.variant_switch,
                "controller-restarted": bench.controller_restarted,
                "adapter-restarted": lambda: bench.adapter_restarted(Path(tmp)),
                "malformed": lambda: bench.malformed(n_bad),
            }
            for name in chosen:
                result["scenarios"].append(runs[name]())
                step()
                time.sleep(1)
        after = bench.load(bench.rps, 3.0)
        result["served_after_all"] = sum(o.status == 200 for o in after) / max(1, len(after))
    finally:
        if bench is not None:
            bench.be.close()
        if started:
            ray.shutdown()
    return result
