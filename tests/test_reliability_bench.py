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
