"""A split stage on the live runtime (caps.mix_variants 2): the reconciler runs one generation per part and
moves the stage's traffic to the split once every part serves (make-before-break), the ingress's routes carry
each part's application and share, and one short live run routes a stage's items by share."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from pipetune import example_path
from pipetune.configs import ApplyState, SplitConfig, StageConfig
from pipetune.loadgen.client import open_loop
from pipetune.profiles import load_profiles
from pipetune.serving.config import INGRESS_DEPLOYMENT, ServeOptions, export_config
from pipetune.serving.reconcile import AppReport, AppStatus, DeploymentState, Reconciler, ReplicaState
from pipetune.spec import load_pipeline

C = StageConfig
INITIAL = {"features": C("pca-16", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}
SPLIT = SplitConfig.of([(C("logreg", 4, 1, 2), 0.75), (C("knn", 2, 1, 1), 0.25)])


def _digits(k: int = 2):
    p = load_pipeline(example_path("digits"))
    p = p.model_copy(update={"caps": p.caps.model_copy(update={"mix_variants": k})})
    return p.model_copy(update={"sla": p.sla.model_copy(update={"seconds": 1.0})}), load_profiles(p)


def _report(status: str, running: int) -> AppReport:
    return AppReport(AppStatus.read(status), "", DeploymentState.read("HEALTHY"), {ReplicaState.RUNNING: running})


def test_the_reconciler_routes_a_split_once_every_part_serves_and_back():
    rec = Reconciler("digits", INITIAL)
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("RUNNING", 2)}
    rec.observe(snap, t=1.0)
    # to the split: logreg stays (in place), knn loads beside it; logreg alone takes everything meanwhile
    assert rec.held_elsewhere("classify", SPLIT) == f.total_cores  # logreg is kept, not replaced
    rec.request("classify", SPLIT)
    rec.deployed(["classify"], t=2.0)
    knn = C("knn", 2, 1, 1)
    assert sorted(g.variant for g in rec.generations()["classify"]) == ["knn", "logreg"]
    snap[rec.app("classify", knn)] = _report("DEPLOYING", 0)
    assert not rec.observe(snap, t=3.0)
    assert rec.serving()["classify"] == c and rec.stage_status("classify").state is ApplyState.PENDING
    snap[rec.app("classify", knn)] = _report("RUNNING", 1)
    assert rec.observe(snap, t=4.0)  # every part ready: the traffic moves to the split
    assert rec.serving()["classify"] == SPLIT
    assert rec.stage_status("classify").state is ApplyState.APPLIED
    assert rec.in_effect()["classify"] == SPLIT
    # new shares, same parts: in place, at once
    shifted = SplitConfig.of([(C("logreg", 4, 1, 2), 0.5), (knn, 0.5)])
    rec.request("classify", shifted)
    assert rec.serving()["classify"] == shifted
    # back to one variant that is a part: in place; the other part's application retires (the ingress may still
    # send to it), then is dropped
    rec.request("classify", C("knn", 2, 1, 2), now=5.0)
    assert rec.serving()["classify"] == C("knn", 2, 1, 2)
    logreg = rec.app("classify", C("logreg", 4, 1, 2))
    assert rec.retiring() == {logreg: 5.0}
    assert rec.retire({logreg}) and [g.variant for g in rec.generations()["classify"]] == ["knn"]


def test_the_ingress_config_carries_every_part_and_its_share():
    p, prof = _digits()
    cfg = export_config(p, {"features": INITIAL["features"], "classify": SPLIT}, prof, ServeOptions.for_pipeline(p))
    apps = {a["name"] for a in cfg["applications"]}
    ingress = next(a for a in cfg["applications"] if a["deployments"][0]["name"] == INGRESS_DEPLOYMENT)
    user = ingress["deployments"][0]["user_config"]
    parts = user["splits"]["classify"]
    assert [(app in apps, share, c["variant"]) for app, share, c in parts] == [
        (True, 0.75, "logreg"),
        (True, 0.25, "knn"),
    ]
    assert user["routes"]["classify"] == parts[0][0]  # the main part is the stage's route
    assert "features" not in user["splits"]


@pytest.mark.slow
def test_live_a_split_stage_is_served_by_share_after_a_switch_without_loss(ray_cluster, every_request_answered):
    from pipetune.serving.backend import RayServeBackend

    p, prof = _digits()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # every stage a replica (digits is light enough that the ingress would run it all itself otherwise)
    be = RayServeBackend(p, dict(INITIAL), prof, port=port, drop_after_s=5.0, inline=False)
    try:
        url = f"http://127.0.0.1:{be.port}/v2/models/digits/infer"
        from pipetune.models.registry import variant_model_ref
        from pipetune.protocol import encode_request

        body = encode_request(variant_model_ref(p, "features", "pca-16")().sample_inputs(1), be.inputs[0])
        before = open_loop(url, body, 20, 1)
        assert {o.variants["classify"] for o in before if o.status == 200} == {"logreg"}
        answer = be.apply({"classify": SPLIT})
        assert answer["classify"].state is ApplyState.PENDING  # knn loads; logreg serves meanwhile
        during = []
        for _ in range(60):
            during += open_loop(url, body, 20, 1)
            if be.stage_status()["classify"].state is ApplyState.APPLIED:
                break
        assert be.stage_status()["classify"].state is ApplyState.APPLIED
        assert be.in_effect()["classify"] == SPLIT
        after = open_loop(url, body, 20, 4)
        every_request_answered(before + during + after)
        served = Counter(o.variants["classify"] for o in after if o.status == 200)
        # one item per request: the ingress's router gives each part its share (of the requests it admitted)
        n = served.total()
        assert abs(served["logreg"] - 0.75 * n) <= 1 and abs(served["knn"] - 0.25 * n) <= 1
    finally:
        be.close()
