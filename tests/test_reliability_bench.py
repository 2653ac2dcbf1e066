"""The reliability benchmark's parts that need no Ray: its malformed corpus (each body refused by the codec,
distinct, covering the kinds of breakage) and its per-scenario record."""

from __future__ import annotations

from pipetune import example_path
from pipetune.loadgen.client import Outcome
from pipetune.protocol import HEADER_LENGTH, ProtocolError, decode_request, encode_request
from pipetune.tooling.reliability_bench import holds, malformed_corpus, summarize


def test_the_malformed_corpus_is_distinct_and_every_body_is_refused_by_the_codec():
    from pipetune.models.registry import variant_model_ref
    from pipetune.serving.config import input_specs
    from pipetune.spec import load_pipeline

    p = load_pipeline(example_path("digits"))
    spec = input_specs(p)[0]
    valid = encode_request(variant_model_ref(p, "features", "pca-16")().sample_inputs(1), spec)
    corpus = malformed_corpus(valid, n=300)
    assert len(corpus) == 300 and len({b + repr(sorted(h.items())).encode() for b, h in corpus}) == 300
    refused = 0
    for body, headers in corpus:
        try:
            decode_request(body, [spec], header_length=headers.get(HEADER_LENGTH), content_type=headers["content-type"])
        except ProtocolError:
            refused += 1
    assert refused == len(corpus)
    assert any(h["content-type"] != "application/json" for _b, h in corpus)
    assert any(HEADER_LENGTH in h for _b, h in corpus)
    assert any(b.startswith(b"[[[[") for b, _h in corpus)
    assert malformed_corpus(valid, n=50) == malformed_corpus(valid, n=50)  # seeded: the same corpus every run


def test_a_scenario_record_counts_every_request_once():
    outs = [Outcome(0, 200, "", None, 0.01)] * 97 + [
        Outcome(0, 503, "http 503: at capacity", None, 0.001),
        Outcome(0, 504, "http 504: dropped", None, 0.1),
        Outcome(0, 0, "no answer", None, float("nan")),
    ]
    rec = summarize("x", outs, 10.0, 10.0, 0.05, (503,))
    assert (rec["sent"], rec["completed"], rec["refused"], rec["lost"]) == (100, 97, 1, 1)
    assert rec["failed"] == {"http 504: dropped": 1} and abs(rec["p99_accepted_s"] - 0.01) < 1e-12
    assert not holds(rec)  # one lost
    assert holds(summarize("x", outs[:97], 10.0, 10.0, 0.05, (503,)))


# ---- the adapter's restart: reading back what serves and what it decided (no Ray) ------------------------------
def _deployed_apps():
    """A digits pipeline as Ray reads its configs back: classify switching from logreg to knn."""
    stage = lambda st, v, b, n: {  # noqa: E731
        "name": f"digits--{st}--{v}--c1",
        "args": {"stage": st, "variant": v, "cores": 1},
        "deployments": [{"name": "stage", "num_replicas": n, "user_config": {"batch": b, "wait_s": 0.0}}],
    }
    configs = {"features": {"variant": "pca-16", "batch": 1, "cores": 1, "replicas": 1},
               "classify": {"variant": "logreg", "batch": 2, "cores": 1, "replicas": 2}}  # fmt: skip
    ingress = {
        "name": "digits--ingress",
        "args": {"graph": {"inline": {}}, "front": {"host": "127.0.0.1", "port": 8000}},
        "deployments": [{"name": "ingress", "user_config": {"configs": configs, "epoch": 123.0},
                         "ray_actor_options": {"num_cpus": 1.0, "resources": {"node:1.2.3.4": 0.001}}}],
    }  # fmt: skip
    return {
        "digits--ingress": ingress,
        "digits--features--pca-16--c1": stage("features", "pca-16", 1, 1),
        "digits--classify--logreg--c1": stage("classify", "logreg", 2, 2),
        "digits--classify--knn--c1": stage("classify", "knn", 4, 3),
        "other--ingress": {"name": "other--ingress"},
    }


def test_a_served_pipeline_is_read_back_and_a_switch_under_way_is_its_target():
    import pytest

    from pipetune.configs import ApplyState, StageConfig
    from pipetune.serving.config import ServingError
    from pipetune.serving.reconcile import AppReport, AppStatus, Reconciler, ReplicaState, read_deployed

    apps = _deployed_apps()
    d = read_deployed("digits", ["features", "classify"], apps)
    assert d is not None and d.epoch == 123.0 and d.ingress_resources == {"node:1.2.3.4": 0.001}
    assert d.serving["classify"] == StageConfig("logreg", 2, 1, 2)
    rec = Reconciler.resumed("digits", d)
    assert rec.serving() == d.serving
    st = rec.stage_status("classify")  # the incoming generation is what the stage is asked to become
    assert st.state is ApplyState.PENDING and st.target == StageConfig("knn", 4, 1, 3)
    running = AppReport(AppStatus.RUNNING, replicas={ReplicaState.RUNNING: 3})
    assert rec.observe({"digits--classify--knn--c1": running}, 1.0)  # ready: traffic moves, as it would have
    assert rec.serving()["classify"] == StageConfig("knn", 4, 1, 3)
    assert set(rec.retiring()) == {"digits--classify--logreg--c1"}  # deleted once the ingress no longer uses it
    assert rec.retire({"digits--classify--logreg--c1"}) and len(rec.generations()["classify"]) == 1
    # taken over while the generation the traffic left retires (the ingress config says which): it is not a switch
    # under way; it retires
    uc = apps["digits--ingress"]["deployments"][0]["user_config"]
    uc["retiring"] = ["digits--classify--knn--c1"]
    d = read_deployed("digits", ["features", "classify"], apps)
    assert d is not None and d.retiring == {"digits--classify--knn--c1"}
    rec = Reconciler.resumed("digits", d, now=7.0)
    assert rec.stage_status("classify").target == StageConfig("logreg", 2, 1, 2)
    assert rec.retiring() == {"digits--classify--knn--c1": 7.0} and rec.serving() == d.serving
    del uc["retiring"]
    assert read_deployed("nothing", ["features"], apps) is None
    with pytest.raises(ServingError, match="without stage 'extra'"):
        read_deployed("digits", ["features", "classify", "extra"], apps)
    del apps["digits--classify--logreg--c1"]
    with pytest.raises(ServingError, match="not deployed"):
        read_deployed("digits", ["features", "classify"], apps)
    with pytest.raises(ServingError, match="not a pipetune ingress"):
        read_deployed("other", ["features"], apps)


def test_the_decision_log_resumes_from_the_last_request_not_refused(tmp_path):
    import json

    import pytest

    from pipetune.configs import StageConfig
    from pipetune.errors import PipetuneError
    from pipetune.serving.session import _open_to_append, read_decision_log, resume_configs
    from pipetune.spec import load_pipeline

    pipe = load_pipeline(example_path("digits"))
    cfg = lambda v, n: {"variant": v, "batch": 1, "cores": 1, "replicas": n}  # noqa: E731
    d1 = {"t": 10.0, "configs": {"features": cfg("pca-16", 1), "classify": cfg("logreg", 2)}}
    d2 = {"t": 20.0, "configs": {"features": cfg("pixels", 1), "classify": cfg("knn", 2)},
          "apply_status": {"classify": {"state": "failed", "reason": "did not load"}}}  # fmt: skip
    log = tmp_path / "decisions.jsonl"
    assert read_decision_log(log) == [] and resume_configs([], pipe, log) is None  # first start: no log yet
    log.write_text(json.dumps(d1) + "\n" + json.dumps(d2) + "\n" + '{"t": 30.0, "conf')  # killed mid-line
    ds = read_decision_log(log)
    assert [d["t"] for d in ds] == [10.0, 20.0]
    assert resume_configs(ds, pipe, log) == {"features": StageConfig("pixels", 1, 1, 1),
                                             "classify": StageConfig("logreg", 1, 1, 2)}  # fmt: skip
    with _open_to_append(log) as f:  # the cut line goes before the next decision is added
        f.write(json.dumps(d1) + "\n")
    assert [d["t"] for d in read_decision_log(log)] == [10.0, 20.0, 10.0]
    log.write_text(json.dumps(d1) + "\nnot json\n" + json.dumps(d1) + "\n")
    with pytest.raises(PipetuneError, match="line 2 is not a decision"):
        read_decision_log(log)
    bad = {"t": 1.0, "configs": {"features": cfg("nope", 1), "classify": cfg("knn", 1)}}
    with pytest.raises(PipetuneError, match=r"configs.features.variant is 'nope'"):
        resume_configs([bad], pipe, log)
    with pytest.raises(PipetuneError, match="is a folder"):
        read_decision_log(tmp_path)


def test_serve_resume_and_keep_serving_refuse_bad_combinations_before_starting_ray(tmp_path, monkeypatch, capsys):
    import sys

    import pytest

    from pipetune.cli.main import run as cli_run

    digits = example_path("digits")
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    cases = [
        (["--resume", str(tmp_path / "d.jsonl"), "--plan", str(plan)], "--resume and --plan: choose one"),
        (["--resume", str(tmp_path / "d.jsonl"), "--log", str(tmp_path / "other.jsonl")], "appends to the log"),
        (["--keep-serving"], "--keep-serving needs --address"),
        (["--resume", str(tmp_path)], "is a folder"),
    ]
    for args, words in cases:
        monkeypatch.setattr(sys, "argv", ["pipetune", "serve", digits, *args])
        with pytest.raises(SystemExit) as e:  # through the real entry point: one error line, exit 2
            cli_run()
        err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
        assert e.value.code == 2 and "error:" in err and words in err and "Traceback" not in err, (args, err)


def test_scenario_names_and_the_longest_gap():
    import pytest

    from pipetune.errors import PipetuneError
    from pipetune.tooling.reliability_bench import SCENARIOS, longest_gap_s, parse_scenarios

    assert parse_scenarios("malformed, sustainable") == ["sustainable", "malformed"]  # the bench's order
    for bad in ("", "sustainable,nope", " , "):
        with pytest.raises(PipetuneError, match="--scenarios"):
            parse_scenarios(bad)
    assert set(parse_scenarios(",".join(SCENARIOS))) == set(SCENARIOS)
    outs = [Outcome(t / 10, 200, "", None, 0.01) for t in range(10)]
    outs[3:7] = [Outcome(t / 10, 503, "", None, 0.001) for t in range(3, 7)]
    assert abs(longest_gap_s(outs) - 0.5) < 1e-9 and longest_gap_s(outs[:1]) is None


# ---- every scenario, short, on the test session's Ray ----------------------------------------------------------
def test_every_scenario_short_loses_nothing(ray_cluster, monkeypatch):
    """Each scenario shortened (a few seconds of load; an action's end is still awaited under load): no request
    goes unanswered; a killed replica is replaced; the controller comes back without replacing a replica; the
    adapter killed and restarted takes over without re-deploying, on the same clock."""
    import socket

    from pipetune.tooling import reliability_bench
    from pipetune.tooling.reliability_bench import SCENARIOS, run_reliability_benchmark

    for knob, value in (
        ("CHUNK_S", 2.0),
        ("ADAPTER_INTERVAL_S", 1.0),
        ("ADAPTER_DECISIONS", 1),
        ("ADAPTER_DOWN_S", 1.0),
    ):
        monkeypatch.setattr(reliability_bench, knob, value)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secs = dict.fromkeys(SCENARIOS, 2.0)
    r = run_reliability_benchmark(rps=20.0, short=True, durations=secs, malformed=200, port=port)
    recs = {x["scenario"]: x for x in r["scenarios"]}
    assert list(recs) == list(SCENARIOS)
    for name, rec in recs.items():
        assert rec["lost"] == 0 and rec["sent"] > 0, (name, rec)
        assert rec["sent"] == rec["completed"] + rec["refused"] + sum(rec["failed"].values()), rec
    assert recs["malformed"]["completed"] == 0  # no malformed request was served
    for name in ("replica-killed", "only-replica-killed"):
        assert recs[name]["replaced_after_s"] is not None, recs[name]
    assert (recs["replica-killed"]["replicas_before"], recs["only-replica-killed"]["replicas_before"]) == (2, 1)
    c = recs["controller-restarted"]
    assert c["controller_back_after_s"] is not None and c["replicas_replaced"] == [], c
    a = recs["adapter-restarted"]
    assert a.get("error") is None and a["deployed_unchanged_while_down"], a
    assert a["redeployed_on_attach"] == [] or a["switch_under_way_at_kill"], a
    assert a["clock_continued"] and a["asked_again_after_restart"] == [] and a["second_adapter_exit"] == 0, a
    assert r["served_after_all"] > 0.5
