"""Warm variants in the serving runtime's pure parts (no Ray): a stage whose replicas keep several variants loaded
(`warm_variants`) is served by one generation per cores, so a switch among them is in place (a route change, no
replica starts), while a switch to a variant outside them is make-before-break as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipetune import example_path
from pipetune.configs import ApplyState, SplitConfig, StageConfig
from pipetune.profiles import load_profiles
from pipetune.serving.config import ServeOptions, export_config, generation_key, ingress_args, serve_config, warm_of
from pipetune.serving.reconcile import AppReport, AppStatus, DeploymentState, Reconciler, ReplicaState, read_deployed
from pipetune.spec import WARM_GROUP, parse_pipeline

C = StageConfig
WARM = ["pca-8", "pca-16"]


def _digits(warm: list[str]):
    path = Path(example_path("digits"))
    data = yaml.safe_load(path.read_text())
    for st in data["stages"]:
        if st["name"] == "features":
            st["warm_variants"] = warm
    return parse_pipeline(data, base_dir=path.parent)


@pytest.fixture(scope="module")
def warm_digits():
    p = _digits(WARM)
    return p, load_profiles(p)


def _running(n: int) -> AppReport:
    return AppReport(AppStatus.RUNNING, "", DeploymentState.HEALTHY, {ReplicaState.RUNNING: n})


def _serving_rec(p, initial):
    rec = Reconciler(p.name, initial, warm=warm_of(p))
    snap = {rec.app(s, c): _running(c.replicas) for s, c in initial.items()}
    assert rec.observe(snap, t=1.0) and rec.all_serving()
    return rec, snap


def test_warm_variants_share_one_generation_and_split_parts_do_not():
    assert generation_key(WARM, C("pca-8", 1, 1, 1)) == (WARM_GROUP, 1)
    assert generation_key(WARM, C("pca-16", 4, 2, 1)) == (WARM_GROUP, 2)
    assert generation_key(WARM, C("pca-4", 1, 1, 1)) == ("pca-4", 1)  # not warm: its own
    assert generation_key(WARM, C("pca-8", 1, 1, 1), split=True) == ("pca-8", 1)
    assert generation_key(["pca-8"], C("pca-8", 1, 1, 1)) == ("pca-8", 1)  # one warm variant: nothing to switch to


def test_a_switch_among_warm_variants_is_in_place_and_routes_the_same_replicas(warm_digits):
    p, prof = warm_digits
    initial = {"features": C("pca-16", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}
    rec, snap = _serving_rec(p, initial)
    app = rec.app("features", initial["features"])
    assert app == f"digits--features--{WARM_GROUP}--c1"
    new = C("pca-8", 4, 1, 1)
    rec.request("features", new)
    # in place: the same generation now serves pca-8 at batch 4, nothing starts, nothing retires
    assert rec.generations()["features"] == [new] and rec.serving()["features"] == new
    assert rec.retiring() == {} and rec.in_effect()["features"] == new
    rec.deployed(["features"], t=2.0)
    assert rec.stage_status("features").state is ApplyState.PENDING  # until Ray reports after the deploy
    assert not rec.observe(snap, t=3.0)
    assert rec.stage_status("features").state is ApplyState.APPLIED
    cfg = serve_config(
        p,
        prof,
        rec.keyed_generations(),
        rec.serving(),
        ServeOptions.for_pipeline(p),
        args=ingress_args(p, ServeOptions.for_pipeline(p)),
    )
    apps = {a["name"]: a for a in cfg["applications"]}
    stage_app = apps[app]
    # the args name the group and every warm model (fixed for the generation's life: Ray would restart it on a
    # change), the variant served is the ingress's route
    assert stage_app["args"]["variant"] == WARM_GROUP and list(stage_app["args"]["models"]) == WARM
    assert stage_app["deployments"][0]["user_config"]["batch"] == 4
    uc = apps["digits--ingress"]["deployments"][0]["user_config"]
    assert uc["routes"]["features"] == app and uc["variants"]["features"] == "pca-8"
    before = serve_config(p, prof, {"features": [initial["features"]], "classify": [initial["classify"]]}, initial,
                          ServeOptions.for_pipeline(p), args={})  # fmt: skip
    assert {a["name"]: a["args"] for a in before["applications"]}[app] == stage_app["args"]


def test_a_switch_out_of_the_warm_variants_is_make_before_break(warm_digits):
    p, _ = warm_digits
    initial = {"features": C("pca-16", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}
    rec, snap = _serving_rec(p, initial)
    for new in (C("pca-4", 2, 1, 1), C("pca-8", 2, 2, 1)):  # a variant not warm; a warm one on other cores
        rec.request("features", new)
        assert len(rec.generations()["features"]) == 2 and rec.serving()["features"] == initial["features"]
        assert rec.stage_status("features").state is ApplyState.PENDING
    snap[rec.app("features", new)] = _running(1)
    assert rec.observe(snap, t=4.0) and rec.serving()["features"] == new
    assert rec.retiring() == {rec.app("features", initial["features"]): 4.0}


def test_without_warm_variants_the_same_switch_starts_a_generation():
    p = _digits([])
    initial = {"features": C("pca-16", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}
    rec, _ = _serving_rec(p, initial)
    rec.request("features", C("pca-8", 4, 1, 1))
    assert len(rec.generations()["features"]) == 2 and rec.serving()["features"] == initial["features"]


def test_a_split_stage_keeps_a_generation_per_part(warm_digits):
    p, prof = warm_digits
    split = SplitConfig.of([(C("pca-8", 1, 1, 1), 0.5), (C("pca-16", 1, 1, 1), 0.5)])
    cfg = export_config(p, {"features": split, "classify": C("logreg", 4, 1, 2)}, prof, ServeOptions.for_pipeline(p))
    names = sorted(a["name"] for a in cfg["applications"] if "--features--" in a["name"])
    assert names == ["digits--features--pca-16--c1", "digits--features--pca-8--c1"]


def test_an_adapter_taking_over_reads_a_warm_generation_as_the_variant_routed(warm_digits):
    p, prof = warm_digits
    serving = {"features": C("pca-8", 2, 1, 1), "classify": C("logreg", 4, 1, 2)}
    cfg = export_config(p, serving, prof, ServeOptions.for_pipeline(p))
    apps = {a["name"]: a for a in cfg["applications"]}
    d = read_deployed("digits", ["features", "classify"], apps, warm_of(p))
    assert d is not None and d.generations["features"] == [serving["features"]]
    rec = Reconciler.resumed("digits", d, warm=warm_of(p))
    assert rec.serving()["features"] == serving["features"] and rec.generations()["features"] == [serving["features"]]
