"""The serving package's pure parts, without starting Ray: the Serve config builder (serving/config.py), the
reconciler (serving/reconcile.py) and the version check that guards the one private Ray call (serving/ray_api.py)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from pipetune import example_path
from pipetune.admission import UNLIMITED_INFLIGHT, profile_admission, service_floor
from pipetune.configs import ApplyState, StageConfig
from pipetune.profiles import load_profiles
from pipetune.serving.config import (
    INGRESS_DEPLOYMENT,
    STAGE_DEPLOYMENT,
    ServeOptions,
    ServingError,
    admitted,
    export_config,
    ingress_args,
    serve_config,
)
from pipetune.serving.reconcile import AppReport, AppStatus, DeploymentState, Reconciler, ReplicaState, read_status
from pipetune.spec import load_pipeline

C = StageConfig
INITIAL = {"features": C("pca-16", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}


@pytest.fixture(scope="module")
def digits():
    p = load_pipeline(example_path("digits"))
    return p, load_profiles(p)


def test_the_builder_and_the_reconciler_load_without_ray():
    code = (
        "import sys, pipetune.serving.config, pipetune.serving.reconcile; "
        "sys.exit(1 if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_export_serves_every_stage_with_the_admission_of_its_profile(digits):
    p, prof = digits
    opts = ServeOptions.for_pipeline(p, host="0.0.0.0", port=9000)
    cfg = export_config(p, INITIAL, prof, opts)
    assert cfg["http_options"] == {"host": "0.0.0.0", "port": 9000} and cfg["proxy_location"] == "EveryNode"
    ingress, *stages = cfg["applications"]
    assert ingress["name"] == "digits--ingress" and ingress["route_prefix"] == "/"
    uc = ingress["deployments"][0]["user_config"]
    assert ingress["deployments"][0]["name"] == INGRESS_DEPLOYMENT
    assert uc["routes"] == {"features": "digits--features--pca-16--c1", "classify": "digits--classify--logreg--c1"}
    assert uc["max_inflight"] == profile_admission(p, prof, INITIAL) >= 1
    assert uc["floor_inflight"] == service_floor(INITIAL) == 2 * 1 + 4 * 2
    assert uc["drop_after_s"] == 2 * p.sla.seconds and uc["epoch"] == 0.0
    assert ingress["args"]["graph"]["topo"] == ["features", "classify"]
    by_name = {a["name"]: a for a in stages}
    cls = by_name["digits--classify--logreg--c1"]["deployments"][0]
    assert cls["name"] == STAGE_DEPLOYMENT and cls["num_replicas"] == 2
    assert cls["user_config"]["batch"] == 4 and cls["ray_actor_options"] == {"num_cpus": 1}
    pytest.importorskip("ray")
    from ray.serve.schema import ServeDeploySchema  # Ray's own schema accepts it (imported, not started)

    ServeDeploySchema.model_validate(cfg)


def test_admission_follows_the_capacity_the_host_holds_under_the_plan(digits):
    import math

    from pipetune.optimizer.options import capacity_rps
    from pipetune.runtime_profile import RuntimeProfile

    p, prof = digits
    alone = profile_admission(p, prof, INITIAL)
    assert admitted(p, prof, INITIAL) == alone  # no runtime profile: the profile's limit
    # a host whose own CPU per request allows far less than the replicas: admission follows the host
    small = RuntimeProfile(host_cores=1.0, request_cpu_s=0.02, call_cpu_s=0.004, item_cpu_s=0.0, fusion=True)
    cap = capacity_rps(p, prof, INITIAL, small)
    assert admitted(p, prof, INITIAL, small) == max(1, math.ceil(cap * p.sla.seconds)) < alone
    # a roomy host: the replicas bound it, served a little slower on a shared host than profiled alone
    big = RuntimeProfile(host_cores=64.0, request_cpu_s=1e-5, call_cpu_s=1e-5, item_cpu_s=0.0, fusion=True)
    assert 0.8 * alone <= admitted(p, prof, INITIAL, big) <= alone
    uc = export_config(p, INITIAL, prof, ServeOptions.for_pipeline(p))["applications"][0]["deployments"][0]
    assert uc["user_config"]["max_inflight"] == alone


def test_a_switch_deploys_both_generations_and_routes_the_serving_one(digits):
    p, prof = digits
    opts = ServeOptions.for_pipeline(p, proxy_location="Disabled")
    new = C("pca-8", 2, 2, 1)
    gens = {"features": [INITIAL["features"], new], "classify": [INITIAL["classify"]]}
    cfg = serve_config(p, prof, gens, INITIAL, opts, args=ingress_args(p, opts), epoch=123.0)
    names = [a["name"] for a in cfg["applications"]]
    assert "digits--features--pca-16--c1" in names and "digits--features--pca-8--c2" in names
    uc = cfg["applications"][0]["deployments"][0]["user_config"]
    assert uc["routes"]["features"] == "digits--features--pca-16--c1" and uc["epoch"] == 123.0
    assert cfg["proxy_location"] == "Disabled"
    with pytest.raises(ServingError, match="not deployed"):
        serve_config(p, prof, {"features": [new], "classify": [INITIAL["classify"]]}, INITIAL, opts, args={})


def test_a_stage_without_a_route_admits_nothing_and_autoscaling_admits_everything(digits):
    p, prof = digits
    opts = ServeOptions.for_pipeline(p)
    gens = {s: [c] for s, c in INITIAL.items()}
    half = serve_config(p, prof, gens, {"features": INITIAL["features"]}, opts, args={})
    assert half["applications"][0]["deployments"][0]["user_config"]["max_inflight"] == 0
    auto = ServeOptions.for_pipeline(p, autoscale={"min_replicas": 1, "max_replicas": 4})
    cfg = serve_config(p, prof, gens, INITIAL, auto, args={})
    uc = cfg["applications"][0]["deployments"][0]["user_config"]
    assert uc["max_inflight"] == uc["floor_inflight"] == UNLIMITED_INFLIGHT
    d = cfg["applications"][1]["deployments"][0]
    assert "num_replicas" not in d and d["autoscaling_config"]["initial_replicas"] == 1


# ---- the reconciler -----------------------------------------------------------------------------------------
def _report(status: str, running: int, deployment: str = "HEALTHY", message: str = "") -> AppReport:
    return AppReport(AppStatus.read(status), message, DeploymentState.read(deployment), {ReplicaState.RUNNING: running})


def test_reconciler_start_switch_and_route_move():
    rec = Reconciler("digits", INITIAL)
    assert not rec.all_serving() and rec.in_effect()["features"].replicas == 0
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("DEPLOYING", 1)}
    assert rec.observe(snap, t=1.0) and rec.serving() == {"features": f}
    snap[rec.app("classify", c)] = _report("RUNNING", 2)
    assert rec.observe(snap, t=2.0) and rec.all_serving()
    assert rec.stage_status("classify").state is ApplyState.APPLIED
    # a variant switch: PENDING while the new generation loads, the old one still routed and counted
    new = C("pca-8", 2, 1, 1)
    assert rec.held_elsewhere("features", new) == c.total_cores + f.total_cores
    rec.request("features", new)
    rec.deployed(["features"], t=3.0)
    assert len(rec.generations()["features"]) == 2
    snap[rec.app("features", new)] = _report("DEPLOYING", 0, "UPDATING")
    assert not rec.observe(snap, t=4.0)
    assert rec.stage_status("features").state is ApplyState.PENDING
    assert rec.in_effect()["features"] == f
    snap[rec.app("features", new)] = _report("RUNNING", 1)
    assert rec.observe(snap, t=5.0)  # the route moves; the old generation stays deployed while it may be in use
    assert rec.serving()["features"] == new and rec.generations()["features"] == [f, new]
    assert rec.retiring() == {rec.app("features", f): 5.0}
    assert (
        rec.stage_status("features").state is ApplyState.PENDING
        and "once unused" in rec.stage_status("features").reason
    )
    assert rec.replicas_ready()["features"] == 1  # the retiring generation's replicas are not the stage's
    assert not rec.observe(snap, t=6.0) and not rec.retire({"another-app"})
    assert rec.retire({rec.app("features", f)})  # the ingress no longer sends to it: dropped from the target
    assert rec.generations()["features"] == [new] and rec.retiring() == {}
    assert rec.stage_status("features").state is ApplyState.APPLIED
    assert rec.replica_cores_held() == 1 + 2 + 1  # the old generation still reported (draining) counts


def test_a_retiring_generation_outlives_the_next_switch_and_can_take_the_traffic_back():
    """The generation the traffic left is deleted only when `retire` says so: a switch asked for meanwhile does
    not drop it, and one back to it moves the route back at once (it still runs)."""
    rec = Reconciler("digits", INITIAL)
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("RUNNING", 2)}
    rec.observe(snap, t=1.0)
    svc = C("svc", 4, 1, 2)
    rec.request("classify", svc)
    snap[rec.app("classify", svc)] = _report("RUNNING", 2)
    assert rec.observe(snap, t=2.0) and set(rec.retiring()) == {rec.app("classify", c)}
    knn = C("knn", 4, 1, 1)
    rec.request("classify", knn)  # svc serves, logreg retires, knn loads
    assert sorted(g.variant for g in rec.generations()["classify"]) == ["knn", "logreg", "svc"]
    rec.request("classify", c)  # back to logreg, which still runs: knn is dropped, logreg no longer retires
    assert sorted(g.variant for g in rec.generations()["classify"]) == ["logreg", "svc"] and rec.retiring() == {}
    assert rec.observe(snap, t=3.0) and rec.serving()["classify"] == c
    assert set(rec.retiring()) == {rec.app("classify", svc)}
    assert rec.retire(set(rec.retiring())) and rec.generations()["classify"] == [c]


def test_a_switch_stops_the_serving_generations_replicas_still_starting():
    """Make-before-break keeps what serves; replicas of the old generation still starting would only take the CPU
    the new generation needs to start."""
    rec = Reconciler("digits", INITIAL)
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("RUNNING", 2)}
    rec.observe(snap, t=1.0)
    grow = C("logreg", 4, 1, 3)  # one more replica of what serves: it starts
    rec.request("classify", grow)
    snap[rec.app("classify", grow)] = _report("RUNNING", 2)  # 2 of 3 running
    rec.observe(snap, t=2.0)
    new = C("svc", 4, 1, 2)
    rec.request("classify", new)
    gens = {g.variant: g for g in rec.generations()["classify"]}
    assert gens["logreg"].replicas == 2 and gens["svc"] == new  # the one starting is stopped
    assert rec.in_effect()["classify"].replicas == 2


def test_a_switch_moves_the_traffic_once_every_replica_asked_for_runs():
    """Make-before-break: the incoming generation takes the traffic once Ray reports it RUNNING with the replicas
    last asked for (growing it while it starts waits for the new ones too)."""
    rec = Reconciler("digits", INITIAL)
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("RUNNING", 2)}
    rec.observe(snap, t=1.0)
    rec.request("classify", C("svc", 4, 1, 1))
    grown = C("svc", 4, 1, 3)
    rec.request("classify", grown)  # the next decision wants more of it
    snap[rec.app("classify", grown)] = _report("DEPLOYING", 1, "UPDATING")
    assert not rec.observe(snap, t=2.0) and rec.in_effect()["classify"].variant == "logreg"
    snap[rec.app("classify", grown)] = _report("RUNNING", 3)
    assert rec.observe(snap, t=3.0) and rec.in_effect()["classify"] == grown


def test_reconciler_waits_for_a_status_newer_than_the_deploy_and_reports_failures():
    rec = Reconciler("digits", INITIAL)
    f, c = INITIAL["features"], INITIAL["classify"]
    snap = {rec.app("features", f): _report("RUNNING", 1), rec.app("classify", c): _report("RUNNING", 2)}
    rec.observe(snap, t=1.0)
    bigger = C("pca-16", 8, 1, 1)  # in place: same application, new batch
    rec.request("features", bigger)
    rec.deployed(["features"], t=2.0)
    rec.observe(snap, t=1.5)  # asked for before the deploy: cannot show it
    assert rec.stage_status("features").state is ApplyState.PENDING
    rec.observe(snap, t=2.5)
    assert rec.stage_status("features").state is ApplyState.APPLIED
    broken = C("svc", 1, 2, 1)
    rec.request("classify", broken)
    snap[rec.app("classify", broken)] = _report("DEPLOY_FAILED", 0, "DEPLOY_FAILED", "x" * 900 + "ImportError")
    assert rec.observe(snap, t=3.0)
    st = rec.stage_status("classify")
    assert st.state is ApplyState.FAILED and st.reason.endswith("ImportError") and len(st.reason) < 600
    assert rec.serving()["classify"] == c  # the old generation keeps serving
    rec.request("classify", C("logreg", 1, 1, 0), refused="replicas must be >= 1")
    assert rec.stage_status("classify").state is ApplyState.FAILED and rec.serving()["classify"] == c


def test_ray_states_are_read_as_enums_and_an_unknown_one_is_unknown():
    app = SimpleNamespace(
        status=SimpleNamespace(value="RUNNING"),
        message="",
        deployments={"stage": SimpleNamespace(status="HEALTHY", replica_states={"RUNNING": 2, "NEW_STATE": 1})},
    )
    rep = read_status(SimpleNamespace(applications={"a": app, "b": SimpleNamespace(status="???", deployments={})}))
    assert rep["a"].status is AppStatus.RUNNING and rep["a"].deployment is DeploymentState.HEALTHY
    assert rep["a"].running == 2 and rep["a"].replicas[ReplicaState.UNKNOWN] == 1
    assert rep["b"].status is AppStatus.UNKNOWN and rep["b"].deployment is None and rep["b"].running == 0


# ---- the private Ray call's guard ---------------------------------------------------------------------------
def test_ray_outside_the_tested_range_is_refused_naming_the_pin():
    from pipetune.serving.ray_api import TESTED_RAY, check_ray_version

    (lo, hi) = TESTED_RAY
    check_ray_version(f"{lo[0]}.{lo[1]}.0")
    for v in (f"{hi[0]}.{hi[1]}.0", f"{lo[0]}.{lo[1] - 1}.3", "3.0.0", "nightly"):
        with pytest.raises(ServingError, match=r"ray\[serve\]>="):
            check_ray_version(v)
    pytest.importorskip("ray")
    check_ray_version()  # the installed Ray is one the runtime is tested with


def test_the_pin_in_pyproject_is_the_tested_range():
    import tomllib
    from pathlib import Path

    from pipetune.serving.ray_api import TESTED_RAY

    (lo, hi) = TESTED_RAY
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert f"ray[serve]>={lo[0]}.{lo[1]},<{hi[0]}.{hi[1]}" in meta["project"]["optional-dependencies"]["serve"]
