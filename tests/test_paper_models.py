"""The paper architectures (pipetune.models.paper): sizes match the real checkpoints, inputs are fixed-size,
generation emits exactly the fixed number of tokens, and bad options fail with a clear message."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pipetune.models.base import ModelAdapter  # noqa: E402
from pipetune.models.paper import (  # noqa: E402
    _BUILDERS,
    PAPER_VARIANTS,
    InputShape,
    PaperModel,
    PaperModelError,
    default_shape,
    paper_variant,
)

torch.set_num_threads(1)

# Parameter counts (millions) of the real checkpoints, from their model cards / papers. D-FINE: the paper's
# n/s/m/l/x sizes (4/10/19/31/62 M, rounded there, hence the wider tolerance on those).
PUBLISHED_PARAMS_M = {
    "resnet18": 11.69,
    "resnet34": 21.80,
    "resnet50": 25.56,
    "resnet101": 44.55,
    "resnet152": 60.19,
    "s2t-small-librispeech": 29.5,
    "s2t-medium-librispeech": 71.2,
    "s2t-large-librispeech": 268.0,
    "roberta-base-squad2": 124.1,
    "xlm-roberta-base-squad2": 277.5,
    "distilbert-sst2": 66.96,
    "bert-sentiment": 167.4,
    "roberta-sentiment": 124.6,
    "xlm-roberta-base-language-id": 278.1,
    "distilbart-xsum-12-1": 222.0,
    "distilbart-xsum-6-6": 230.0,
    "distilbart-xsum-12-3": 255.0,
    "distilbart-xsum-9-6": 268.0,
    "distilbart-xsum-12-6": 306.0,
    "opus-mt-fr-en": 75.1,
    "yolov5n": 4.0,
    "yolov5s": 10.0,
    "yolov5m": 19.0,
    "yolov5l": 31.0,
    "yolov5x": 62.0,
}


def _params_on_meta(name: str) -> float:
    v = paper_variant(name)
    with torch.device("meta"):  # shapes only: no memory, no random init cost
        model = _BUILDERS[v.family](v.config)
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_architecture_sizes_match_the_real_checkpoints(name):
    tol = 0.08 if name.startswith("yolov5") else 0.02
    got = _params_on_meta(name)
    want = PUBLISHED_PARAMS_M[name]
    assert abs(got - want) / want <= tol, f"{name}: {got:.1f} M parameters, the checkpoint has {want} M"


def test_every_ipa_variant_has_a_builder_and_a_default_shape():
    assert len(PAPER_VARIANTS) == 5 + 5 + 3 + 2 + 4 + 6 + 1 + 2
    for name in PAPER_VARIANTS:
        assert isinstance(PaperModel(name), ModelAdapter)
        assert default_shape(name).key()


def test_detectors_grow_in_size_like_yolov5_n_to_x():
    sizes = [_params_on_meta(f"yolov5{s}") for s in "nsmlx"]
    assert sizes == sorted(sizes) and sizes[-1] > 10 * sizes[0]


@pytest.mark.parametrize(
    "name, shape",
    [
        ("resnet18", InputShape("image", image_size=64)),
        ("yolov5n", InputShape("image", image_size=256)),
        ("distilbert-sst2", InputShape("tokens", tokens=16)),
        ("roberta-base-squad2", InputShape("tokens", tokens=16)),
    ],
)
@pytest.mark.slow
def test_predict_returns_one_output_per_input_and_is_deterministic(name, shape):
    m = PaperModel(name, shape)
    m.load()
    x = m.sample_inputs(3)
    assert [tuple(t.shape) for t in x] == [tuple(x[0].shape)] * 3
    out = m.predict(x)
    assert len(out) == 3
    m2 = PaperModel(name, shape)
    m2.load()
    assert m2.predict(m2.sample_inputs(3)) == out  # same seed, same inputs, same weights
    assert m.predict([]) == []


@pytest.mark.parametrize(
    "name, shape",
    [
        ("s2t-small-librispeech", {"kind": "fbank", "frames": 64, "features": 80, "new_tokens": 5}),
        ("distilbart-xsum-1-1", {"kind": "tokens", "tokens": 12, "new_tokens": 7}),
        ("opus-mt-fr-en", {"kind": "tokens", "tokens": 12, "new_tokens": 6}),
    ],
)
@pytest.mark.slow
def test_generation_emits_exactly_the_fixed_number_of_tokens(name, shape):
    m = PaperModel(name, shape)
    m.load()
    out = m.predict(m.sample_inputs(2))
    assert len(out) == 2
    # the decoder start token plus exactly new_tokens generated ones, even though random weights would stop early
    assert all(len(ids) == shape["new_tokens"] + 1 for ids in out)


def test_bad_options_name_the_field_and_the_fix():
    with pytest.raises(PaperModelError, match="unknown paper variant 'yolov8n'.*known variants"):
        PaperModel("yolov8n")
    with pytest.raises(PaperModelError, match="kind='tokens' does not fit resnet50.*use kind='image'"):
        PaperModel("resnet50", {"kind": "tokens", "tokens": 8})
    with pytest.raises(PaperModelError, match="unknown field"):
        PaperModel("resnet50", {"kind": "image", "pixels": 8})
    with pytest.raises(PaperModelError, match="new_tokens"):
        PaperModel("distilbart-xsum-6-6", {"kind": "tokens", "tokens": 64})
    with pytest.raises(PaperModelError, match="tokens=4096"):
        PaperModel("roberta-base-squad2", {"kind": "tokens", "tokens": 4096})
    with pytest.raises(PaperModelError, match="image_size=96 is too small.*>= 256"):
        PaperModel("yolov5n", {"kind": "image", "image_size": 96})
    with pytest.raises(PaperModelError, match="call load"):
        PaperModel("resnet18").predict([torch.zeros(3, 224, 224)])
