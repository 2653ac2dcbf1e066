"""The Open Inference Protocol (KServe V2) over HTTP/JSON: tensors in, tensors out, errors as the protocol says.

One home for the wire format, used by the ingress (decode requests, encode responses) and by the load
generator (encode requests, read responses). Only the JSON form of the protocol is spoken (not the binary
tensor extension). A request's first input dimension is the item axis: a tensor of shape [n, ...] carries n
items, each of which walks the pipeline on its own; the response has one output tensor per sink stage with
the n results in order (BYTES: a string stays a string, anything else is JSON text).

Every check here runs before anything reaches a model; a failure is a `ProtocolError` whose message names the
field and the fix, which the ingress answers with HTTP 400 and `{"error": message}`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.errors import PipetuneError

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body above this is refused before it is parsed
MAX_ITEMS = 256  # items per request
MAX_ELEMENTS = 4 * 1024 * 1024  # tensor elements per request

# V2 datatypes and the numpy type each maps to (BYTES: Python str)
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}


class ProtocolError(PipetuneError):
    """A request that does not follow the protocol or the model's metadata (HTTP 400)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model's metadata: name, V2 datatype, shape (-1: any size; dim 0: items)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def spec_for_sample(name: str, sample: Any) -> TensorSpec:
    """The tensor spec that carries items like `sample` (a str: BYTES [-1]; an array: its dtype, [-1, *shape])."""
    if isinstance(sample, (str, bytes)):
        return TensorSpec(name, "BYTES", (-1,))
    arr = np.asarray(sample)
    if arr.dtype.kind == "f":
        dt = "FP32"  # models take float32; FP64 on the wire doubles the bytes for nothing
    elif arr.dtype.kind in "iu":
        dt = "INT64"
    elif arr.dtype.kind == "b":
        dt = "BOOL"
    else:
        return TensorSpec(name, "BYTES", (-1,))  # anything else travels as JSON text
    return TensorSpec(name, dt, (-1, *arr.shape))


# ---- requests -------------------------------------------------------------------------------------------
def encode_request(items: list[Any], spec: TensorSpec, request_id: str | None = None) -> dict:
    """A V2 inference request carrying `items` as one input tensor (what any V2 client would send)."""
    if spec.datatype == "BYTES":
        data: list = [x if isinstance(x, str) else jsonio.dumps(x) for x in items]
        shape = [len(items)]
    else:
        arr = np.asarray(items, dtype=DATATYPES[spec.datatype])
        data = arr.reshape(-1).tolist()
        shape = list(arr.shape)
    body: dict = {"inputs": [{"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data}]}
    if request_id is not None:
        body["id"] = request_id
    return body


def decode_request(body: bytes, inputs: list[TensorSpec]) -> tuple[list[Any], str | None]:
    """The items of a V2 request body, checked against the model's inputs; raises ProtocolError (400)."""
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}: send fewer items")
    try:
        req = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"request body is not JSON ({e}); send a V2 inference request object") from None
    if not isinstance(req, dict):
        raise ProtocolError("request body must be a JSON object with `inputs`")
    rid = req.get("id")
    if rid is not None and not isinstance(rid, str):
        raise ProtocolError("id: must be a string")
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ProtocolError("inputs: must be a non-empty list of tensors")
    if len(tensors) != len(inputs):
        raise ProtocolError(f"inputs: {len(tensors)} tensors given; this model takes {[s.name for s in inputs]}")
    by_name = {s.name: s for s in inputs}
    items: list[Any] | None = None
    for i, t in enumerate(tensors):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise ProtocolError(f"{where}: must be an object with name, shape, datatype, data")
        spec = by_name.get(t.get("name"))  # type: ignore[arg-type]
        if spec is None:
            raise ProtocolError(f"{where}.name: {t.get('name')!r} is not an input; use one of {sorted(by_name)}")
        items = _decode_tensor(t, spec, where)
    assert items is not None
    return items, rid


def _decode_tensor(t: dict, spec: TensorSpec, where: str) -> list[Any]:
    dt = t.get("datatype")
    if dt != spec.datatype:
        raise ProtocolError(f"{where}.datatype: {dt!r}; input {spec.name!r} takes {spec.datatype}")
    shape = t.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise ProtocolError(f"{where}.shape: {shape!r} must be a non-empty list of sizes >= 0, items first")
    if len(shape) != len(spec.shape) or any(w not in (-1, d) for w, d in zip(spec.shape[1:], shape[1:])):
        raise ProtocolError(f"{where}.shape: {shape} does not match {list(spec.shape)} (-1: any size)")
    n = shape[0]
    if not 1 <= n <= MAX_ITEMS:
        raise ProtocolError(f"{where}.shape[0]: {n} items; send between 1 and {MAX_ITEMS} per request")
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise ProtocolError(f"{where}: {count} elements; the limit is {MAX_ELEMENTS} per request")
    data = t.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"{where}.data: must be a list (flat, row-major, or nested)")
    flat = _flatten(data, count, where)
    if dt == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise ProtocolError(f"{where}.data: BYTES elements must be strings")
        if len(shape) != 1:
            return [flat[i : i + count // n] for i in range(0, count, count // n)]
        return flat
    try:
        arr = np.asarray(flat, dtype=np.float64 if dt in ("FP16", "FP32", "FP64") else None)
        if arr.dtype == object or (dt != "BOOL" and arr.dtype.kind not in "iufb"):
            raise ValueError("not numbers")
        arr = arr.astype(DATATYPES[dt])
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"{where}.data: elements must be numbers for datatype {dt}") from None
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ProtocolError(f"{where}.data: NaN or infinite values; send finite numbers")
    arr = arr.reshape(shape)
    return [arr[i] for i in range(n)]


def _flatten(data: list, count: int, where: str) -> list:
    flat: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            flat.append(x)
            if len(flat) > count:
                raise ProtocolError(f"{where}.data: more elements than shape says ({count})")
        else:
            stack.pop()
    if len(flat) != count:
        raise ProtocolError(f"{where}.data: {len(flat)} elements, shape says {count}")
    return flat


# ---- responses ------------------------------------------------------------------------------------------
def _to_text(x: Any) -> str:
    """An output element as JSON text: strict, a non-finite number as null (like every JSON pipetune writes)."""
    if isinstance(x, str):
        return x
    return jsonio.dumps(x, default=_json_default)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return jsonio.finite(x.tolist())  # the encoder does not pass what `default` returns through `finite`
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def encode_response(
    model: str, outputs: dict[str, list[Any]], request_id: str | None = None, parameters: dict | None = None
) -> dict:
    """A V2 inference response: one BYTES tensor per named output, one element per item."""
    body: dict = {
        "model_name": model,
        "outputs": [
            {"name": name, "datatype": "BYTES", "shape": [len(vals)], "data": [_to_text(v) for v in vals]}
            for name, vals in outputs.items()
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    if parameters:
        body["parameters"] = parameters
    return body


def decode_response(body: dict) -> dict[str, list[Any]]:
    """Outputs of a V2 response by name (BYTES elements that hold JSON are parsed back)."""
    out: dict[str, list[Any]] = {}
    for t in body.get("outputs", []):
        vals = t.get("data", [])
        if t.get("datatype") == "BYTES":
            parsed = []
            for v in vals:
                try:
                    parsed.append(json.loads(v))
                except (TypeError, ValueError):
                    parsed.append(v)
            vals = parsed
        out[t["name"]] = vals
    return out


def model_metadata(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec], platform: str = "pipetune") -> dict:
    return {
        "name": name,
        "versions": ["1"],
        "platform": platform,
        "inputs": [s.to_dict() for s in inputs],
        "outputs": [s.to_dict() for s in outputs],
    }


def error_body(message: str) -> bytes:
    """The V2 error body, `{"error": message}` (a string: nothing non-finite can reach it)."""
    return jsonio.dumps({"error": message}).encode()
