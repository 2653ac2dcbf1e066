"""Two pipelines side by side on one Ray (serving/fleet.py) on the session's two-node cluster (`ray_cluster`):
both answer V2 on their own ports, and the one joint loop applies a decision to one of them (make-before-break)
while both keep serving, with every request answered."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import pytest

from pipetune import example_path
from pipetune.configs import ApplyState, StageConfig
from pipetune.loadgen.client import open_loop

pytestmark = pytest.mark.slow

DIGITS = example_path("digits")
RATE = 10.0  # requests/s the loop plans for, and what each pipeline is sent


class _Steady:
    """A forecast of RATE whatever the history: the joint decision is then known in advance (the planner, the
    MILP and both backends are the real ones)."""

    name = "steady"

    def predict(self, history) -> float:  # noqa: ANN001 - the arrivals per second
        return RATE


def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 free (the fleet serves pipeline i on p + i)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n > 65535:
            continue
        try:
            for i in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + i))
            return p
        except OSError:
            continue
    raise AssertionError("no run of free ports")


def _body(pipeline) -> dict:
    from pipetune.models.registry import variant_model_ref
    from pipetune.protocol import encode_request
    from pipetune.serving.config import input_specs

    xs = variant_model_ref(pipeline, "features", "pca-16")().sample_inputs(1)
    return encode_request(xs, input_specs(pipeline)[0])


def test_two_pipelines_side_by_side_one_joint_decision_applied_to_one_none_lost(ray_cluster, every_request_answered):
    from ray import serve

    from pipetune.optimizer.joint import SharedBudgetPlanner
    from pipetune.profiles import load_profiles
    from pipetune.serving.fleet import Fleet, run_joint_adapter
    from pipetune.spec import load_pipeline

    base = load_pipeline(DIGITS)
    # A 1 s SLA, as in test_serving_live.py: on a busy 2-core machine the Ray path alone can exceed digits' 50 ms.
    a = base.model_copy(update={"sla": base.sla.model_copy(update={"seconds": 1.0})})
    b = a.model_copy(update={"name": "digits-b"})
    profs = [load_profiles(a), load_profiles(b)]
    planner = SharedBudgetPlanner([a, b], profs, 4)  # 8 Ray CPUs: 2 ingresses, 4 for plans, 2 for a switch
    want, missed = planner.decide([RATE, RATE])
    assert not missed and sum(c.total_cores for cfg in want.values() for c in cfg.values()) <= 4
    cheap = {"features": StageConfig("pca-4", 1, 1, 1), "classify": StageConfig("tree", 1, 1, 1)}
    assert want["digits"] != cheap  # so the decision changes digits, and leaves digits-b as it starts
    start = {"digits": cheap, "digits-b": want["digits-b"]}
    port = _free_ports(2)
    # every stage a replica (digits is light enough that the ingress would run it all itself otherwise)
    fleet = Fleet([a, b], start, profs, port=port, inline=False, drop_after_s=5.0)
    try:
        urls = {be.name: f"http://127.0.0.1:{be.port}/v2/models/{be.name}/infer" for be in fleet.backends}
        assert [be.port for be in fleet.backends] == [port, port + 1]
        for name, url in urls.items():  # both answer V2, each as its own model
            req = urllib.request.Request(url, data=json.dumps(_body(a)).encode(), method="POST")
            req.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200 and json.loads(r.read())["model_name"] == name
        b_apps = {n for n in serve.status().applications if n.startswith("digits-b--")}

        out: dict[str, list] = {k: [] for k in urls}
        done = threading.Event()

        def send(name: str) -> None:  # in 3 s chunks until one whole chunk has run after the change applied
            while True:
                last = done.is_set()
                out[name].extend(open_loop(urls[name], _body(a), RATE, 3))
                if last:
                    return

        senders = [threading.Thread(target=send, args=(k,)) for k in urls]
        for t in senders:
            t.start()
        try:  # the senders stop whatever happens here (else a failed step leaves them sending forever)
            lead = fleet.backends[0]
            t_loop = time.monotonic()
            decisions = run_joint_adapter(fleet, planner, predictor=_Steady(), interval_s=2.0, until_s=lead.now() + 5.0)
            # one clock for the loop: every 2 s from its start, whatever the gap between the pipelines' starts
            assert len(decisions) == 2 and time.monotonic() - t_loop < 5.0 + 3.0
            first = decisions[0]
            assert first.changed_stages["digits"] and first.changed_stages["digits-b"] == []
            assert all(d.planned_cores <= 4 and not d.missed for d in decisions)
            t0 = time.monotonic()
            while fleet.backend("digits").in_effect() != want["digits"]:
                st = fleet.backend("digits").stage_status()
                assert all(s.state is not ApplyState.FAILED for s in st.values()), st
                assert time.monotonic() - t0 < 90, st
                time.sleep(0.2)
        finally:
            done.set()
            for t in senders:
                t.join()
        assert fleet.backend("digits-b").in_effect() == want["digits-b"]
        assert {n for n in serve.status().applications if n.startswith("digits-b--")} == b_apps  # untouched
        for got in out.values():
            every_request_answered(got)
        seen = [o.variants["classify"] for o in out["digits"] if o.status == 200]
        assert seen[0] == "tree" and seen[-1] == want["digits"]["classify"].variant
        assert {o.variants["classify"] for o in out["digits-b"] if o.status == 200} == {
            want["digits-b"]["classify"].variant
        }
    finally:
        fleet.close()
