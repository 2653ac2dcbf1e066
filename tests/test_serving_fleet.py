"""Several pipelines on one Ray Serve (serving/fleet.py), the parts that need no Ray: one Serve config for all,
the shared deployer's bookkeeping, the checks a user's input meets (names, budget), and the CLI's refusals
before any Ray starts. The live side: tests/test_serving_fleet_live.py."""

from __future__ import annotations

import pytest

from pipetune import example_path
from pipetune.configs import StageConfig
from pipetune.serving.config import ServeOptions, ServingError, export_config
from pipetune.serving.fleet import SharedDeployer, check_names, merged_config, plan_budget, start_configs

DIGITS = example_path("digits")


@pytest.fixture(scope="module")
def two():
    """digits and a copy of it named digits-b (same models and profile)."""
    from pipetune.profiles import load_profiles
    from pipetune.spec import load_pipeline

    a = load_pipeline(DIGITS)
    b = a.model_copy(update={"name": "digits-b"})
    return [a, b], [load_profiles(a), load_profiles(b)]


def _config(p, prof, front="direct", port=8000):
    cfg = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 2)}
    return export_config(p, cfg, prof, ServeOptions.for_pipeline(p, front=front, port=port))


def test_merged_config_holds_every_pipelines_applications_with_no_shared_route(two):
    from ray.serve.schema import ServeDeploySchema

    (a, b), (pa, pb) = two
    ca, cb = _config(a, pa), _config(b, pb, port=8001)
    with pytest.raises(Exception, match="route"):  # what Serve says of the two configs put side by side as they are
        ServeDeploySchema.model_validate({**ca, "applications": ca["applications"] + cb["applications"]})
    merged = merged_config({"digits": ca, "digits-b": cb})
    ServeDeploySchema.model_validate(merged)
    names = [x["name"] for x in merged["applications"]]
    assert names == [x["name"] for x in ca["applications"] + cb["applications"]]
    assert {"digits--ingress", "digits-b--ingress"} <= set(names)
    assert all(x["route_prefix"] is None for x in merged["applications"])
    # each ingress keeps its own port (its own HTTP server)
    ports = {x["name"]: x["args"]["front"]["port"] for x in merged["applications"] if x["name"].endswith("ingress")}
    assert ports == {"digits--ingress": 8000, "digits-b--ingress": 8001}
    assert merged["proxy_location"] == "Disabled"


def test_merged_config_refuses_the_proxy_front_and_clashing_applications(two):
    (a, _), (pa, _) = two
    with pytest.raises(ServingError, match="direct front"):
        merged_config({"digits": _config(a, pa, front="proxy")})
    with pytest.raises(ServingError, match="belongs to pipelines 'digits' and 'other'"):
        merged_config({"digits": _config(a, pa), "other": _config(a, pa)})


def test_shared_deployer_sends_the_union_and_takes_one_pipeline_down_alone(two):
    (a, b), (pa, pb) = two
    sent: list[dict] = []
    shut: list[bool] = []
    shared = SharedDeployer(deploy=sent.append, shutdown=lambda: shut.append(True))
    da, db = shared.part("digits"), shared.part("digits-b")
    da.deploy(_config(a, pa))
    db.deploy(_config(b, pb, port=8001))

    def apps(i):
        return {x["name"] for x in sent[i]["applications"]}

    assert all(n.startswith("digits--") for n in apps(0))
    assert apps(1) == apps(0) | {x["name"] for x in _config(b, pb)["applications"]}
    # a change of one pipeline is sent with the other's applications as they were
    bigger = {"features": StageConfig("pixels", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 2)}
    da.deploy(export_config(a, bigger, pa, ServeOptions.for_pipeline(a, front="direct")))
    assert "digits--features--pixels--c1" in apps(2) and "digits--features--pca-16--c1" not in apps(2)
    assert {n for n in apps(2) if n.startswith("digits-b")} == {n for n in apps(1) if n.startswith("digits-b")}
    # a refused union sends nothing and changes nothing
    with pytest.raises(ServingError):
        db.deploy(_config(b, pb, front="proxy"))
    assert len(sent) == 3 and shared.pipelines == ["digits", "digits-b"]
    da.shutdown()
    assert all(n.startswith("digits-b--") for n in apps(3)) and not shut
    db.shutdown()
    assert shut == [True] and len(sent) == 4


def test_check_names_refuses_two_pipelines_of_one_name(two):
    (a, b), _ = two
    check_names([a, b])
    with pytest.raises(ServingError, match=r"x\.yaml and y\.yaml are both named 'digits' \(their `name:` field\)"):
        check_names([a, b, a], files=["x.yaml", "z.yaml", "y.yaml"])


def test_plan_budget_is_ray_less_the_ingresses_and_the_reserve_or_a_smaller_budget():
    assert plan_budget(8, 2, 0.25) == 4  # (8 - 2) x 0.75 = 4.5 -> 4
    assert plan_budget(8, 2, 0.0) == 6
    assert plan_budget(8, 2, 0.25, budget_cores=3) == 3
    with pytest.raises(ServingError, match=r"--budget-cores 5 is more than this Ray can hold.*give --budget-cores 4"):
        plan_budget(8, 2, 0.25, budget_cores=5)
    with pytest.raises(ServingError, match="give Ray more CPUs"):
        plan_budget(3, 2, 0.25)


def test_start_configs_fit_the_budget_and_a_budget_below_the_need_is_refused(two):
    from pipetune.optimizer.joint import SharedBudgetPlanner

    pipes, profs = two
    planner = SharedBudgetPlanner(pipes, profs, 6)
    configs, missed = start_configs(planner, [20.0, 20.0])
    assert set(configs) == {"digits", "digits-b"} and not missed
    assert sum(c.total_cores for cfg in configs.values() for c in cfg.values()) <= 6
    assert all(set(cfg) == {"features", "classify"} for cfg in configs.values())
    with pytest.raises(ServingError, match=r"--budget-cores 3 is below.*need 4 cores together.*--budget-cores 4 or"):
        start_configs(SharedBudgetPlanner(pipes, profs, 3), [1.0, 1.0])
    with pytest.raises(ServingError, match=r"the 3 cores Ray's 6 CPUs leave.*need 4 cores.*give Ray more CPUs"):
        start_configs(SharedBudgetPlanner(pipes, profs, 3), [1.0, 1.0], "Ray's 6 CPUs leave for plans")


def test_cli_refuses_bad_fleet_input_before_ray_starts(pipetune_cli, tmp_path):
    import ray

    was = ray.is_initialized()  # the session's shared cluster may be up already: the command must not start one
    code, _, err = pipetune_cli("serve", str(DIGITS), str(DIGITS), "--duration", "1")
    assert code == 2 and "both named 'digits'" in err and "distinct name" in err and "Traceback" not in err, err
    code, _, err = pipetune_cli("serve", str(DIGITS), "--budget-cores", "1")
    assert code == 2 and "--budget-cores 1 is below" in err, err
    code, _, err = pipetune_cli("serve", str(DIGITS), str(DIGITS), "--plan", str(tmp_path / "p.json"))
    assert code == 2 and "--plan: one pipeline's options" in err, err
    code, _, err = pipetune_cli("serve", str(DIGITS), str(DIGITS), "--policy", "rim")
    assert code == 2 and "--policy rim" in err, err
    assert ray.is_initialized() == was


class _Steady:
    name = "steady"

    def predict(self, history) -> float:  # noqa: ANN001 - arrivals per second
        return 20.0


def test_a_failed_request_is_planned_again_from_what_serves(two):
    """The joint loop's planner view (`_Recorded`): a stage whose last request failed has its target reset to
    what serves, so the next decision asks for the plan again (JointAdapter alone would think it asked already).
    Driven over the simulator, which refuses a configuration the way the live backend does."""
    import numpy as np

    from pipetune.adapter import JointAdapter
    from pipetune.backends.simulator import SimSettings, Simulator
    from pipetune.configs import ApplyState
    from pipetune.optimizer.joint import SharedBudgetPlanner
    from pipetune.serving.fleet import _Recorded

    (a, _), (pa, _) = two
    planner = SharedBudgetPlanner([a], [pa], 4)
    want = planner.decide([20.0])[0]["digits"]
    assert want is not None
    start = {"features": StageConfig("pca-4", 1, 1, 1), "classify": StageConfig("tree", 1, 1, 1)}
    assert want["classify"] != start["classify"]
    sim = Simulator(a, pa, np.linspace(0.0, 30.0, 600), start, SimSettings(seed=0))
    recorded = _Recorded(planner, [sim])  # type: ignore[list-item]
    loop = JointAdapter([sim], recorded, predictor=_Steady(), interval_s=1.0)
    recorded.loop = loop
    # as if the loop had asked for the plan and the backend had refused it
    bad = StageConfig(want["classify"].variant, 1, 1, 0)
    assert sim.apply({"classify": bad})["classify"].state is ApplyState.FAILED
    loop.target["digits"]["classify"] = want["classify"]
    loop.step()
    assert recorded.replanned == {"digits": ["classify"]}
    assert sim.stage_status()["classify"].target == want["classify"]  # asked again
    assert sim.stage_status()["classify"].state is not ApplyState.FAILED
    loop.step()  # nothing failed now: nothing planned again
    assert recorded.replanned == {"digits": []}
