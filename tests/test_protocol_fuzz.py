"""Hostile request bodies at the protocol level: whatever the bytes, headers and JSON, `decode_request` returns
checked items or raises ProtocolError (the ingress's 400), in bounded time; and the binary tensor extension
round-trips with the stock Triton client's own request builder and response parser."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipetune.protocol import (
    HEADER_LENGTH,
    MAX_ITEMS,
    MAX_JSON_DEPTH,
    InferRequest,
    ProtocolError,
    TensorSpec,
    decode_request,
    decode_response,
    encode_request,
    encode_request_bytes,
    encode_response,
)

TEXT = TensorSpec("input", "BYTES", (-1,))
IMAGE = TensorSpec("input", "FP32", (-1, 4))
COUNTS = TensorSpec("input", "INT8", (-1, 2))
WORDS = TensorSpec("input", "BYTES", (-1, -1))  # each item a list of strings
ANY = TensorSpec("input", "UINT16", (-1, -1))  # any per-item size, zero included
OUT = [TensorSpec("out", "BYTES", (-1,))]
SPECS = [TEXT, IMAGE, COUNTS, WORDS, ANY]
CONTENT_TYPES = [None, "", "application/json", "application/json; charset=utf-8", "application/octet-stream",
                 "text/xml", "multipart/form-data; boundary=x", "application/json; charset=latin-1", "\x00;;="]  # fmt: skip
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(body: bytes, spec: TensorSpec, **kw) -> InferRequest | None:
    """The property: a checked request (items that fit `spec`) or a ProtocolError; nothing else, quickly."""
    t0 = time.perf_counter()
    try:
        req = decode_request(body, [spec], outputs=OUT, **kw)
    except ProtocolError as e:
        assert str(e) and len(str(e)) < 2000  # a message, never the body echoed back
        return None
    finally:
        assert time.perf_counter() - t0 < 2.0
    assert 1 <= len(req.items) <= MAX_ITEMS
    assert req.id is None or isinstance(req.id, str)
    for x in req.items:
        if spec == TEXT:
            assert isinstance(x, str)
            x.encode("utf-8")  # text a model can take
        elif spec.datatype == "BYTES":
            assert isinstance(x, list) and all(isinstance(w, str) for w in x)
        else:
            assert isinstance(x, np.ndarray) and x.dtype == np.dtype(spec.datatype.lower().replace("fp", "float"))
            assert len(x.shape) == len(spec.shape) - 1
            assert all(d in (-1, g) for d, g in zip(spec.shape[1:], x.shape))
            assert np.isfinite(x).all()
    return req


def _valid(spec: TensorSpec, n: int = 2, binary: bool = False) -> tuple[bytes, dict[str, str]]:
    rng = np.random.default_rng(n)
    if spec == TEXT:
        items: list = [f"text {i} [é]" for i in range(n)]
    elif spec == WORDS:
        items = [[f"w{i}", "[é]"] for i in range(n)]
    elif spec == ANY:
        items = list(rng.integers(0, 2**16, (n, 3)).astype(np.uint16))
    elif spec.datatype == "INT8":
        items = list(rng.integers(-128, 128, (n, 2)).astype(np.int8))
    else:
        items = list(rng.standard_normal((n, 4)).astype(np.float32))
    return encode_request_bytes(items, spec, "r1", binary=binary)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from(SPECS), st.sampled_from(CONTENT_TYPES),
       st.none() | st.integers(-5, 600) | st.text(max_size=8))  # fmt: skip
def test_random_bytes_are_refused_or_decoded(body, spec, content_type, header_length):
    _check(body, spec, content_type=content_type, header_length=header_length)


@FUZZ
@given(json_values, st.sampled_from(SPECS))
def test_random_json_trees_are_refused_or_decoded(tree, spec):
    _check(json.dumps(tree, allow_nan=True).encode(), spec)
    _check(json.dumps({"inputs": [tree]}, allow_nan=True).encode(), spec)


def _set(obj: dict, path: list, value) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


PATHS = [["id"], ["parameters"], ["inputs"], ["inputs", 0], ["inputs", 0, "name"], ["inputs", 0, "datatype"],
         ["inputs", 0, "shape"], ["inputs", 0, "shape", 0], ["inputs", 0, "data"], ["inputs", 0, "parameters"],
         ["outputs"]]  # fmt: skip


@FUZZ
@given(st.sampled_from(SPECS), st.sampled_from(PATHS), json_values, st.booleans())
def test_mutated_valid_json_requests_are_refused_or_decoded(spec, path, value, delete):
    req = json.loads(_valid(spec)[0])
    req["outputs"] = [{"name": "out"}]
    if delete and path[-1] in ("id", "parameters", "inputs", "outputs", "name", "datatype", "shape", "data"):
        parent = req
        for k in path[:-1]:
            parent = parent[k]
        parent.pop(path[-1], None)
    else:
        _set(req, path, value)
    _check(json.dumps(req, allow_nan=True).encode(), spec)


@FUZZ
@given(st.sampled_from(SPECS), st.integers(0, 400), st.binary(min_size=1, max_size=8), st.integers(-3, 3),
       st.sampled_from(["flip", "cut", "insert"]))  # fmt: skip
def test_mutated_binary_requests_are_refused_or_decoded(spec, at, junk, header_shift, how):
    body, headers = _valid(spec, binary=True)
    at = at % len(body)
    if how == "flip":
        body = body[:at] + bytes(b ^ junk[0] for b in body[at : at + 1]) + body[at + 1 :]
    elif how == "cut":
        body = body[:at]
    else:
        body = body[:at] + junk + body[at:]
    _check(body, spec, header_length=int(headers[HEADER_LENGTH]) + header_shift, content_type=headers["content-type"])


def test_valid_requests_decode_in_both_forms():
    for spec in SPECS:
        for binary in (False, True):
            body, headers = _valid(spec, n=3, binary=binary)
            req = _check(body, spec, header_length=headers.get(HEADER_LENGTH), content_type=headers["content-type"])
            assert req is not None and len(req.items) == 3 and req.id == "r1" and req.binary_output is binary


@pytest.mark.parametrize(
    "body, says",
    [
        (b"[" * 10_000 + b"]" * 10_000, "nests deeper"),  # was a 500 from a RecursionError
        (b'{"inputs": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}", "nests deeper"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b'"]]]"' + b"]" * (MAX_JSON_DEPTH + 1), "nests deeper"),
        (b"[" + b"{}," * 1_000_000 + b"{}]", "objects"),
        (b'"' + b'\\"' * 2_000_000, "not JSON"),  # an unterminated string of escapes: linear, not quadratic
        (b'{"inputs": [], "parameters": {"x": NaN}}', "NaN"),
        (b'{"inputs": [], "parameters": {"x": -Infinity}}', "Infinity"),
        (b'{"inputs": [], "parameters": {"x": 1e999}}', "overflows"),
        (b'{"inputs": [], "parameters": {"x": ' + b"9" * 5000 + b"}}", "not JSON"),
        (
            b'{"parameters": "fast", "inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
            "parameters: must be an object",
        ),
        (b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}', "UTF-8"),
        (
            '{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["é"]}]}'.encode("latin-1"),
            "not UTF-8",
        ),
        ("{}".encode("utf-16"), "not UTF-8"),
        (
            b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["a"], "parameters": 3}]}',
            "inputs[0].parameters: must be an object",
        ),
        (b'{"outputs": [{"name": "nope"}], "inputs": []}', "outputs[0].name"),
        (b'{"parameters": {"binary_data_output": "yes"}, "inputs": []}', "binary_data_output"),
        (
            b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}trailing',
            HEADER_LENGTH,
        ),  # binary bytes without the header: the message says which header is missing
    ],
)
def test_hostile_bodies_are_refused_quickly_with_a_reason(body, says):
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError, match=says.replace("[", r"\[")):
        decode_request(body, [TEXT], outputs=OUT)
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.parametrize(
    "spec, data, says",
    [
        (COUNTS, [1.5, 2], "whole numbers"),  # never truncated to 1
        (COUNTS, [300, 2], "range"),  # never wrapped to 44
        (COUNTS, [True, 2], "whole numbers"),
        (TensorSpec("input", "UINT8", (-1, 2)), [-1, 2], "range"),
        (TensorSpec("input", "INT64", (-1, 2)), [2**63, -1], "range"),
        (TensorSpec("input", "FP16", (-1, 2)), [1e6, 0.0], "out-of-range"),
        (TensorSpec("input", "BOOL", (-1, 2)), [1, 0], "true or false"),
        (IMAGE, [1, 2, 3, "4"], "numbers"),
    ],
)
def test_wrong_element_types_are_refused_not_converted(spec, data, says):
    shape = [1, len(data)] if spec.shape[1] == -1 or spec.shape[1] == len(data) else [1, spec.shape[1]]
    body = json.dumps({"inputs": [{"name": "input", "datatype": spec.datatype, "shape": shape, "data": data}]})
    with pytest.raises(ProtocolError, match=says):
        decode_request(body.encode(), [spec])


def test_zero_sized_and_multi_dimensional_items_keep_their_shape():
    for spec, data, want in [(ANY, [], [np.zeros(0, np.uint16)] * 2), (WORDS, [], [[], []]),
                             (WORDS, ["a", "b"], [["a"], ["b"]])]:  # fmt: skip
        shape = [2, len(data) // 2]
        body = json.dumps({"inputs": [{"name": "input", "datatype": spec.datatype, "shape": shape, "data": data}]})
        items = decode_request(body.encode(), [spec]).items
        assert len(items) == 2 and all(np.array_equal(a, b) for a, b in zip(items, want)), items


def test_sizes_over_the_caps_allocate_nothing():
    """A shape that claims billions of elements, and binary sizes beyond the body, are refused from the numbers."""
    huge = {"name": "input", "datatype": "FP32", "shape": [1, 10**12], "data": []}
    with pytest.raises(ProtocolError, match="shape"):
        decode_request(json.dumps({"inputs": [huge]}).encode(), [TensorSpec("input", "FP32", (-1, -1))])
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": 2**40}}]}).encode()  # fmt: skip
    with pytest.raises(ProtocolError, match="binary_data_size"):
        decode_request(head + b"\0" * 16, [IMAGE], header_length=len(head))
    head = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": 4}}]}).encode()  # fmt: skip
    with pytest.raises(ProtocolError, match="element 0 says 4294967295 bytes"):
        decode_request(head + b"\xff\xff\xff\xff", [TEXT], header_length=len(head))


@pytest.mark.parametrize(
    "content_type", ["text/xml", "multipart/form-data; boundary=x", "application/json; charset=latin-1"]
)
def test_content_type_other_than_json_or_binary_names_the_header(content_type):
    body, _ = _valid(TEXT)
    with pytest.raises(ProtocolError, match="Content-Type header"):
        decode_request(body, [TEXT], content_type=content_type)
    for ok in ("application/json", "application/octet-stream", "application/x-www-form-urlencoded", None):
        assert decode_request(body, [TEXT], content_type=ok).items


def test_bad_header_length_names_the_header():
    body, headers = _valid(TEXT, binary=True)
    for bad in ("abc", "-1", "0", str(len(body) + 1), "1e3"):
        with pytest.raises(ProtocolError, match=HEADER_LENGTH):
            decode_request(body, [TEXT], header_length=bad)


def test_responses_in_json_and_binary_as_the_request_asks():
    outputs = {"out": [{"label": 3}, "plain"], "other": [1, 2]}
    req = decode_request(*[_valid(TEXT)[0]], [TEXT])
    payload, headers = encode_response("m", outputs, request=req)
    assert HEADER_LENGTH not in headers and json.loads(payload)["id"] == "r1"
    assert decode_response(payload) == outputs
    body, headers = _valid(TEXT, binary=True)  # binary_data_output: every output in binary
    req = decode_request(body, [TEXT], header_length=headers[HEADER_LENGTH])
    payload, headers = encode_response("m", outputs, request=req)
    assert headers["content-type"] == "application/octet-stream"
    assert decode_response(payload, headers[HEADER_LENGTH]) == outputs
    ask = json.loads(_valid(TEXT)[0])
    ask["outputs"] = [{"name": "other", "parameters": {"binary_data": True}}]  # one output, in binary
    req = decode_request(json.dumps(ask).encode(), [TEXT])
    payload, headers = encode_response("m", outputs, request=req)
    assert decode_response(payload, headers[HEADER_LENGTH]) == {"other": [1, 2]}


def test_the_triton_client_default_request_and_response_round_trip():
    """What `tritonclient.http` sends by default (binary inputs, binary outputs asked for) decodes; the binary
    response parses with its own InferResult; with binary_data=False both ways it stays JSON."""
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.http._utils import _get_inference_request

    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    inp = http.InferInput("input", [3, 4], "FP32")
    inp.set_data_from_numpy(x)  # binary_data=True is the client's default
    body, json_size = _get_inference_request([inp], "q7", None, 0, False, False, 0, None, None)
    assert json_size is not None
    req = decode_request(body, [IMAGE], header_length=json_size, outputs=OUT)
    np.testing.assert_array_equal(np.stack(req.items), x)
    assert req.id == "q7" and req.binary_output
    payload, headers = encode_response("m", {"out": [1, {"a": [2.5]}, "s"]}, None, {"e2e_s": 0.1}, request=req)
    res = http.InferResult.from_response_body(payload, header_length=int(headers[HEADER_LENGTH]))
    assert [json.loads(v) if v != b"s" else "s" for v in res.as_numpy("out")] == [1, {"a": [2.5]}, "s"]
    assert res.get_response()["id"] == "q7" and res.get_response()["parameters"] == {"e2e_s": 0.1}

    texts = np.array(["héllo", "[x]"], dtype=object)
    tb = http.InferInput("input", [2], "BYTES")
    tb.set_data_from_numpy(texts)
    out = [http.InferRequestedOutput("out", binary_data=False)]
    body, json_size = _get_inference_request([tb], "", out, 0, False, False, 0, None, None)
    req = decode_request(body, [TEXT], header_length=json_size, outputs=OUT)
    assert req.items == ["héllo", "[x]"] and not req.wants_binary("out")
    payload, headers = encode_response("m", {"out": ["a", "b"]}, request=req)
    res = http.InferResult.from_response_body(payload)
    assert list(res.as_numpy("out")) == ["a", "b"]  # JSON data: the client keeps strings

    tj = http.InferInput("input", [2], "BYTES")
    tj.set_data_from_numpy(texts, binary_data=False)
    body, json_size = _get_inference_request([tj], "", out, 0, False, False, 0, None, None)
    assert json_size is None and decode_request(body, [TEXT]).items == ["héllo", "[x]"]


def test_the_load_generators_binary_bodies_decode():
    for spec in SPECS:
        body, headers = _valid(spec, n=1, binary=True)
        assert int(headers[HEADER_LENGTH]) < len(body)
        req = decode_request(body, [spec], header_length=headers[HEADER_LENGTH], content_type=headers["content-type"])
        assert len(req.items) == 1
    assert json.loads(encode_request_bytes(["a"], TEXT)[0]) == encode_request(["a"], TEXT)
