"""Hostile HTTP at the live endpoint (the direct front, on Ray): wrong methods, huge headers, a slowloris head, a
body never sent, an oversized body, a wrong content type, and routes that do not exist (nothing reachable here
changes what is served). Each gets a 4xx JSON error naming what was wrong, and a normal request is answered 200
meanwhile and afterwards."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipetune import example_path, jsonio
from pipetune.configs import StageConfig

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, JSON body) of one request on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, json.loads(r.read() or b"null")  # headers: case-insensitive
    finally:
        c.close()


def _raw(port: int, data: bytes, wait_s: float = 30.0) -> tuple[int, dict, float]:
    """Send `data` and nothing more on a fresh connection: (status, JSON body, seconds to the answer)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf or not buf.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head[:300]
    return int(head.split()[1]), json.loads(body), time.monotonic() - t0


def test_hostile_http_gets_4xx_json_and_normal_requests_keep_200(ray_cluster):
    from pipetune.models.registry import variant_model_ref
    from pipetune.profiles import load_profiles
    from pipetune.protocol import MAX_BODY_BYTES, encode_request
    from pipetune.serving.backend import RayServeBackend
    from pipetune.serving.front import BODY_TIMEOUT_S, HEAD_TIMEOUT_S
    from pipetune.spec import load_pipeline

    p = load_pipeline(example_path("digits"))
    init = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 1)}
    port = _free_port()
    be = RayServeBackend(p, init, load_profiles(p), port=port, drop_after_s=5.0, inline=False)
    try:
        xs = variant_model_ref(p, "features", "pca-16")().sample_inputs(1)
        good = jsonio.dumps(encode_request(xs, be.inputs[0])).encode()
        infer = "/v2/models/digits/infer"
        json_ct = {"Content-Type": "application/json"}

        def ok() -> int:
            return _ask(port, "POST", infer, good, json_ct)[0]

        assert ok() == 200
        with ThreadPoolExecutor(4) as pool:
            # slow clients first: they must not hold back anyone else while they wait
            silent = pool.submit(_raw, port, b"POST " + infer.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            no_body = pool.submit(
                _raw, port, b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100"
                b"\r\n\r\n{" % infer.encode(),
            )  # fmt: skip
            for path in (infer, "/v2/models/digits", "/v2/models/digits/ready", "/v2/health/live", "/metrics"):
                for method in ("DELETE", "PUT", "PATCH"):
                    status, headers, body = _ask(port, method, path, b"{}", json_ct)
                    allowed = "POST" if path == infer else "GET"
                    assert (status, headers.get("Allow")) == (405, allowed), (method, path, status, body)
                    assert method in body["error"] and allowed in body["error"], body
            assert _ask(port, "POST", "/v2/models/digits", good, json_ct)[0] == 405
            # no control route: anything else is 404, whatever the method
            for method, path in [("POST", "/v2/repository/models/digits/load"), ("POST", "/-/routes"),
                                 ("PUT", "/api/serve/applications/"), ("POST", "/v2/models/other/infer")]:  # fmt: skip
                status, _h, body = _ask(port, method, path, good, json_ct)
                assert status == 404 and "error" in body, (method, path, status, body)
            big = {f"X-Pad-{i}": "a" * 1000 for i in range(100)}  # ~100 KiB of headers
            t0 = time.monotonic()
            try:
                status, _h, body = _ask(port, "POST", infer, good, {**json_ct, **big})
            except (ConnectionResetError, BrokenPipeError):
                status, body = 431, {"error": "KiB (reset before the answer was read)"}
            assert status == 431 and "KiB" in body["error"] and time.monotonic() - t0 < 5, body
            oversized = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
                infer.encode(),
                MAX_BODY_BYTES + 1,
            )
            status, body, _t = _raw(port, oversized)  # refused from the header: the body is never sent
            assert status == 413 and "Content-Length" in body["error"], body
            status, _h, body = _ask(port, "POST", infer, good, {"Content-Type": "text/xml"})
            assert status == 400 and "Content-Type" in body["error"], body
            status, _h, body = _ask(port, "POST", infer, b"\x00garbage", json_ct)
            assert status == 400 and body["error"], body
            served = [ok() for _ in range(20)]  # while the slow clients still hold their connections
            assert served.count(200) == 20, served
            s_status, s_body, s_t = silent.result(timeout=HEAD_TIMEOUT_S + 20)
            assert s_status == 408 and "headers" in s_body["error"] and s_t < HEAD_TIMEOUT_S + 5, (s_status, s_body)
            b_status, b_body, b_t = no_body.result(timeout=BODY_TIMEOUT_S + 20)
            assert b_status == 408 and "body" in b_body["error"] and b_t < BODY_TIMEOUT_S + 5, (b_status, b_body)
        assert ok() == 200
    finally:
        be.close()
