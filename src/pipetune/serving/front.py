"""The ingress's own HTTP server: requests reach the ingress replica directly, not through Ray Serve's proxy.

Through Ray Serve's HTTP proxy a request crosses two processes before any pipeline work starts (the proxy parses
HTTP, then hands the request to the ingress replica as a Ray call, and the answer comes back the same way): a
proxy hop costs CPU in both processes on every request. Serving HTTP from the ingress replica itself removes that
hop; Ray still places, starts, health-checks and restarts the ingress like any replica. (Ray Serve has an
experimental flag for the same idea, RAY_SERVE_ENABLE_DIRECT_INGRESS, which must be set on the whole cluster and
gives each ingress replica a port from a range; this works on any Ray and keeps the one configured port.)

The server is uvicorn (Ray Serve's own HTTP server) running on the replica's event loop, bound before the replica
reports ready, so a port already in use fails the deployment with the reason. Its limits bound what one client can
hold: header size, idle keep-alive, and connections in service at once (beyond it uvicorn answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 2048  # concurrent connections served at once; beyond it: 503
BACKLOG = 2048

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
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    return app


class HttpFront:
    """uvicorn serving `handler` on `sock`, as a task of the running event loop."""

    def __init__(self, handler: Handler, sock: socket.socket) -> None:
        import uvicorn

        self.sock = sock
        config = uvicorn.Config(
            asgi_app(handler),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
            backlog=BACKLOG,
            server_header=False,
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
