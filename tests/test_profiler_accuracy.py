"""`pipetune accuracy`: measuring on a small subset, and writing accuracies back into a spec without damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipetune.errors import PipetuneError
from pipetune.profiler.accuracy import measure_accuracy, write_accuracies
from pipetune.spec import load_pipeline

DIGITS = Path(__file__).resolve().parents[1] / "src/pipetune/examples/digits/pipeline.yaml"

FLOW_SPEC = """\
# a comment that must survive
name: t
sla: {seconds: 1}
profile: p.csv
stages:
- name: a   # stage a
  variants:
  - {name: a, accuracy: 0.1, model: {adapter: "x:y"}}
  - {name: b, accuracy: 0.2}
- name: b
  variants:
    - name: a
      accuracy: 0.3  # keep me
    - name: c
      model: {adapter: "x:y"}
      accuracy: 0.4
edges: [{from: a, to: b}]
"""


def test_write_accuracies_edits_only_the_numbers(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(FLOW_SPEC)
    write_accuracies(p, {("a", "a"): 0.55, ("b", "a"): 0.66, ("b", "c"): 0.77})
    text = p.read_text()
    assert "# a comment that must survive" in text and "# keep me" in text and "# stage a" in text
    d = yaml.safe_load(text)
    acc = {(s["name"], v["name"]): v["accuracy"] for s in d["stages"] for v in s["variants"]}
    assert acc == {("a", "a"): 0.55, ("a", "b"): 0.2, ("b", "a"): 0.66, ("b", "c"): 0.77}
    with pytest.raises(PipetuneError, match="could not find"):
        write_accuracies(p, {("a", "zzz"): 0.5})


def test_measure_accuracy_on_a_small_subset_and_write(tmp_path):
    spec = tmp_path / "pipeline.yaml"
    shutil.copy(DIGITS, spec)
    pl = load_pipeline(spec, check_profiles=False)
    res = measure_accuracy(pl, stages=["classify"], variants=["tree", "svc"], limit=60, progress=False)
    by = {r.variant: r for r in res}
    assert set(by) == {"tree", "svc"} and all(r.n == 60 for r in res)
    assert 0.5 < by["tree"].accuracy < by["svc"].accuracy <= 1.0
    write_accuracies(spec, {("classify", "svc"): by["svc"].accuracy})
    again = load_pipeline(spec, check_profiles=False)
    svc = next(v for v in again.stage("classify").variants if v.name == "svc")
    assert svc.accuracy == pytest.approx(by["svc"].accuracy, abs=1e-4)


def test_a_variant_without_model_is_reported_not_fatal(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(FLOW_SPEC)
    pl = load_pipeline(p, check_profiles=False)
    res = measure_accuracy(pl, progress=False)
    assert all(r.accuracy is None for r in res)
    assert any("no `model:` mapping" in r.error for r in res)
    assert any("cannot import" in r.error for r in res)


def test_cli_accuracy_subset_and_refuses_to_write_a_subset(tmp_path):
    from pipetune.cli.main import app

    spec = tmp_path / "pipeline.yaml"
    shutil.copy(DIGITS, spec)
    r = CliRunner().invoke(app, ["accuracy", str(spec), "--stages", "features", "--limit", "40"])
    assert r.exit_code == 0, r.output
    assert "pca-4" in r.output and "pixels" in r.output
    r = CliRunner().invoke(app, ["accuracy", str(spec), "--variants", "tree", "--limit", "40", "--write"])
    assert isinstance(r.exception, PipetuneError) and "--write with --limit" in str(r.exception)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_write_accuracies_roundtrips_any_values(tmp_path_factory, values):
    p = tmp_path_factory.mktemp("acc") / "s.yaml"
    p.write_text(FLOW_SPEC)
    keys = [("a", "a"), ("b", "a"), ("b", "c")]
    write_accuracies(p, dict(zip(keys, values)))
    d = yaml.safe_load(p.read_text())
    acc = {(s["name"], v["name"]): v["accuracy"] for s in d["stages"] for v in s["variants"]}
    for k, v in zip(keys, values):
        assert acc[k] == pytest.approx(v, abs=1e-4)
    assert acc[("a", "b")] == 0.2
