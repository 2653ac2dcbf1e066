"""Caller-side batching: the ingress sends a stage's items in batches, one handle call per batch.

A handle call costs the same CPU whether it carries one item or sixteen (the caller's pickling and routing, the
replica's task dispatch and bookkeeping), so the ingress queues the items bound for a stage and sends what is
queued, up to the planned batch size, as soon as the stage can take another call. The number of calls in flight
per stage is bounded (replicas x CALLS_PER_REPLICA): one batch in service on each replica and one waiting behind
it, so that a replica never idles for a round trip, and items that arrive meanwhile wait here and leave together.
Under light load every call carries one item and leaves at once (no batching wait); under heavy load calls fill
up to the planned batch, which is when amortising the call matters.

Pure asyncio: `send` is whatever carries a batch to the stage (a Ray Serve handle call in the ingress).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

CALLS_PER_REPLICA = 2  # batches in flight per replica: one in service, one queued behind it

# What a send returns for a batch of n items: (n outputs in order, per-call facts reported to the caller)
Sender = Callable[[list[Any]], Awaitable[tuple[list[Any], Any]]]


class StageChannel:
    """The queue in front of one stage generation: items in, batches out, each item's output back to its caller.

    `max_batch`: items per call at most (the stage's planned batch size). `max_calls`: calls in flight at most.
    Both can change in place (`resize`) without losing a queued item."""

    def __init__(
        self,
        send: Sender,
        max_batch: int,
        max_calls: int,
        stage: str = "",
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> None:
        self._send = send
        self.stage = stage
        # A call that failed for a reason `retry_if` accepts (its replica died under it) is sent once more, its
        # items first in the queue; a second failure fails them with the reason.
        self._retry_if = retry_if
        self._retried: set[int] = set()  # ids of the futures whose item has been sent a second time
        self.retried = 0  # items sent again so far
        self.max_batch = max(1, int(max_batch))
        self.max_calls = max(1, int(max_calls))
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self.calls_in_flight = 0
        self.calls = 0  # sent so far
        self.items = 0  # carried so far
        self._tasks: set[asyncio.Task] = set()  # the calls in flight (the loop keeps only weak references)
        # The channel of the generation that replaced this one (its traffic moved there): items of a call that
        # fails here and is sent again go there, not to the generation being retired.
        self.successor: StageChannel | None = None

    def resize(self, max_batch: int, max_calls: int) -> None:
        self.max_batch = max(1, int(max_batch))
        self.max_calls = max(1, int(max_calls))
        self._pump()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def hand_over(self, other: StageChannel) -> int:
        """Move the items queued here (not sent yet) to `other`, in order: a stage's traffic moved to a new
        generation, so what waits for the old one leaves with the new. Calls in flight finish where they are.
        Returns how many items moved."""
        moved = 0
        while self._queue:
            other._queue.append(self._queue.popleft())
            moved += 1
        other._pump()
        return moved

    async def submit(self, item: Any) -> tuple[Any, Any]:
        """One item through the stage: (its output, the facts of the call that carried it)."""
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._pump()
        return await fut

    def _pump(self) -> None:
        if not (self._queue and self.calls_in_flight < self.max_calls):
            return
        # Calls go on the running event loop: a channel is used from its loop only (raises RuntimeError off it,
        # before any item leaves the queue).
        loop = asyncio.get_running_loop()
        while self._queue and self.calls_in_flight < self.max_calls:
            n = min(self.max_batch, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            # A caller that gave up (its request timed out) no longer needs its item sent.
            for _, f in batch:
                if f.done():
                    self._retried.discard(id(f))
            batch = [(x, f) for x, f in batch if not f.done()]
            if not batch:
                continue
            self.calls_in_flight += 1
            self.calls += 1
            self.items += len(batch)
            task = loop.create_task(self._carry(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _carry(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        try:
            outs, facts = await self._send([x for x, _ in batch])
            if len(outs) != len(batch):
                raise RuntimeError(f"{len(outs)} outputs for a call of {len(batch)} items")
        except BaseException as e:  # noqa: BLE001 - every waiting caller learns why; cancellation included
            retry = self._retry_if is not None and isinstance(e, Exception) and self._retry_if(e)
            again = []
            for x, f in batch:
                if f.done():
                    continue
                if retry and id(f) not in self._retried:
                    again.append((x, f))
                else:
                    self._retried.discard(id(f))
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError(f"call cancelled: {e!r}"))
            target = self
            while target.successor is not None:
                target = target.successor
            for x, f in reversed(again):  # first in the queue, in their order
                target._retried.add(id(f))
                target._queue.appendleft((x, f))
            self.retried += len(again)
            if target is not self:
                target._pump()
        else:
            for (_, f), out in zip(batch, outs, strict=True):
                self._retried.discard(id(f))
                if not f.done():
                    f.set_result((out, facts))
        finally:
            self.calls_in_flight -= 1
            self._pump()
