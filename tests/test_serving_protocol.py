"""The V2 codec and the Serve config, without Ray: every bad request is a 400 that names the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipetune import example_path
from pipetune.protocol import (
    MAX_ITEMS,
    ProtocolError,
    TensorSpec,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    spec_for_sample,
)

TEXT = TensorSpec("input", "BYTES", (-1,))
IMAGE = TensorSpec("input", "FP32", (-1, 64))


def _raw(**tensor) -> bytes:
    return json.dumps({"inputs": [{"name": "input", **tensor}]}).encode()


def test_round_trip_text_and_arrays():
    body = json.dumps(encode_request(["hello", "hallo"], TEXT, "r1")).encode()
    req = decode_request(body, [TEXT])
    assert (req.items, req.id, req.outputs, req.binary_output) == (["hello", "hallo"], "r1", None, False)
    xs = [np.arange(64, dtype=np.float32), np.ones(64, dtype=np.float32)]
    req = decode_request(json.dumps(encode_request(xs, IMAGE)).encode(), [IMAGE])
    items = req.items
    assert req.id is None and len(items) == 2 and items[0].dtype == np.float32
    np.testing.assert_array_equal(items[0], xs[0])
    # nested (row-major) data is accepted as well as flat
    nested = _raw(datatype="FP32", shape=[1, 64], data=[list(range(64))])
    assert decode_request(nested, [IMAGE]).items[0][63] == 63


def test_spec_for_sample():
    assert spec_for_sample("input", "a text") == TEXT
    assert spec_for_sample("input", np.zeros(64)) == IMAGE


@pytest.mark.parametrize(
    "body, field",
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"inputs": []}).encode(), "inputs"),
        (
            json.dumps({"inputs": [{"name": "other", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}).encode(),
            "name",
        ),
        (_raw(datatype="FP32", shape=[1], data=[1.0]), "datatype"),
        (_raw(datatype="BYTES", shape=[2], data=["a"]), "elements"),
        (_raw(datatype="BYTES", shape=[-1], data=["a"]), "shape"),
        (_raw(datatype="BYTES", shape=[MAX_ITEMS + 1], data=["a"] * (MAX_ITEMS + 1)), "shape[0]"),
        (_raw(datatype="BYTES", shape=[1], data=[3]), "strings"),
        (_raw(datatype="BYTES", shape=[1], data="abc"), "data"),
    ],
)
def test_bad_text_requests_name_the_field(body, field):
    with pytest.raises(ProtocolError, match=field.replace("[", r"\[")):
        decode_request(body, [TEXT])


@pytest.mark.parametrize(
    "tensor, field",
    [
        (dict(datatype="FP32", shape=[1, 3], data=[1, 2, 3]), "shape"),
        (dict(datatype="FP32", shape=[1, 64], data=["x"] * 64), "numbers"),
        (dict(datatype="FP32", shape=[1, 64], data=[float("nan")] * 64), "finite"),
        (dict(datatype="FP32", shape=[1, 64], data=list(range(65))), "more elements"),
        (dict(datatype="FP32", shape=[10**9, 64], data=[0]), "items"),  # bounded: no allocation from the shape
    ],
)
def test_bad_array_requests_name_the_field(tensor, field):
    body = json.dumps({"inputs": [{"name": "input", **tensor}]}, allow_nan=True).encode()
    with pytest.raises(ProtocolError, match=field):
        decode_request(body, [IMAGE])


def test_response_round_trip():
    out = {"merge": [{"topic": "love", "lang": "en"}, "plain"]}
    payload, headers = encode_response("text", out, "r1", {"e2e_s": 0.1})
    assert headers == {"content-type": "application/json"}
    body = json.loads(payload)
    assert body["outputs"][0]["datatype"] == "BYTES" and body["outputs"][0]["shape"] == [2]
    assert body["id"] == "r1" and decode_response(body) == out == decode_response(payload)


def test_export_is_a_valid_serve_config(tmp_path):
    """`pipetune serve --export` writes a config Ray Serve's own schema (serve deploy, KubeRay) accepts."""
    from ray.serve.schema import ServeDeploySchema
    from typer.testing import CliRunner

    from pipetune.cli.main import app

    out = tmp_path / "serve-config.yaml"
    res = CliRunner().invoke(app, ["serve", str(example_path("digits")), "--export", str(out), "--num-cpus", "8"])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(out.read_text())
    schema = ServeDeploySchema.model_validate(cfg)
    names = [a.name for a in schema.applications]
    assert names[0] == "digits--ingress" and len(names) == 3  # ingress + one app per stage
    stage_apps = [a for a in cfg["applications"] if a["name"] != "digits--ingress"]
    assert sum(a["deployments"][0]["num_replicas"] * a["args"]["cores"] for a in stage_apps) <= 8 - 1
    assert cfg["applications"][0]["deployments"][0]["user_config"]["max_inflight"] >= 1


GOOD_STAGE = {"variant": "pca-16", "batch": 2, "cores": 1, "replicas": 1}


@pytest.mark.parametrize(
    "features, says",
    [
        (None, "stages.features needs variant, batch, cores and replicas"),
        ({"variant": "pca-4"}, "stages.features.batch is None; it must be a whole number >= 1"),
        ({**GOOD_STAGE, "batch": 2.7}, "stages.features.batch is 2.7"),  # never rounded down to 2
        ({**GOOD_STAGE, "replicas": True}, "stages.features.replicas is True"),
        ({**GOOD_STAGE, "variant": None}, "stages.features.variant is None; it must be one of"),
        ({**GOOD_STAGE, "variant": "pca-99"}, "stages.features.variant is 'pca-99'"),
    ],
)
def test_bad_plan_file_is_a_clear_error_naming_the_field(tmp_path, features, says):
    from typer.testing import CliRunner

    from pipetune.cli.main import app
    from pipetune.spec import load_pipeline

    pipeline = load_pipeline(example_path("digits"))
    stages = {s: {"variant": pipeline.stage(s).variants[0].name, "batch": 1, "cores": 1, "replicas": 1}
              for s in pipeline.stage_names}  # fmt: skip
    stages.pop("features")
    if features is not None:
        stages["features"] = features
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps({"stages": stages}))
    res = CliRunner().invoke(
        app,
        ["serve", str(example_path("digits")), "--plan", str(bad), "--num-cpus", "8", "--export", str(tmp_path / "x")],
    )
    assert res.exit_code != 0 and not (tmp_path / "x").exists()
    assert says in str(res.exception)
