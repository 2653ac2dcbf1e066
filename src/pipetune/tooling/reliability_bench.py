"""`pipetune bench reliability`: what the live endpoint answers under load, overload, a killed replica, a variant
switch and a flood of malformed requests, on the digits example (real scikit-learn models, fast enough for 2 cores).

One record per scenario: `{scenario, offered_rps, duration_s, sent, completed, refused, failed: {reason: count},
lost, p99_accepted_s, sla_s}` plus scenario facts (`note`, the action's timing). `completed` counts 200s,
`refused` 503s (admission control) and, in the malformed scenario, the 4xx refusals that are the right answer
there; `failed` every other answer by status and reason (a 504 is a request dropped at the deadline: an SLA
violation, answered); `lost` requests that got no HTTP answer at all (the goal: 0 everywhere).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.configs import ApplyState, StageConfig
from pipetune.spec import example_path

FULL_S = {"sustainable": 600.0, "overload-2x": 120.0, "replica-killed": 120.0, "variant-switch": 120.0}
SHORT_S = {"sustainable": 15.0, "overload-2x": 15.0, "replica-killed": 20.0, "variant-switch": 20.0}
MALFORMED_FULL, MALFORMED_SHORT = 10_000, 2_000
MALFORMED_RPS = 200.0  # bounded: the flood is refused cheaply, and the load generator shares the 2 cores
INITIAL = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 2)}
SWITCH_TO = StageConfig("knn", 1, 1, 2)
KILLED_STAGE = "classify"
REASON_CHARS = 80
APPLY_WAIT_S = 180.0  # a replaced replica or a switched variant not back by then is reported as such
SEARCH_RPS = (10, 20, 30, 40, 50, 60, 80, 100, 120, 160, 200)  # the sustainable rate: the highest that holds
SEARCH_STEP_S, SEARCH_STEP_SHORT_S = 6.0, 3.0


def summarize(name: str, outs: list[Any], rps: float, seconds: float, sla_s: float, refusals: tuple[int, ...]) -> dict:
    """One scenario's record from its outcomes (`loadgen.client.Outcome`: status 0 is no answer)."""
    failed: Counter[str] = Counter()
    for o in outs:
        if o.status not in (0, 200) and o.status not in refusals:
            failed[(o.error or f"http {o.status}")[:REASON_CHARS]] += 1
    lat = [o.latency_s for o in outs if o.status == 200 and np.isfinite(o.latency_s)]
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


def _replica_actors(app: str) -> list[tuple[str, str]]:
    """(name, namespace) of the live Ray actors that are replicas of Serve application `app`."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#"
    return [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if str(a.get("name", "")).startswith(prefix)
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


def run_reliability_benchmark(
    *,
    rps: float | None = None,
    short: bool = False,
    durations: dict[str, float] | None = None,
    malformed: int | None = None,
    port: int = 8766,
    num_cpus: int = 8,
    progress: Callable[[str], None] | None = None,
    advance: Callable[[], None] | None = None,
) -> dict:
    """Every scenario in turn against one live digits pipeline; returns `{"scenarios": [...], ...}`. `rps`: the
    sustainable rate; None finds it first (the highest of SEARCH_RPS that `holds`, stepping up until one fails)."""
    import ray

    from pipetune.loadgen.client import Outcome, open_loop
    from pipetune.loadgen.runner import RunOptions, run
    from pipetune.models.registry import variant_model_ref
    from pipetune.profiles import load_profiles
    from pipetune.protocol import encode_request
    from pipetune.serving.backend import RayServeBackend
    from pipetune.spec import load_pipeline

    say = progress or (lambda _m: None)
    step = advance or (lambda: None)
    secs = {**(SHORT_S if short else FULL_S), **(durations or {})}
    n_bad = malformed if malformed is not None else (MALFORMED_SHORT if short else MALFORMED_FULL)
    pipe = load_pipeline(example_path("digits"))
    sla = float(pipe.sla.seconds)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=num_cpus, namespace="pipetune-bench", log_to_driver=False, include_dashboard=False)
    say("starting the digits pipeline (remote stages, no inline ones: a replica to kill)")
    be = RayServeBackend(pipe, dict(INITIAL), load_profiles(pipe), port=port, inline=False)
    url = f"http://127.0.0.1:{port}/v2/models/{pipe.name}/infer"
    valid = encode_request(variant_model_ref(pipe, "features", "pca-16")().sample_inputs(1), be.inputs[0])
    result: dict[str, Any] = {"pipeline": pipe.name, "ray_cpus": be.cluster_cpus, "short": short, "scenarios": []}

    def load(rate: float, seconds: float) -> list[Outcome]:
        return open_loop(url, valid, rate, seconds)

    def under_load(rate: float, seconds: float, at_s: float, action: Callable[[], dict]) -> tuple[list[Outcome], dict]:
        """Load at `rate` for at least `seconds`, `action` started `at_s` in; the load goes on in whole chunks until
        the action has returned (however long it takes on a loaded machine), so its end is seen under load."""
        outs: list[Outcome] = []
        done = threading.Event()

        def send() -> None:
            t0 = time.monotonic()
            while True:
                last = done.is_set() and time.monotonic() - t0 >= seconds
                outs.extend(load(rate, 5.0))
                if last:
                    return

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(at_s)
        try:
            facts = action()
        finally:
            done.set()
            sender.join()
        return outs, facts

    try:
        load(10, 2.0)  # warm every path; not counted
        if rps is None:
            steps = []
            for rate in SEARCH_RPS:
                step_s = SEARCH_STEP_SHORT_S if short else SEARCH_STEP_S
                rec = summarize("search", load(rate, step_s), rate, step_s, sla, (503,))
                steps.append(rec)
                say(f"  search {rate:g} rps: {rec['completed']}/{rec['sent']} completed, p99 {rec['p99_accepted_s']}")
                if not holds(rec):
                    break
                time.sleep(1)
            held = [r["offered_rps"] for r in steps if holds(r)]
            rps = float(held[-1]) if held else float(SEARCH_RPS[0])
            result["rate_search"] = [{k: r[k] for k in ("offered_rps", "sent", "completed", "refused", "lost",
                                                         "p99_accepted_s")} for r in steps]  # fmt: skip
            result["rate_search_note"] = "" if held else f"no rate held; {rps:g} rps used"
        result["sustainable_rps"] = rps
        name = "sustainable"
        say(f"{name}: {rps:g} rps for {secs[name]:g} s")
        result["scenarios"].append(summarize(name, load(rps, secs[name]), rps, secs[name], sla, (503,)))
        step()
        time.sleep(2)

        name = "overload-2x"
        say(f"{name}: {2 * rps:g} rps for {secs[name]:g} s")
        rec = summarize(name, load(2 * rps, secs[name]), 2 * rps, secs[name], sla, (503,))
        after = load(rps, 3.0)  # served again right after?
        rec["after_overload_completed_share"] = sum(o.status == 200 for o in after) / max(1, len(after))
        result["scenarios"].append(rec)
        step()
        time.sleep(2)

        name = "replica-killed"
        app = be.app_name(KILLED_STAGE, (INITIAL[KILLED_STAGE].variant, INITIAL[KILLED_STAGE].cores))
        say(f"{name}: {rps:g} rps for {secs[name]:g} s; one of {KILLED_STAGE}'s 2 replicas killed at 1/3")

        def kill() -> dict:
            t0 = time.monotonic()
            killed = kill_one_replica(app)
            back = None
            while time.monotonic() - t0 < APPLY_WAIT_S:
                if len(_replica_actors(app)) >= INITIAL[KILLED_STAGE].replicas and killed not in {
                    a for a, _ in _replica_actors(app)
                }:
                    back = time.monotonic() - t0
                    break
                time.sleep(0.2)
            return {"killed": killed, "replaced_after_s": back}

        outs, facts = under_load(rps, secs[name], secs[name] / 3, kill)
        result["scenarios"].append({**summarize(name, outs, rps, len(outs) / rps, sla, (503,)), **facts})
        step()
        time.sleep(2)

        name = "variant-switch"
        say(f"{name}: {rps:g} rps for {secs[name]:g} s; {KILLED_STAGE} -> {SWITCH_TO.variant} at 1/4")

        def switch() -> dict:
            t0 = time.monotonic()
            be.apply({KILLED_STAGE: SWITCH_TO})
            while time.monotonic() - t0 < APPLY_WAIT_S:
                st = be.stage_status()[KILLED_STAGE]
                if st.state is not ApplyState.PENDING:
                    return {"apply": st.state.name, "applied_after_s": time.monotonic() - t0, "reason": st.reason}
                time.sleep(0.05)
            return {"apply": "PENDING", "applied_after_s": None}

        outs, facts = under_load(rps, secs[name], secs[name] / 4, switch)
        rec = summarize(name, outs, rps, len(outs) / rps, sla, (503,))
        rec["served_by"] = dict(Counter(o.variants.get(KILLED_STAGE, "?") for o in outs if o.variants))
        result["scenarios"].append({**rec, **facts})
        step()
        time.sleep(2)

        name = "malformed"
        corpus = malformed_corpus(valid)
        seconds = n_bad / MALFORMED_RPS
        say(f"{name}: {n_bad} requests from {len(corpus)} distinct malformed bodies at {MALFORMED_RPS:g} rps")
        records = run(
            np.arange(n_bad) / MALFORMED_RPS,
            RunOptions(url=url, bodies=[b for b, _ in corpus], body_headers=[h for _, h in corpus], timeout_s=30.0),
        )
        bad = [
            Outcome(
                float(records.planned[i]),
                int(records.status[i]),
                records.reasons[i] or "",
                None,
                float(records.latency[i]),
            )
            for i in range(records.planned.size)
        ]
        rec = summarize(name, bad, MALFORMED_RPS, seconds, sla, tuple(range(400, 500)) + (503,))
        rec["distinct_bodies"] = len(corpus)
        rec["note"] = "refused = 4xx answers (the right one here); completed = malformed requests accepted"
        result["scenarios"].append(rec)
        step()
        after = load(rps, 3.0)
        result["served_after_all"] = sum(o.status == 200 for o in after) / max(1, len(after))
    finally:
        be.close()
        if started:
            ray.shutdown()
    return result
