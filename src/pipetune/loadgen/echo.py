"""A trivial V2 server for measuring the load generator itself (and for its tests): fixed answers, no model.

A raw asyncio HTTP/1.1 server (keep-alive, Content-Length bodies), so that what it costs per request is as
little as Python allows and the generator, not the server, is what a benchmark measures. It answers

* `GET /v2/health/live`, `/v2/health/ready`: 200;
* `GET /v2/models/{name}`: metadata with one input (default BYTES [-1], settable);
* `POST /v2/models/{name}/infer`: after `delay_s`, the next status of the cycle `statuses` (200: a fixed V2
  response whose parameters name a served variant, like pipetune's ingress; 503 with Retry-After; 504; 400
  with `{"error": ...}`), so a test can script how many requests are refused or bad.

`start_echo(...)` runs it in a child process (`python -m pipetune.loadgen.echo --port 0`, so the measured
process shares no interpreter lock with it) and yields its URL once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipetune import jsonio
from pipetune.protocol import TensorSpec, encode_response, error_body, model_metadata

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable", 504: "Gateway Timeout"}
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class EchoConfig:
    model: str = "echo"
    delay_s: float = 0.0
    statuses: tuple[int, ...] = (200,)
    input_datatype: str = "BYTES"
    input_shape: tuple[int, ...] = (-1,)
    host: str = "127.0.0.1"
    port: int = 0
    variants: dict = field(default_factory=lambda: {"echo": "fixed"})


def _response(status: int, body: bytes, extra: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class _Server:
    def __init__(self, cfg: EchoConfig) -> None:
        self.cfg = cfg
        self.count = 0
        ok, _ = encode_response(cfg.model, {"output": ["ok"]}, parameters={"variants": cfg.variants, "e2e_s": 0.0})
        self.answers = {s: self._scripted(s, ok) for s in cfg.statuses}
        spec = TensorSpec("input", cfg.input_datatype, tuple(cfg.input_shape))
        meta = model_metadata(cfg.model, [spec], [TensorSpec("output", "BYTES", (-1,))], platform="echo")
        self.meta = _response(200, jsonio.dumps(meta).encode())
        self.ready = _response(200, b'{"ready": true}')
        self.prefix = f"/v2/models/{cfg.model}"

    @staticmethod
    def _scripted(status: int, ok: bytes) -> bytes:
        if status == 200:
            return _response(200, ok)
        if status == 503:
            return _response(503, error_body("at capacity (echo server)"), "retry-after: 1\r\n")
        return _response(status, error_body(f"scripted status {status} (echo server)"))

    def answer_for(self, method: str, path: str) -> bytes | None:
        """The bytes to send (None: an infer request, answered by the status cycle)."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and path == self.prefix + "/infer":
            return None
        if method == "GET" and path == self.prefix:
            return self.meta
        if method == "GET" and path in ("/v2/health/ready", "/v2/health/live", self.prefix + "/ready"):
            return self.ready
        return _response(404, error_body(f"{method} {path}: not served by the echo server"))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ") + ["", ""])[:3]
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip() or 0)
                if length:
                    await reader.readexactly(length)
                out = self.answer_for(method, path)
                if out is None:
                    status = self.cfg.statuses[self.count % len(self.cfg.statuses)]
                    self.count += 1
                    if self.cfg.delay_s > 0:
                        await asyncio.sleep(self.cfg.delay_s)
                    out = self.answers[status]
                writer.write(out)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()


async def serve(cfg: EchoConfig) -> None:
    srv = _Server(cfg)
    server = await asyncio.start_server(srv.handle, cfg.host, cfg.port, limit=MAX_HEADER_BYTES, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port} http://{cfg.host}:{port}/v2/models/{cfg.model}", flush=True)
    async with server:
        await server.serve_forever()


def _run(cfg: EchoConfig) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(cfg))


@contextlib.contextmanager
def start_echo(
    delay_s: float = 0.0, statuses: tuple[int, ...] = (200,), model: str = "echo", timeout_s: float = 30.0
) -> Iterator[str]:
    """Run the echo server in a child process; yields its base URL (http://127.0.0.1:PORT) once it listens."""
    src = str(Path(__file__).resolve().parents[2])  # the folder holding `pipetune`, so the child imports this copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "pipetune.loadgen.echo", "--port", "0", "--model", model, "--delay", str(delay_s)]
    cmd += ["--statuses", ",".join(str(s) for s in statuses)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out = proc.stdout
    assert out is not None  # stdout=PIPE
    try:
        ready = select.select([out], [], [], timeout_s)[0]
        line = out.readline() if ready else ""
        if not line.startswith("listening "):
            proc.kill()
            err = proc.communicate(timeout=5)[1]
            raise RuntimeError(f"the echo server did not start within {timeout_s:g} s: {err.strip()[-500:]}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="0: any free port (printed as `listening PORT`)")
    p.add_argument("--model", default="echo")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before each infer answer")
    p.add_argument("--statuses", default="200", help="comma-separated status cycle, e.g. 200,200,503,400")
    a = p.parse_args()
    statuses = tuple(int(s) for s in a.statuses.split(","))
    _run(EchoConfig(model=a.model, delay_s=a.delay, statuses=statuses, host=a.host, port=a.port))


if __name__ == "__main__":
    main()
