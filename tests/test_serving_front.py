"""The direct HTTP front (serving/front.py) against hostile clients, without Ray: huge headers get a JSON 431,
a head trickled too slowly or never sent a JSON 408, garbage a JSON 400, an oversized body a 413 before it is
read whole; the server keeps answering other clients throughout."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time

import pytest
from starlette.requests import Request
from starlette.responses import Response

from pipetune.serving import app, front

MAX_BODY_BYTES = SMALL_CAP = 256 * 1024


@pytest.fixture()
def server(monkeypatch):
    """A front on a free loopback port whose handler reads the body as the ingress does and answers its size."""
    from pipetune.serving.app import BodyRefused, _error, _read_body

    monkeypatch.setattr(front, "HEAD_TIMEOUT_S", 1.0)
    # A small body cap: a body over it is a few hundred KiB, not 16 MiB, so the client has finished sending before
    # the server answers and closes (a close with unread input resets the connection, which can lose the answer).
    monkeypatch.setattr(app, "MAX_BODY_BYTES", SMALL_CAP)

    async def handler(request: Request) -> Response:
        try:
            body = await _read_body(request)
        except BodyRefused as e:
            return _error(e.status, str(e))
        return Response(json.dumps({"bytes": len(body)}), media_type="application/json")

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        sock = front.bind("127.0.0.1", 0)
        holder["port"] = sock.getsockname()[1]

        async def main() -> None:
            f = front.HttpFront(handler, sock)
            holder["front"] = f
            f.start()
            started.set()
            while not holder.get("stop"):
                await asyncio.sleep(0.05)
            await f.stop(2.0)

        loop.run_until_complete(main())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert started.wait(10)
    yield holder["port"]
    holder["stop"] = True
    t.join(10)
    loop.close()


def _raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[int, dict]:
    """Send `data` on a fresh connection; (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered and closed before taking it all
            s.sendall(data)
        return _read_answer(s)


def _read_answer(s: socket.socket) -> tuple[int, dict]:
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            n = next(
                (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")), None
            )
            if n is not None and len(body) >= n:
                break
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), buf[:200]
    assert b"application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def _ok(port: int) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", "/x", body=b"abc", headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert (r.status, json.loads(r.read())) == (200, {"bytes": 3})
    c.close()


def test_huge_headers_are_431_in_one_chunk_or_trickled(server):
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(100))  # ~100 KiB
    status, body = _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert status == 431 and "KiB" in body["error"], body
    one = b"X-Long: " + b"b" * (200 * 1024)  # one header line longer than the limit, never finished
    status, body = _raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + one)
    assert status == 431, body
    _ok(server)


def test_slow_or_silent_head_is_408_and_others_are_served(server):
    t0 = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", server), timeout=5) as silent,
        socket.create_connection(("127.0.0.1", server), timeout=5) as trickle,
    ):
        trickle.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(3):  # a header byte every 0.3 s: never finishes within the 1 s allowed
            _ok(server)
            trickle.sendall(b"X")
            time.sleep(0.3)
        assert _read_answer(trickle)[0] == 408
        status, body = _read_answer(silent)
        assert status == 408 and "headers not received" in body["error"], body
    assert time.monotonic() - t0 < 4
    _ok(server)


def test_garbage_is_a_json_400_and_a_big_body_a_413_before_it_is_read(server):
    status, body = _raw(server, b"\x16\x03\x01\x00garbage not http\r\n\r\n")
    assert status == 400 and "malformed" in body["error"], body
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1)
    status, body = _raw(server, head)  # no body sent at all: refused from the header alone
    assert status == 413 and "Content-Length" in body["error"], body
    chunked = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(chunked)
        piece = b"a" * (64 << 10)
        try:
            for _ in range(MAX_BODY_BYTES // len(piece) + 2):
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, body = _read_answer(s)
    assert status == 413 and "exceeds" in body["error"], body
    status, body = _raw(server, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    assert status == 400, body
    _ok(server)


def test_the_ingress_has_no_mutating_route_but_infer():
    """The control plane is not reachable through the inference endpoint: every route the ingress serves only
    reads, except the V2 infer; anything else (a repository load, Serve's own routes) is no route at all."""
    from types import SimpleNamespace

    from pipetune.serving.app import Ingress

    route = Ingress.func_or_class._route
    me = SimpleNamespace(name="digits")
    paths = ["", "/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/v2/models/digits",
             "/v2/models/digits/ready", "/v2/models/digits/versions/1", "/v2/models/digits/infer",
             "/v2/models/digits/versions/1/infer"]  # fmt: skip
    for path in paths:
        name, methods = route(me, path)
        assert name is not None and methods == (("POST",) if path.endswith("/infer") else ("GET",)), path
    for path in ["/v2/repository/index", "/v2/repository/models/digits/load", "/v2/models/digits/unload",
                 "/-/routes", "/-/healthz", "/api/serve/applications", "/v2/models/digits/config", "/admin"]:  # fmt: skip
        assert route(me, path)[0] is None, path
    assert route(me, "/v2/models/other/infer") == ("unknown-model", ())


@pytest.fixture()
def two_connections(monkeypatch):
    """The front's connection limit at 2 (its own connection counts: one other held open reaches it)."""
    monkeypatch.setattr(front, "MAX_CONNECTIONS", 2)


def test_beyond_the_connection_limit_a_json_503_with_retry_after(two_connections, server):
    with socket.create_connection(("127.0.0.1", server), timeout=5):  # held open: the limit is reached
        time.sleep(0.2)
        c = http.client.HTTPConnection("127.0.0.1", server, timeout=5)
        c.request("POST", "/x", body=b"abc", headers={"Content-Type": "application/json"})
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 503 and r.getheader("Retry-After") == front.RETRY_AFTER_S, (r.status, body)
        assert r.getheader("Content-Type") == "application/json" and "limit of 2 connections" in body["error"]
        c.close()
    time.sleep(0.2)  # the held connection is gone: served again
    _ok(server)


def test_the_front_leaves_the_process_logging_alone():
    """uvicorn's default logging config closes every handler of the process (Ray Serve's replica log among them,
    which the controller reads when it recovers a replica): the front must not configure logging."""
    import logging
    import logging.handlers

    target = logging.StreamHandler()
    buffered = logging.handlers.MemoryHandler(10, target=target)
    logger = logging.getLogger("pipetune-test-front")
    logger.addHandler(buffered)
    try:

        async def handler(request: Request) -> Response:
            return Response(b"{}", media_type="application/json")

        sock = front.bind("127.0.0.1", 0)
        try:
            front.HttpFront(handler, sock).server.config.configure_logging()
        finally:
            sock.close()
        assert buffered.target is target
    finally:
        logger.removeHandler(buffered)
