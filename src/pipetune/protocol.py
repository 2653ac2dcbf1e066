"""The Open Inference Protocol (KServe V2) over HTTP: tensors in, tensors out, errors as the protocol says.

One home for the wire format, used by the ingress (decode requests, encode responses) and by the load
generator (encode requests, read responses). Both forms of a body are spoken:

* JSON: the whole body is one V2 inference request object, tensor elements in `data`;
* the binary tensor extension (what Triton and KServe speak, and what `tritonclient.http` sends by default): the
  HTTP header `Inference-Header-Content-Length: N` says the first N bytes are the JSON request; the raw tensor
  bytes follow, in the order of the inputs that carry `parameters.binary_data_size` (little-endian, row-major;
  BOOL one byte 0/1; BYTES elements each a 4-byte little-endian length then the bytes). A response is binary for
  the outputs the request asks so (`parameters.binary_data` on an output, or `binary_data_output` in the
  request's parameters) and carries the same header.

A request's first input dimension is the item axis: a tensor of shape [n, ...] carries n items, each of which
walks the pipeline on its own; the response has one output tensor per sink stage with the n results in order
(BYTES: a string stays a string, anything else is JSON text).

Every check here runs before anything reaches a model, and the work it does is bounded by the body's size
whatever the body holds: the JSON is scanned for nesting depth and token counts before it is parsed (Python's
parser recurses, and a body of 10,000 nested arrays would raise RecursionError inside it), NaN and Infinity are
refused wherever they stand, shapes are checked against the caps before anything is allocated, and nothing of a
request is ever evaluated or unpickled. A failure is a `ProtocolError` whose message names the field (or the
header) and the fix, which the ingress answers with HTTP 400 and `{"error": message}`.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.errors import PipetuneError

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body above this is refused before it is parsed
MAX_ITEMS = 256  # items per request
MAX_ELEMENTS = 4 * 1024 * 1024  # tensor elements per request
MAX_JSON_DEPTH = 64  # nesting of arrays and objects in the JSON (a V2 request needs 3 + the tensor's rank)
MAX_JSON_OBJECTS = 4096  # a V2 request holds a handful of objects (the request, its tensors, their parameters)
MAX_JSON_ARRAYS = 1 << 20  # nested `data` of the largest tensor the element cap allows, with room to spare
MAX_JSON_VALUES = MAX_ELEMENTS + 65536  # commas bound the values a parse can create: memory stays bounded

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
# Content-Type values a request body may carry. Besides JSON and octet-stream (what aiohttp, and so
# tritonclient.http.aio, sends for bytes), the form type is what `curl -d` and urllib send when not told.
ACCEPTED_TYPES = (JSON_TYPE, BINARY_TYPE, "application/x-www-form-urlencoded")

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


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of a request's `outputs`: the output's name, and whether it is wanted in binary (None: as the
    request's `binary_data_output` says)."""

    name: str
    binary: bool | None = None


@dataclass(frozen=True)
class InferRequest:
    """A decoded, checked V2 inference request: what the ingress runs and how it answers."""

    items: list[Any]
    id: str | None = None
    outputs: tuple[RequestedOutput, ...] | None = None  # None: every output of the model
    binary_output: bool = False  # the request's `parameters.binary_data_output`

    def wants_binary(self, output: str) -> bool:
        for o in self.outputs or ():
            if o.name == output and o.binary is not None:
                return o.binary
        return self.binary_output


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


# ---- requests: encoding (clients, the load generator) ---------------------------------------------------
def encode_request(items: list[Any], spec: TensorSpec, request_id: str | None = None) -> dict:
    """A V2 inference request carrying `items` as one input tensor (what any V2 client would send)."""
    if spec.datatype == "BYTES" and len(spec.shape) > 1:  # each item an array of strings: sent as they are
        texts = np.asarray(items, dtype=object)
        data: list = texts.reshape(-1).tolist()
        shape = list(texts.shape)
    elif spec.datatype == "BYTES":
        data = [x if isinstance(x, str) else jsonio.dumps(x) for x in items]
        shape = [len(items)]
    else:
        arr = np.asarray(items, dtype=DATATYPES[spec.datatype])
        data = arr.reshape(-1).tolist()
        shape = list(arr.shape)
    body: dict = {"inputs": [{"name": spec.name, "datatype": spec.datatype, "shape": shape, "data": data}]}
    if request_id is not None:
        body["id"] = request_id
    return body


def encode_request_bytes(
    items: list[Any], spec: TensorSpec, request_id: str | None = None, *, binary: bool = False
) -> tuple[bytes, dict[str, str]]:
    """A V2 request body and its HTTP headers. `binary`: the tensor as raw bytes after the JSON header, and the
    outputs asked for in binary (`binary_data_output`), as `tritonclient.http` does by default; else JSON."""
    req = encode_request(items, spec, request_id)
    if not binary:
        return jsonio.dumps(req).encode(), {"content-type": JSON_TYPE}
    tensor = req["inputs"][0]
    data = tensor.pop("data")
    if spec.datatype == "BYTES":
        raw = _pack_bytes(data)
    else:
        raw = np.asarray(data, dtype=_wire_dtype(spec.datatype)).tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    req["parameters"] = {"binary_data_output": True}
    head = jsonio.dumps(req).encode()
    return head + raw, {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(head))}


# ---- requests: decoding (the ingress) -------------------------------------------------------------------
def decode_request(
    body: bytes,
    inputs: Sequence[TensorSpec],
    *,
    header_length: int | str | None = None,
    content_type: str | None = None,
    outputs: Sequence[TensorSpec] | None = None,
) -> InferRequest:
    """The checked request of an HTTP body: its items (checked against the model's `inputs`), id and the
    outputs it asks for (checked against `outputs` when given). `header_length` is the request's
    Inference-Header-Content-Length header (None: the body is all JSON), `content_type` its Content-Type header.
    Raises ProtocolError (HTTP 400) for anything else; nothing else escapes, whatever the bytes."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("decode_request takes the body as bytes")
    body = bytes(body)
    _check_content_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise ProtocolError(f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}: send fewer items")
    n_head = _header_length(header_length, len(body))
    req = _parse_json(body[:n_head], binary=n_head < len(body) or header_length is not None)
    if not isinstance(req, dict):
        raise ProtocolError("request body must be a JSON object with `inputs`")
    rid = req.get("id")
    if rid is not None and not (isinstance(rid, str) and _is_text(rid)):
        raise ProtocolError("id: must be a string (UTF-8 text)")
    params = _parameters(req, "parameters")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise ProtocolError("parameters.binary_data_output: must be true or false")
    wanted = _requested_outputs(req.get("outputs"), outputs)
    tensors = req.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ProtocolError("inputs: must be a non-empty list of tensors")
    if len(tensors) != len(inputs):
        raise ProtocolError(f"inputs: {len(tensors)} tensors given; this model takes {[s.name for s in inputs]}")
    by_name = {s.name: s for s in inputs}
    blob = memoryview(body)[n_head:]
    offset = 0
    seen: set[str] = set()
    budget = MAX_ELEMENTS
    items: list[Any] | None = None
    for i, t in enumerate(tensors):
        where = f"inputs[{i}]"
        if not isinstance(t, dict):
            raise ProtocolError(f"{where}: must be an object with name, shape, datatype, data")
        name = t.get("name")
        spec = by_name.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ProtocolError(f"{where}.name: {_short(name)} is not an input; use one of {sorted(by_name)}")
        if spec.name in seen:
            raise ProtocolError(f"{where}.name: input {spec.name!r} is given twice; give each input once")
        seen.add(spec.name)
        shape = _check_shape(t, spec, where, budget)
        count = math.prod(shape)
        budget -= count
        size = _binary_size(t, where)
        if size is None:
            items = _decode_json_tensor(t, spec, shape, where)
            continue
        if size > len(blob) - offset:
            raise ProtocolError(
                f"{where}.parameters.binary_data_size: {size} bytes, but only {len(blob) - offset} binary bytes "
                f"follow the JSON header ({HEADER_LENGTH}: {n_head}); send the tensor's bytes after the header"
            )
        items = _decode_binary_tensor(blob[offset : offset + size], spec, shape, where)
        offset += size
    if offset != len(blob):
        raise ProtocolError(
            f"{len(blob) - offset} bytes follow the JSON header ({HEADER_LENGTH}: {n_head}) that no input's "
            "parameters.binary_data_size accounts for; give each binary input its binary_data_size"
        )
    assert items is not None
    return InferRequest(items, rid, wanted, binary_output)


def _check_content_type(content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        return  # tritonclient.http (geventhttpclient) and many clients send none
    if len(content_type) > 256:
        raise ProtocolError("Content-Type header: longer than 256 characters; send application/json")
    media, *params = (p.strip().lower() for p in content_type.split(";"))
    if media not in ACCEPTED_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise ProtocolError(
            f"Content-Type header: {content_type!r} is not a V2 inference request; send {JSON_TYPE} (a JSON body) "
            f"or {BINARY_TYPE} with the {HEADER_LENGTH} header (the binary tensor extension)"
        )
    for p in params:
        key, _, value = p.partition("=")
        if key.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise ProtocolError(f"Content-Type header: {content_type!r}; a V2 request's JSON is UTF-8 (charset=utf-8)")


def _header_length(value: int | str | None, body_len: int) -> int:
    """How many leading bytes of the body are JSON (all of them without the header)."""
    if value is None:
        return body_len
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProtocolError(f"{HEADER_LENGTH} header: must be a whole number of bytes")
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ProtocolError(f"{HEADER_LENGTH} header: {text[:40]!r} must be the JSON header's size in bytes")
    n = int(text)
    if not 0 < n <= body_len:
        raise ProtocolError(
            f"{HEADER_LENGTH} header: {n} bytes, but the body holds {body_len}; it must be the size of the JSON "
            "part at the start of the body (> 0)"
        )
    return n


# A string, or an unterminated one up to the end: this pattern never fails once it has seen a quote, so the scan
# stays linear (a pattern that can fail would retry from every later quote: quadratic on `"\\"\\"\\"...`).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{},")
_DEPTH_STEP = np.zeros(256, dtype=np.int32)
_DEPTH_STEP[list(b"[{")] = 1
_DEPTH_STEP[list(b"]}")] = -1


def _scan_json(text: bytes) -> None:
    """Refuse JSON that would nest deeper than MAX_JSON_DEPTH or create more containers or values than a V2
    request can need, in time and memory linear in its size (strings removed first: their brackets don't count).
    Counted with the strings in, the counts are upper bounds: a body whose bounds pass needs no string removal
    (that removal costs ~1 s per million strings; a body of flat text never pays it)."""
    skeleton = text.translate(None, _NOT_STRUCTURE)
    opens = skeleton.count(b"[") + skeleton.count(b"{")
    if opens <= MAX_JSON_DEPTH and skeleton.count(b",") <= MAX_JSON_VALUES:
        return
    if b'"' in text:
        skeleton = _JSON_STRING.sub(b"", text).translate(None, _NOT_STRUCTURE)
    objects = max(skeleton.count(b"{"), skeleton.count(b"}"))
    arrays = max(skeleton.count(b"["), skeleton.count(b"]"))
    commas = skeleton.count(b",")
    if objects > MAX_JSON_OBJECTS:
        raise ProtocolError(f"request JSON holds {objects} objects; a V2 request needs at most {MAX_JSON_OBJECTS}")
    if arrays > MAX_JSON_ARRAYS:
        raise ProtocolError(f"request JSON holds {arrays} arrays; send `data` flat (row-major), not nested")
    if commas > MAX_JSON_VALUES:
        raise ProtocolError(f"request JSON holds over {MAX_JSON_VALUES} values; the limit is {MAX_ELEMENTS} elements")
    steps = _DEPTH_STEP[np.frombuffer(skeleton.translate(None, b","), dtype=np.uint8)]
    if steps.size and int(np.cumsum(steps).max()) > MAX_JSON_DEPTH:
        raise ProtocolError(
            f"request JSON nests deeper than {MAX_JSON_DEPTH} levels; send `data` flat (row-major) with its `shape`"
        )


def _refuse_constant(token: str) -> Any:
    raise ProtocolError(f"request JSON holds {token}; V2 JSON carries finite numbers only")


def _finite_float(token: str) -> float:
    x = float(token)
    if not math.isfinite(x):
        raise ProtocolError(f"request JSON holds the number {token[:40]}, which overflows; send finite numbers")
    return x


def _parse_json(text: bytes, binary: bool) -> Any:
    what = "the JSON header (the first Inference-Header-Content-Length bytes)" if binary else "request body"
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what} is not UTF-8 text ({e.reason} at byte {e.start}); send UTF-8 JSON") from None
    _scan_json(text)
    try:
        return json.loads(decoded, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        hint = "" if binary else f" (a body with binary tensors needs the {HEADER_LENGTH} header)"
        raise ProtocolError(f"{what} is not JSON ({e}); send a V2 inference request object{hint}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer longer than Python parses (4300 digits)
        if isinstance(e, ProtocolError):
            raise
        raise ProtocolError(f"{what} is not JSON that can be read ({str(e)[:120]}); send a V2 request") from None


def _short(x: Any) -> str:
    """A request's value quoted in a message, cut short (a message never echoes megabytes back)."""
    return reprlib.repr(x)


def _is_text(s: str) -> bool:
    """A string that is UTF-8 text (a JSON \\ud800 escape makes a lone surrogate, which no model can encode)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parameters(obj: dict, where: str) -> dict:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: must be an object (name -> value), got {type(params).__name__}")
    return params


def _requested_outputs(value: Any, outputs: Sequence[TensorSpec] | None) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ProtocolError("outputs: must be a non-empty list of {name, parameters}; leave it out for every output")
    known = None if outputs is None else [s.name for s in outputs]
    wanted: list[RequestedOutput] = []
    for i, o in enumerate(value):
        where = f"outputs[{i}]"
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise ProtocolError(f"{where}: must be an object with a string `name`")
        name = o["name"]
        if known is not None and name not in known:
            raise ProtocolError(f"{where}.name: {_short(name)} is not an output; use one of {known}")
        if any(w.name == name for w in wanted):
            raise ProtocolError(f"{where}.name: output {name!r} is asked for twice; ask for each output once")
        params = _parameters(o, f"{where}.parameters")
        if "classification" in params:
            raise ProtocolError(f"{where}.parameters.classification: not supported; leave it out")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise ProtocolError(f"{where}.parameters.binary_data: must be true or false")
        wanted.append(RequestedOutput(name, binary))
    return tuple(wanted)


def _check_shape(t: dict, spec: TensorSpec, where: str, budget: int) -> list[int]:
    dt = t.get("datatype")
    if dt != spec.datatype:
        raise ProtocolError(f"{where}.datatype: {_short(dt)}; input {spec.name!r} takes {spec.datatype}")
    shape = t.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_ELEMENTS for d in shape)
    ):
        raise ProtocolError(
            f"{where}.shape: {_short(shape)} must be a non-empty list of sizes in [0, {MAX_ELEMENTS}], items first"
        )
    if len(shape) != len(spec.shape) or any(w not in (-1, d) for w, d in zip(spec.shape[1:], shape[1:])):
        raise ProtocolError(f"{where}.shape: {shape} does not match {list(spec.shape)} (-1: any size)")
    n = shape[0]
    if not 1 <= n <= MAX_ITEMS:
        raise ProtocolError(f"{where}.shape[0]: {n} items; send between 1 and {MAX_ITEMS} per request")
    count = math.prod(shape)
    if count > budget:
        raise ProtocolError(f"{where}: {count} elements; the limit is {MAX_ELEMENTS} per request")
    return shape


def _binary_size(t: dict, where: str) -> int | None:
    """The tensor's `parameters.binary_data_size` (None: its elements are in `data`)."""
    params = _parameters(t, f"{where}.parameters")
    if any(k.startswith("shared_memory") for k in params):
        raise ProtocolError(f"{where}.parameters: shared memory is not supported; send `data` or binary data")
    size = params.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ProtocolError(f"{where}.parameters.binary_data_size: must be a whole number of bytes >= 0")
    if "data" in t:
        raise ProtocolError(f"{where}: has both `data` and parameters.binary_data_size; send the elements once")
    return size


def _decode_json_tensor(t: dict, spec: TensorSpec, shape: list[int], where: str) -> list[Any]:
    dt = spec.datatype
    count = math.prod(shape)
    data = t.get("data")
    if not isinstance(data, list):
        raise ProtocolError(f"{where}.data: must be a list (flat, row-major, or nested)")
    flat = _flatten(data, count, where)
    kinds = set(map(type, flat))
    if dt == "BYTES":
        if not kinds <= {str} or not all(map(_is_text, flat)):
            raise ProtocolError(f"{where}.data: BYTES elements must be strings (UTF-8 text)")
        return _group(flat, shape)
    allowed = {bool} if dt == "BOOL" else {int} if dt[0] in "IU" else {int, float}
    if not kinds <= allowed:
        want = "true or false" if dt == "BOOL" else "whole numbers" if dt[0] in "IU" else "numbers"
        raise ProtocolError(f"{where}.data: elements must be {want} for datatype {dt}")
    target = np.dtype(DATATYPES[dt])
    try:
        arr = np.asarray(flat, dtype=np.float64 if target.kind == "f" else None)
    except OverflowError:  # an integer beyond what 64 bits (or a float64) hold
        raise ProtocolError(f"{where}.data: values outside {dt}'s range") from None
    if target.kind in "iu" and arr.size:
        info = np.iinfo(target)
        if arr.dtype.kind not in "iu" or (arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max)):
            raise ProtocolError(f"{where}.data: values outside {dt}'s range [{info.min}, {info.max}]")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(target)
    return _items(arr, shape, where)


def _decode_binary_tensor(raw: memoryview, spec: TensorSpec, shape: list[int], where: str) -> list[Any]:
    dt = spec.datatype
    count = math.prod(shape)
    if dt == "BYTES":
        return _group(_unpack_bytes(raw, count, where), shape)
    wire = _wire_dtype(dt)
    if len(raw) != count * wire.itemsize:
        raise ProtocolError(
            f"{where}.parameters.binary_data_size: {len(raw)} bytes; shape {shape} of {dt} takes "
            f"{count * wire.itemsize} ({wire.itemsize} per element)"
        )
    arr = np.frombuffer(raw, dtype=wire).astype(wire.newbyteorder("="))  # a native, writable copy
    if dt == "BOOL":
        if arr.size and arr.max() > 1:
            raise ProtocolError(f"{where}: BOOL elements are one byte each, 0 or 1")
        arr = arr.astype(np.bool_)
    return _items(arr, shape, where)


def _items(arr: np.ndarray, shape: list[int], where: str) -> list[Any]:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ProtocolError(f"{where}.data: NaN, infinite or out-of-range values for its datatype; send finite numbers")
    arr = arr.reshape(shape)
    return [arr[i] for i in range(shape[0])]


def _group(flat: list[str], shape: list[int]) -> list[Any]:
    """BYTES items: a string each for shape [n]; else each item's strings, flat (row-major)."""
    if len(shape) == 1:
        return flat
    per = math.prod(shape[1:])
    return [flat[i * per : (i + 1) * per] for i in range(shape[0])]


def _wire_dtype(datatype: str) -> np.dtype:
    """The little-endian numpy dtype of a datatype's binary elements (BOOL: one byte)."""
    return np.dtype(np.uint8 if datatype == "BOOL" else DATATYPES[datatype]).newbyteorder("<")


def _unpack_bytes(raw: memoryview, count: int, where: str) -> list[str]:
    out: list[str] = []
    pos, end = 0, len(raw)
    for k in range(count):
        if pos + 4 > end:
            raise ProtocolError(f"{where}: binary BYTES data ends at element {k} of {count}; check binary_data_size")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if size > end - pos:
            raise ProtocolError(f"{where}: binary BYTES element {k} says {size} bytes; only {end - pos} remain")
        try:
            out.append(str(raw[pos : pos + size], "utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError(f"{where}: binary BYTES element {k} is not UTF-8 text; this model takes text") from None
        pos += size
    if pos != end:
        raise ProtocolError(f"{where}: {end - pos} bytes beyond the {count} BYTES elements its shape says")
    return out


def _pack_bytes(elements: Sequence[str | bytes]) -> bytes:
    parts = []
    for e in elements:
        b = e.encode("utf-8") if isinstance(e, str) else bytes(e)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


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
    model: str,
    outputs: dict[str, list[Any]],
    request_id: str | None = None,
    parameters: dict | None = None,
    *,
    request: InferRequest | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A V2 inference response body and its HTTP headers: one BYTES tensor per output, one element per item.
    With `request`, only the outputs it asks for, in its order, each in binary where it asks so (then the body is
    the JSON header and the raw bytes, and the headers carry Inference-Header-Content-Length); `request_id`
    defaults to its id. Raises ValueError for an output the request names that `outputs` lacks (the decoder,
    given the model's outputs, refuses those with a 400) and for an element that is not JSON-serialisable."""
    names = list(outputs)
    if request is not None:
        request_id = request.id if request_id is None else request_id
        if request.outputs is not None:
            missing = [o.name for o in request.outputs if o.name not in outputs]
            if missing:
                raise ValueError(f"outputs {missing} were asked for but not produced; produced: {names}")
            names = [o.name for o in request.outputs]
    tensors: list[dict] = []
    blobs: list[bytes] = []
    for name in names:
        texts = [_to_text(v) for v in outputs[name]]
        tensor: dict = {"name": name, "datatype": "BYTES", "shape": [len(texts)]}
        if request is not None and request.wants_binary(name):
            blob = _pack_bytes(texts)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = texts
        tensors.append(tensor)
    body: dict = {"model_name": model, "outputs": tensors}
    if request_id is not None:
        body["id"] = request_id
    if parameters:
        body["parameters"] = parameters
    head = jsonio.dumps(body).encode()
    if not blobs:
        return head, {"content-type": JSON_TYPE}
    return head + b"".join(blobs), {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(head))}


def decode_response(body: dict | bytes, header_length: int | str | None = None) -> dict[str, list[Any]]:
    """Outputs of a V2 response by name (BYTES elements that hold JSON are parsed back). `body`: the parsed JSON
    object, or the raw body with the response's Inference-Header-Content-Length header (binary outputs)."""
    blob = b""
    if isinstance(body, dict):
        head = body
    else:
        n = len(body) if header_length is None else int(header_length)
        head, blob = json.loads(body[:n]), bytes(body[n:])
    out: dict[str, list[Any]] = {}
    offset = 0
    for t in head.get("outputs", []):
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = memoryview(blob)[offset : offset + size]
            offset += size
            count = math.prod(t["shape"])
            if t.get("datatype") == "BYTES":
                vals: list = _unpack_bytes(raw, count, t["name"])
            else:
                vals = np.frombuffer(raw, dtype=_wire_dtype(t["datatype"])).tolist()
        else:
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
