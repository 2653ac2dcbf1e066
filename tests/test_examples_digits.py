"""The digits example: its spec, measured profile and accuracies are consistent and reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetune.models.registry import load_adapter
from pipetune.profiler.accuracy import measure_accuracy
from pipetune.profiles import ProfileTable
from pipetune.spec import load_pipeline

SPEC = Path(__file__).resolve().parents[1] / "src/pipetune/examples/digits/pipeline.yaml"


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline(SPEC)  # also loads every profile and checks the SLA is reachable


def test_every_variant_has_a_measured_row_per_batch_and_core(pipeline):
    table = ProfileTable.read_csv(SPEC.parent / "profile.csv")
    assert any("MEASURED by `pipetune profile`" in h for h in table.header)
    for s in pipeline.stages:
        for v in s.variants:
            cells = {(r.batch, r.cores) for r in table.rows_for(v.name) if r.source == "measured"}
            want = {(b, c) for b in pipeline.batch_sizes_for(s.name) for c in pipeline.cores_for(s.name)}
            assert want <= cells, (v.name, want - cells)


def test_accuracies_span_the_promised_range(pipeline):
    accs = [v.accuracy for s in pipeline.stages for v in s.variants]
    assert min(accs) < 0.75 and max(accs) > 0.99


def test_spec_accuracies_reproduce_exactly(pipeline):
    from pipetune.models.base import pin_threads

    pin_threads(1)
    res = measure_accuracy(pipeline, progress=False)
    declared = {(s.name, v.name): v.accuracy for s in pipeline.stages for v in s.variants}
    for r in res:
        assert r.accuracy == pytest.approx(declared[(r.stage, r.variant)], abs=1e-4), r


def test_the_two_stages_compose(pipeline):
    feat = load_adapter(pipeline, "features", "pca-16")
    clf = load_adapter(pipeline, "classify", "logreg")
    xs, ys = feat.labelled_data(100)
    preds = clf.predict(feat.predict(xs))
    assert sum(p == y for p, y in zip(preds, ys)) / len(ys) > 0.85
