"""The open-loop sender: every request leaves at its planned time, whether or not earlier ones have returned.

One asyncio loop, one aiohttp session. A dispatcher sleeps until each planned time and starts that request as
its own task; nothing waits for a response before sending the next request, so a slow server shows up as
latency and refusals, never as a lower offered load (no coordinated omission).

Bounds: the plan holds at most `max_requests`; at most `concurrency` requests are open at once (one connection
each, the connector's limit); each request has a `timeout_s`. A request that falls due while `concurrency`
are open is **not sent** and recorded as `not_sent` (reason: client concurrency cap). It is not queued: a
queued request would leave late, turning the open loop into a closed one and hiding exactly the overload the
test is meant to show; the count says how much of the plan the client could not offer.

Per request it records the planned send time, the actual send time (when aiohttp has written the request
headers to the socket, from its tracing hooks, so connection setup counts as send delay, not as latency), the
latency (send to the whole response read), the HTTP status, the outcome, the variants the server says served
it (V2 response `parameters.variants`), the server's own end-to-end time (`parameters.e2e_s`) and a reason
for every request that did not complete.

Outcomes: completed (200), refused (503, admission control), dropped (504, deadline), failed (any other status,
a connection error, an unreadable response), timeout (no full answer within `timeout_s`), not_sent.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.metrics import COMPLETED, FAILED, HTTP_OK, NOT_SENT, PENDING, TIMEOUT, outcome_counts, outcomes_of_http
from pipetune.protocol import HEADER_LENGTH

LEAD_IN_S = 0.05  # the first planned time is this far after the session is up
MAX_REASON = 300


@dataclass
class Records:
    """Per-request records, index i = the i-th planned request (times in seconds from the run's start)."""

    planned: np.ndarray
    sent: np.ndarray  # NaN: not sent
    done: np.ndarray  # when the response (or the error) came; NaN: not sent
    latency: np.ndarray  # sent -> response read; NaN unless an answer came
    status: np.ndarray  # HTTP status; 0: none
    outcome: np.ndarray  # index into OUTCOMES (pipetune.metrics); PENDING: sent, no answer yet
    server_e2e: np.ndarray  # parameters.e2e_s of a 200 response; NaN if absent
    variants: list[str | None]  # "stage=variant;..." of a 200 response
    reasons: list[str | None]
    elapsed_s: float = 0.0  # from the start to the last event
    interrupted: bool = False
    cpu_s: float = 0.0  # CPU time this process spent during the run

    @classmethod
    def empty(cls, planned: np.ndarray) -> Records:
        n = planned.size
        nan = np.full(n, np.nan)
        return cls(
            planned=planned,
            sent=nan.copy(),
            done=nan.copy(),
            latency=nan.copy(),
            status=np.zeros(n, dtype=np.int32),
            outcome=np.full(n, NOT_SENT, dtype=np.int8),
            server_e2e=nan.copy(),
            variants=[None] * n,
            reasons=["not sent: the run ended before it fell due"] * n,
        )

    def counts(self) -> dict[str, int]:
        """Requests per outcome (during a run, the open ones are in none of them)."""
        return outcome_counts(self.outcome)


@dataclass
class RunOptions:
    url: str  # the infer endpoint: http://host:port/v2/models/NAME/infer
    bodies: list[bytes]
    concurrency: int = 512
    timeout_s: float = 10.0
    progress: Callable[[Records, int, int], None] | None = None  # ~4 times a second: (records, sent, due)
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body_headers: list[dict[str, str]] | None = None  # per body (e.g. each binary body's header length)


def run(plan: np.ndarray, opts: RunOptions) -> Records:
    """Send the plan open loop; returns the records (Ctrl-C stops sending and returns what was recorded)."""
    # Everything alive now (imports, the plan, the bodies) moves out of the collector's sight, so a full
    # collection during the run scans only what the run allocates: no pause grows with what was imported.
    gc.collect()
    gc.freeze()
    try:
        return asyncio.run(_run(plan, opts))
    finally:
        gc.unfreeze()


@dataclass(slots=True)
class _Progress:
    """The dispatcher's counters, shared with the request tasks (t0: the loop time planned times count from)."""

    inflight: int = 0
    sent: int = 0
    due: int = 0
    t0: float = 0.0


async def _run(plan: np.ndarray, opts: RunOptions) -> Records:
    import aiohttp

    rec = Records.empty(np.asarray(plan, dtype=np.float64))
    loop = asyncio.get_running_loop()
    clock = loop.time
    bodies, nb = opts.bodies, len(opts.bodies)
    heads = opts.body_headers or [opts.headers]
    if len(heads) not in (1, nb):
        raise ValueError(f"body_headers: {len(heads)} header sets for {nb} bodies; give one per body")
    nh = len(heads)
    state = _Progress()
    cap = int(opts.concurrency)
    cap_reason = f"not sent: {cap} requests already open (client concurrency cap; raise --concurrency)"

    async def on_headers_sent(_session: Any, ctx: Any, _params: Any) -> None:
        i = ctx.trace_request_ctx
        if i is not None and math.isnan(rec.sent[i]):
            rec.sent[i] = clock() - state.t0

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_headers_sent)
    connector = aiohttp.TCPConnector(limit=cap, limit_per_host=0, force_close=False, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=opts.timeout_s)
    tasks: set[asyncio.Task] = set()

    async def one(i: int) -> None:
        t_start = clock() - state.t0
        try:
            post = session.post(opts.url, data=bodies[i % nb], headers=heads[i % nh], trace_request_ctx=i)
            async with post as resp:
                payload = await resp.read()
                header_length = resp.headers.get(HEADER_LENGTH)
                now = clock() - state.t0
                rec.status[i] = resp.status
        except TimeoutError:
            _finish(rec, i, TIMEOUT, clock() - state.t0, f"timeout: no full answer within {opts.timeout_s:g} s")
            return
        except aiohttp.ClientError as e:
            _finish(rec, i, FAILED, clock() - state.t0, f"client error: {type(e).__name__}: {e}")
            return
        except asyncio.CancelledError:
            _finish(rec, i, FAILED, clock() - state.t0, "interrupted: the run was stopped before the answer")
            return
        finally:
            if math.isnan(rec.sent[i]):
                rec.sent[i] = t_start  # failed before the headers were written (e.g. connection refused)
            state.inflight -= 1
        rec.latency[i] = now - rec.sent[i]
        _classify(rec, i, resp.status, payload, now, header_length)

    async def ticker(progress: Callable[[Records, int, int], None]) -> None:
        while True:
            await asyncio.sleep(0.25)
            progress(rec, state.sent, state.due)

    cpu0 = time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace]) as session:
        tick = loop.create_task(ticker(opts.progress)) if opts.progress is not None else None
        state.t0 = t0 = clock() + LEAD_IN_S
        try:
            for i, t in enumerate(rec.planned.tolist()):
                delay = t0 + t - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                state.due = i + 1
                if state.inflight >= cap:
                    rec.reasons[i] = cap_reason
                    continue
                state.inflight += 1
                state.sent += 1
                rec.outcome[i] = PENDING
                rec.reasons[i] = None
                task = loop.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while tasks:
                await asyncio.wait(list(tasks))
        except asyncio.CancelledError:  # Ctrl-C: stop sending, let the open ones finish as interrupted
            rec.interrupted = True
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if tick is not None:
                tick.cancel()
    rec.cpu_s = time.process_time() - cpu0
    last = np.nanmax(np.concatenate([rec.done, rec.sent, [0.0]]))
    planned_end = rec.planned[-1] if rec.planned.size and not rec.interrupted else 0.0
    rec.elapsed_s = float(max(last, planned_end))
    for j in np.flatnonzero(rec.outcome == PENDING):  # a request started is never reported as not sent
        _finish(rec, int(j), FAILED, rec.elapsed_s, "no answer recorded: the run ended first")
    if opts.progress is not None:
        opts.progress(rec, state.sent, state.due)
    return rec


def _finish(rec: Records, i: int, outcome: int, now: float, reason: str) -> None:
    rec.outcome[i] = outcome
    rec.done[i] = now
    rec.reasons[i] = reason[:MAX_REASON]


def _classify(rec: Records, i: int, status: int, payload: bytes, now: float, header_length: str | None = None) -> None:
    rec.done[i] = now
    if status == HTTP_OK:
        try:  # a binary response: its JSON is the first Inference-Header-Content-Length bytes
            body = json.loads(payload if header_length is None else payload[: int(header_length)])
        except ValueError:
            rec.outcome[i] = FAILED
            rec.reasons[i] = f"http 200 with a body that is not JSON: {payload[:80]!r}"
            return
        rec.outcome[i] = COMPLETED
        params = body.get("parameters") if isinstance(body, dict) else None
        params = params if isinstance(params, dict) else {}
        variants = params.get("variants")
        if isinstance(variants, dict) and variants:
            rec.variants[i] = ";".join(f"{k}={v}" for k, v in sorted(variants.items()))
        e2e = params.get("e2e_s")
        if isinstance(e2e, (int, float)) and math.isfinite(e2e):
            rec.server_e2e[i] = float(e2e)
        return
    rec.outcome[i] = outcomes_of_http(status)
    rec.reasons[i] = f"http {status}: {_error_text(payload)}"[:MAX_REASON]


def _error_text(payload: bytes) -> str:
    try:
        body = json.loads(payload)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return payload[:200].decode("utf-8", "replace")
