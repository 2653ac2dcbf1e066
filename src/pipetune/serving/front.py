"""The ingress's own HTTP server: requests reach the ingress replica directly, not through Ray Serve's proxy.

Through Ray Serve's HTTP proxy a request crosses two processes before any pipeline work starts (the proxy parses
HTTP, then hands the request to the ingress replica as a Ray call, and the answer comes back the same way): a
proxy hop costs CPU in both processes on every request. Serving HTTP from the ingress replica itself removes that
hop; Ray still places, starts, health-checks and restarts the ingress like any replica. (Ray Serve has an
experimental flag for the same idea, RAY_SERVE_ENABLE_DIRECT_INGRESS, which must be set on the whole cluster and
gives each ingress replica a port from a range; this works on any Ray and keeps the one configured port.)

The server is uvicorn (Ray Serve's own HTTP server) running on the replica's event loop, bound before the replica
reports ready, so a port already in use fails the deployment with the reason. Its limits bound what one client can
hold: the request head's size (431 beyond MAX_HEAD_BYTES) and the time to send it (408 after HEAD_TIMEOUT_S, a
slowloris trickle included; uvicorn itself bounds only an idle keep-alive), connections in service at once
(beyond MAX_CONNECTIONS a 503 with Retry-After, as admission control answers). Every answer the server gives on
its own is a JSON error naming what was wrong, as the endpoint's are; the body's size and time are bounded where
it is read (the ingress's `_infer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipetune.protocol import error_body

KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 2048  # concurrent connections (and requests in service) at once; beyond it: 503
RETRY_AFTER_S = "1"  # what a 503 (connection limit, admission control, not ready yet) tells a client to wait
BACKLOG = 2048
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; beyond it: 431
HEAD_TIMEOUT_S = 10.0  # from connecting (or the previous response) to the end of the request's headers; then 408
BODY_TIMEOUT_S = 15.0  # from the end of the headers to the end of the body (read by the handler); then 408

Handler = Callable[[Request], Awaitable[Response]]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; an address in use is an OSError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def asgi_app(handler: Handler) -> Callable[..., Awaitable[None]]:
    """An ASGI application answering every HTTP request with `handler`."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan is off; websockets are not part of the protocol
            return
        try:
            response = await handler(Request(scope, receive))
        except Exception as e:  # noqa: BLE001 - a JSON 500 with the reason, not uvicorn's plain-text one
            response = Response(
                error_body(f"failed: {type(e).__name__}: {e}"), status_code=500, media_type="application/json"
            )
        await response(scope, receive, send)

    return app


def raw_error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 response closing the connection, with the endpoint's JSON error body."""
    body = error_body(message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def at_connection_limit(scope: dict, receive: Any, send: Any) -> None:
    """The answer beyond MAX_CONNECTIONS: a JSON 503 with Retry-After (uvicorn's own is plain text, without it)."""
    body = error_body(f"the server holds its limit of {MAX_CONNECTIONS} connections and requests at once; retry later")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", RETRY_AFTER_S.encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head bounded in size (MAX_HEAD_BYTES: 431) and in time
    (HEAD_TIMEOUT_S: 408), and its own refusals sent as JSON errors (the connection limit's 503 too). uvicorn
    bounds neither: a client that connects and sends nothing, or trickles a header a byte at a time, holds its
    connection for ever, and a header line is buffered whole however long it grows."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refusal: tuple[int, str, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._await_head()

    def _await_head(self) -> None:
        """A new request head is due: count its bytes from zero and start its clock."""
        self._head_done = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._head_done and not self.transport.is_closing():
            self.transport.write(
                raw_error(
                    408,
                    "Request Timeout",
                    f"request headers not received within {HEAD_TIMEOUT_S:g} s; connection closed",
                )
            )
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        in_head = not self._head_done
        super().data_received(data)
        if in_head and not self._head_done and not self.transport.is_closing():
            # still inside the head after this chunk: everything received so far belongs to it
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()

    def _refuse_head(self) -> None:
        self._refusal = (
            431, "Request Header Fields Too Large",
            f"request line and headers exceed {MAX_HEAD_BYTES // 1024} KiB; send fewer or shorter headers",
        )  # fmt: skip
        self.send_400_response("")

    def on_headers_complete(self) -> None:
        self._head_done = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        size = len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers)
        if size > MAX_HEAD_BYTES:  # the whole head came in one chunk: measured here
            self._refusal = (
                431, "Request Header Fields Too Large",
                f"request line and headers are {size} bytes; the limit is {MAX_HEAD_BYTES // 1024} KiB",
            )  # fmt: skip
            raise ValueError("request head too large")  # the parser stops; data_received answers
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        # Over the limit: uvicorn would answer its plain-text 503; this request gets at_connection_limit instead
        # (uvicorn's own check is switched off for it, and the application restored after).
        app, self.app, self.limit_concurrency = self.app, at_connection_limit, None
        try:
            super().on_headers_complete()
        finally:
            self.app, self.limit_concurrency = app, limit

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a pipelined request's head is already complete
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def send_400_response(self, msg: str) -> None:
        if self.transport.is_closing():
            return
        status, reason, message = self._refusal or (
            400, "Bad Request", "malformed HTTP/1.1 request: it could not be parsed (request line, headers or framing)"
        )  # fmt: skip
        self.transport.write(raw_error(status, reason, message))
        self.transport.close()


class HttpFront:
    """uvicorn serving `handler` on `sock`, as a task of the running event loop."""

    def __init__(self, handler: Handler, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        config = uvicorn.Config(
            asgi_app(handler),
            lifespan="off",
            # None: uvicorn's default dictConfig would close every logging handler of the process, Ray Serve's
            # replica log among them; the controller then fails the replica's checks (`is_allocated` reads that
            # log's file) and replaces the ingress whenever it recovers it (a controller restart: connections
            # refused until the new one is up).
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
            backlog=BACKLOG,
            server_header=False,
            http=GuardedHttpProtocol,
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[self.sock]))

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, let requests in service finish (at most `timeout_s`), close."""
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.task, timeout_s)
        self.sock.close()
