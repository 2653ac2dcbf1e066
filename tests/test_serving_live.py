"""The live runtime on a real two-node Ray cluster (one per test session, `ray_cluster` in conftest.py): V2 endpoint with a standard client,
metrics, reconfiguration under load with every request accounted for, and the adapter in the loop.

The cluster is `ray.cluster_utils.Cluster` with two raylets on this machine, so every test here also serves
across nodes. Ray's files go to a private temp dir (RAY_TMPDIR), never under the home folder's defaults.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipetune import example_path
from pipetune.configs import ApplyState, StageConfig
from pipetune.loadgen.client import open_loop

pytestmark = pytest.mark.slow

DIGITS = example_path("digits")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def digits():
    from pipetune.profiles import load_profiles
    from pipetune.spec import load_pipeline

    p = load_pipeline(DIGITS)
    # The bundled SLA (50 ms) is the digits models' own scale; under the load of a busy 2-core test machine the
    # Ray path alone can take longer, and admission would then refuse by design. These tests check what the
    # runtime does (answers, switches, counts), so they serve the pipeline with a 1 s SLA.
    return p.model_copy(update={"sla": p.sla.model_copy(update={"seconds": 1.0})}), load_profiles(p)


@pytest.fixture()
def backend(ray_cluster, digits):
    from pipetune.serving.backend import RayServeBackend

    p, prof = digits
    init = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 2)}
    # every stage a replica: digits is light enough that the ingress would run it all itself otherwise
    be = RayServeBackend(p, init, prof, port=_free_port(), drop_after_s=5.0, inline=False)
    yield be
    be.close()


def _body(be, n: int = 1) -> dict:
    from pipetune.models.registry import variant_model_ref
    from pipetune.protocol import encode_request

    xs = variant_model_ref(be.pipeline, "features", "pca-16")().sample_inputs(n)
    return encode_request(xs, be.inputs[0])


def test_v2_endpoint_standard_client_metrics_and_two_nodes(backend, every_request_answered):
    """A stock V2 client (Triton's) works unchanged; bad input is a 400 that never reaches a model; the
    metrics endpoint reports arrivals, outcomes and the configuration; replicas run on both Ray nodes."""
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    be = backend
    c = http.InferenceServerClient(url=f"127.0.0.1:{be.port}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("digits")
    meta = c.get_model_metadata("digits")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    x = np.stack(_body_items(be, 4)).astype(np.float32)
    inp = http.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    res = c.infer("digits", [inp], outputs=[http.InferRequestedOutput("classify", binary_data=False)])
    labels = [json.loads(v) for v in res.as_numpy("classify")]
    assert len(labels) == 4 and all(0 <= int(v) <= 9 for v in labels)
    assert res.get_response()["parameters"]["variants"] == {"features": "pca-16", "classify": "logreg"}
    bad = http.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException, match="shape"):
        c.infer("digits", [bad])
    req = urllib.request.Request(f"http://127.0.0.1:{be.port}/v2/models/digits/infer", data=b"{", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 400 and "not JSON" in json.loads(refused.value.read())["error"]

    out = open_loop(f"http://127.0.0.1:{be.port}/v2/models/digits/infer", _body(be), 20, 3)
    served = every_request_answered(out)
    with urllib.request.urlopen(f"http://127.0.0.1:{be.port}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert _metric(metrics, 'pipetune_requests_total{outcome="completed"}') >= served + 1  # + the client's one
    assert _metric(metrics, 'pipetune_requests_total{outcome="refused"}') == len(out) - served
    assert _metric(metrics, "pipetune_bad_requests_total") == 2
    assert 'pipetune_stage_config{knob="replicas",stage="classify",variant="logreg"} 2.0' in metrics
    assert "pipetune_stage_latency_seconds_bucket" in metrics and "pipetune_batch_size_bucket" in metrics
    obs = be.observe()
    assert obs.completed >= served + 1 and obs.failed == 0 and obs.dropped == 0
    assert 40 <= obs.arrivals_per_s.sum() <= 61  # whole seconds only: the current one is still counting
    assert obs.cores_held == 1 + 1 + 2  # ingress + features + 2 x classify
    stats = be.ingress_handle().stats.remote().result()
    assert len(stats["nodes"]["classify"]) == 2, "the two classify replicas should run on both Ray nodes"


def _body_items(be, n):
    from pipetune.models.registry import variant_model_ref

    return variant_model_ref(be.pipeline, "features", "pca-16")().sample_inputs(n)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics")


def _wait_applied(be, stage: str, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        st = be.stage_status()[stage]
        assert st.state is not ApplyState.FAILED, st.reason
        if st.state is ApplyState.APPLIED:
            return time.perf_counter() - t0
        time.sleep(0.05)
    from ray import serve

    apps = {
        n: (str(a.status), {d: dict(x.replica_states) for d, x in a.deployments.items()})
        for n, a in serve.status().applications.items()
    }
    raise AssertionError(f"{stage} not applied within {timeout} s: {be.stage_status()[stage]}; Ray Serve: {apps}")


def test_zero_lost_while_batch_replicas_and_variant_change(backend, every_request_answered):
    """Under open-loop load, change a batch size, the replicas, a variant (make-before-break) and the cores:
    every request sent is accounted for (no request without an HTTP answer, no failure), and traffic moves
    to the new variant only once it serves."""
    be = backend
    url = f"http://127.0.0.1:{be.port}/v2/models/digits/infer"
    out: list = []
    changes_done = threading.Event()

    def send():  # 25 rps in 4 s chunks until one whole chunk has run after the last change (however long the
        while True:  # applies take on a loaded machine), so the final configuration is seen serving
            last = changes_done.is_set()
            out.extend(open_loop(url, _body(be), 25, 4))
            if last:
                return

    sender = threading.Thread(target=send)
    sender.start()
    try:  # the sender stops whatever happens here (a failed step would leave it sending: pytest could not exit)
        time.sleep(3)
        be.apply({"classify": StageConfig("logreg", 4, 1, 2)})
        t_batch = _wait_applied(be, "classify")
        time.sleep(2)
        be.apply({"classify": StageConfig("logreg", 4, 1, 3)})
        t_replica = _wait_applied(be, "classify")
        time.sleep(2)
        answer = be.apply({"classify": StageConfig("knn", 4, 1, 2)})
        assert answer["classify"].state is ApplyState.PENDING  # the new variant loads first
        # a new replica's start (a Ray worker importing its libraries, loading, warming up) on a 2-core machine that a
        # whole test suite shares took 30-60 s of wall time
        t_switch = _wait_applied(be, "classify", timeout=120.0)
        time.sleep(2)
        be.apply({"features": StageConfig("pca-16", 2, 2, 1)})
        t_cores = _wait_applied(be, "features")
    finally:
        changes_done.set()
        sender.join()
    print(f"apply s: batch {t_batch:.2f}, replica {t_replica:.2f}, switch {t_switch:.2f}, cores {t_cores:.2f}")
    assert len(out) >= 25 * 4 * 3 and len(out) % (25 * 4) == 0  # every request planned has an outcome
    every_request_answered(out)
    seen = [o.variants["classify"] for o in out if o.status == 200]
    assert "logreg" in seen and "knn" in seen
    first_knn = seen.index("knn")
    assert all(v == "knn" for v in seen[first_knn + 50 :]), "traffic went back to the old variant"
    assert be.in_effect() == {"features": StageConfig("pca-16", 2, 2, 1), "classify": StageConfig("knn", 4, 1, 2)}
    assert t_batch < 5.0 and t_switch < 120.0


def test_a_switch_among_warm_variants_starts_no_replica_and_loses_nothing(ray_cluster, digits, every_request_answered):
    """A stage with warm variants: every replica holds them loaded, so switching among them under load is a
    route change (applied within seconds, the same application and replica serving), every request answered,
    and the responses name the new variant once it applies; a variant outside them still switches
    make-before-break."""
    from pipetune.serving.backend import RayServeBackend

    p, prof = digits
    stages = [st.model_copy(update={"warm_variants": ["pca-8", "pca-16"]}) if st.name == "features" else st
              for st in p.stages]  # fmt: skip
    p = p.model_copy(update={"stages": stages})
    init = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 1)}
    be = RayServeBackend(p, init, prof, port=_free_port(), drop_after_s=5.0, inline=False)
    try:
        from ray import serve

        app = be.app_of("features", init["features"])
        assert app.endswith("--features--warm--c1")
        handle = serve.get_deployment_handle("stage", app_name=app)
        before = handle.cpu_stats.remote().result(timeout_s=30)["replica"]
        url = f"http://127.0.0.1:{be.port}/v2/models/digits/infer"
        out: list = []
        sender = threading.Thread(target=lambda: out.extend(open_loop(url, _body(be), 25, 8)))
        sender.start()
        try:
            time.sleep(3)
            be.apply({"features": StageConfig("pca-8", 2, 1, 1)})
            t_switch = _wait_applied(be, "features", timeout=60.0)
        finally:
            sender.join()
        every_request_answered(out)
        seen = [o.variants["features"] for o in out if o.status == 200]
        assert "pca-16" in seen and "pca-8" in seen
        assert all(v == "pca-8" for v in seen[seen.index("pca-8") :]), "traffic went back to the old variant"
        assert t_switch < 10.0, f"a warm switch took {t_switch:.1f} s"
        assert handle.cpu_stats.remote().result(timeout_s=30)["replica"] == before  # the same replica serves
        assert be.in_effect()["features"] == StageConfig("pca-8", 2, 1, 1)
        # out of the warm variants: a new generation, make-before-break as before
        assert be.apply({"features": StageConfig("pca-4", 1, 1, 1)})["features"].state is ApplyState.PENDING
        _wait_applied(be, "features", timeout=120.0)
        assert be.in_effect()["features"] == StageConfig("pca-4", 1, 1, 1)
    finally:
        be.close()


def test_failed_and_unplaceable_requests_are_reported(backend):
    """A configuration that cannot be placed is FAILED with the reason; the old one keeps serving."""
    be = backend
    st = be.apply({"classify": StageConfig("svc", 1, 2, 8)})["classify"]
    assert st.state is ApplyState.FAILED and "CPUs" in st.reason
    assert be.in_effect()["classify"] == StageConfig("logreg", 1, 1, 2)
    assert be.stage_status()["classify"].state is ApplyState.FAILED


def test_adapter_drives_the_live_backend(backend, digits, tmp_path, every_request_answered):
    """The same Adapter that drives the simulator decides on the live backend; decisions are logged."""
    from pipetune.serving.session import planning_pipeline, run_adapter

    be = backend
    p, prof = digits
    planning = planning_pipeline(p, be.budget_cores, 0.25)
    out: list = []
    url = f"http://127.0.0.1:{be.port}/v2/models/digits/infer"
    sender = threading.Thread(target=lambda: out.extend(open_loop(url, _body(be), 30, 11)))
    sender.start()
    log = tmp_path / "decisions.jsonl"
    decisions = run_adapter(be, planning, prof, predictor="reactive", interval_s=3.0, until_s=be.now() + 10.5, log=log)
    sender.join()
    assert len(decisions) >= 3
    assert all(d.error is None and not d.overrun for d in decisions)
    assert any(d.observed_rps > 10 for d in decisions)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == len(decisions) and all(set(x["in_effect"]) == {"features", "classify"} for x in lines)
    every_request_answered(out)


def test_fused_and_batched_path_answers_as_the_plain_path_and_switches_without_loss(
    ray_cluster, digits, every_request_answered
):
    """The request path's two savings change no answer: `features` run inline in the ingress (a runtime profile
    naming it) and `classify` fed in batches from the caller return, on the same inputs, exactly what the plain
    path returns (Ray Serve's proxy, every stage a replica, one call per item). Under load the batched calls carry
    several items each, and a variant switch of the inline stage loses nothing."""
    from pipetune.models.registry import variant_model_ref
    from pipetune.protocol import encode_request
    from pipetune.runtime_profile import RuntimeProfile
    from pipetune.serving.backend import RayServeBackend

    p, prof = digits
    xs = variant_model_ref(p, "features", "pca-16")().sample_inputs(32)
    init = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 8, 1, 1)}

    def answers(be) -> tuple[list, list]:
        url = f"http://127.0.0.1:{be.port}/v2/models/digits/infer"

        def post(items: list) -> list:
            body = json.dumps(encode_request(items, be.inputs[0])).encode()
            with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=30) as r:
                return json.loads(r.read())["outputs"][0]["data"]

        with ThreadPoolExecutor(8) as pool:  # concurrent single-item requests: the caller has items to batch
            one = [out for outs in pool.map(post, [[x] for x in xs]) for out in outs]
        return one, post(xs)

    plain = RayServeBackend(
        p, init, prof, port=_free_port(), front="proxy", inline=False, caller_batching=False, drop_after_s=5.0
    )
    try:
        assert plain.inline == set()
        plain_one, plain_whole = answers(plain)
    finally:
        plain.close()
    rt = RuntimeProfile(host_cores=2, request_cpu_s=0.0, call_cpu_s=0.003, item_cpu_s=0.0, inline_stages=["features"])
    fused = RayServeBackend(p, init, prof, port=_free_port(), runtime=rt, drop_after_s=5.0)
    try:
        assert fused.inline == {"features"}
        fused_one, fused_whole = answers(fused)
        assert fused_one == plain_one and fused_whole == plain_whole
        url = f"http://127.0.0.1:{fused.port}/v2/models/digits/infer"
        recs: list = []
        sender = threading.Thread(target=lambda: recs.extend(open_loop(url, _body(fused), 30, 6)))
        sender.start()
        time.sleep(2)
        fused.apply({"features": StageConfig("pca-8", 1, 1, 1)})
        _wait_applied(fused, "features")
        sender.join()
        answered = every_request_answered(recs)
        served = {r.variants["features"] for r in recs if r.status == 200}
        assert served == {"pca-16", "pca-8"}, served  # the switch happened under load
        calls = fused.ingress_handle().stats.remote().result()["calls"]["classify"]
        # every request answered sent its item to classify (admission may refuse some of the 180 on a loaded
        # machine: that is a refusal, not a loss)
        assert calls["items"] >= 64 + answered and calls["calls"] <= calls["items"], calls
    finally:
        fused.close()
