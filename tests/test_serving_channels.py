"""Caller-side batching (serving/channels.py) without Ray: items leave in batches of at most the planned size, no
more calls in flight than allowed, outputs return to their own callers in order, a failed call fails exactly its
items, a resize takes effect on the next call, and a hand-over moves what is queued without losing an item.
Also the direct HTTP front's bind: a port in use is an error naming it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pipetune.serving.channels import StageChannel
from pipetune.serving.front import bind


class Stage:
    """A stand-in for a stage replica behind a handle: doubles each item, takes `delay_s` per call, records every
    call's batch and how many calls were in flight at once."""

    def __init__(self, delay_s: float = 0.01, fail_on: object = None) -> None:
        self.delay_s, self.fail_on = delay_s, fail_on
        self.batches: list[list[int]] = []
        self.inflight = self.peak = 0

    async def send(self, items: list[int]) -> tuple[list[int], str]:
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        self.batches.append(list(items))
        try:
            await asyncio.sleep(self.delay_s)
            if self.fail_on in items:
                raise RuntimeError(f"model error on {self.fail_on}")
            return [2 * x for x in items], f"call {len(self.batches)}"
        finally:
            self.inflight -= 1


def run(coro):
    return asyncio.run(coro)


def test_items_leave_in_batches_of_at_most_the_planned_size_and_return_to_their_callers():
    async def go():
        st = Stage(delay_s=0.02)
        ch = StageChannel(st.send, max_batch=4, max_calls=2)
        outs = await asyncio.gather(*(ch.submit(i) for i in range(20)))
        return st, ch, outs

    st, ch, outs = run(go())
    assert [o for o, _ in outs] == [2 * i for i in range(20)]  # each caller gets its own item's output
    assert max(len(b) for b in st.batches) == 4 and sorted(x for b in st.batches for x in b) == list(range(20))
    assert st.peak <= 2 and ch.calls == len(st.batches) < 20  # fewer calls than items: the point of it
    assert ch.items == 20 and ch.calls_in_flight == 0 and ch.queued == 0


def test_a_lone_item_leaves_at_once_without_waiting_for_a_batch():
    async def go():
        st = Stage(delay_s=0.0)
        ch = StageChannel(st.send, max_batch=16, max_calls=1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out, facts = await ch.submit(7)
        return loop.time() - t0, out, facts, st

    dt, out, facts, st = run(go())
    assert out == 14 and facts == "call 1" and st.batches == [[7]] and dt < 0.5


def test_a_failed_call_fails_its_own_items_only():
    async def go():
        st = Stage(delay_s=0.01, fail_on=3)
        ch = StageChannel(st.send, max_batch=2, max_calls=1)
        return st, await asyncio.gather(*(ch.submit(i) for i in range(6)), return_exceptions=True)

    st, outs = run(go())
    failed_batch = next(b for b in st.batches if 3 in b)
    for i, o in enumerate(outs):
        if i in failed_batch:
            assert isinstance(o, RuntimeError) and "model error on 3" in str(o)
        else:
            assert o[0] == 2 * i


def test_a_call_returning_the_wrong_number_of_outputs_is_an_error_for_each_of_its_items():
    async def short(items):
        return items[:-1], None

    async def go():
        ch = StageChannel(short, max_batch=3, max_calls=1)
        return await asyncio.gather(*(ch.submit(i) for i in range(3)), return_exceptions=True)

    outs = run(go())
    assert all(isinstance(o, RuntimeError) and "outputs for a call of" in str(o) for o in outs)


def test_resize_applies_to_the_next_call_and_hand_over_moves_what_is_queued():
    async def go():
        old, new = Stage(delay_s=0.05), Stage(delay_s=0.0)
        ch_old = StageChannel(old.send, max_batch=1, max_calls=1, stage="s")
        ch_new = StageChannel(new.send, max_batch=8, max_calls=1, stage="s")
        tasks = [asyncio.ensure_future(ch_old.submit(i)) for i in range(10)]
        await asyncio.sleep(0.01)  # one call in flight on the old generation, nine items queued behind it
        assert ch_old.calls_in_flight == 1 and ch_old.queued == 9
        moved = ch_old.hand_over(ch_new)
        outs = await asyncio.gather(*tasks)
        ch_new.resize(max_batch=2, max_calls=1)
        more = await asyncio.gather(*(ch_new.submit(i) for i in range(4)))
        return old, new, moved, outs, more

    old, new, moved, outs, more = run(go())
    assert moved == 9 and [o for o, _ in outs] == [2 * i for i in range(10)]  # nothing lost, every answer right
    assert old.batches == [[0]] and new.batches[0] == list(range(1, 9))  # the rest left with the new generation
    assert all(len(b) <= 2 for b in new.batches[-2:]) and [o for o, _ in more] == [0, 2, 4, 6]


def test_an_item_whose_caller_gave_up_is_not_sent():
    async def go():
        st = Stage(delay_s=0.05)
        ch = StageChannel(st.send, max_batch=4, max_calls=1)
        first = asyncio.ensure_future(ch.submit(1))
        waiting = asyncio.ensure_future(ch.submit(2))
        await asyncio.sleep(0.01)
        waiting.cancel()  # its request timed out while queued
        await first
        await asyncio.sleep(0.01)
        return st

    st = run(go())
    assert st.batches == [[1]]


def test_binding_a_port_in_use_names_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_a_call_whose_replica_went_away_is_sent_once_more_and_a_second_loss_fails_it():
    class Lost(Exception):
        pass

    async def go(losses: int):
        calls: list[list[int]] = []

        async def send(items):
            calls.append(list(items))
            if len(calls) <= losses:
                raise Lost("replica died")
            return [10 * x for x in items], None

        ch = StageChannel(send, max_batch=4, max_calls=1, retry_if=lambda e: isinstance(e, Lost))
        outs = await asyncio.gather(*(ch.submit(i) for i in range(3)), return_exceptions=True)
        return calls, outs, ch

    calls, outs, ch = run(go(losses=1))  # the first item leaves alone; lost, it goes first in the next call
    assert calls == [[0], [0, 1, 2]] and [o for o, _ in outs] == [0, 10, 20] and ch.retried == 1
    calls, outs, ch = run(go(losses=2))  # each item is sent once more, not forever
    assert calls == [[0], [0, 1, 2], [1, 2]] and ch.retried == 3
    assert isinstance(outs[0], Lost) and [o for o, _ in outs[1:]] == [10, 20]
    assert ch._retried == set()


def test_a_lost_call_of_a_retired_channel_is_sent_again_to_its_successor():
    """After a switch the old generation's channel only finishes its calls: one whose replica went away sends its
    items again to the channel the traffic moved to (the old generation is being deleted), not to its own."""

    class Lost(Exception):
        pass

    async def go():
        old_calls: list[list[int]] = []
        gate = asyncio.Event()

        async def old_send(items):
            old_calls.append(list(items))
            await gate.wait()
            raise Lost("replica stopped")

        async def new_send(items):
            return [100 * x for x in items], "new"

        old = StageChannel(old_send, max_batch=4, max_calls=1, retry_if=lambda e: isinstance(e, Lost))
        new = StageChannel(new_send, max_batch=4, max_calls=1)
        newer = StageChannel(new_send, max_batch=4, max_calls=1)
        futs = [asyncio.ensure_future(old.submit(i)) for i in range(2)]
        await asyncio.sleep(0)  # the first item leaves alone, the second waits behind it
        old.successor, new.successor = new, newer  # retired twice over: the items go to the newest channel
        old.hand_over(new)
        gate.set()
        return old_calls, await asyncio.gather(*futs), old, newer

    old_calls, outs, old, newer = run(go())
    assert old_calls == [[0]] and [o for o, _ in outs] == [0, 100] and old.retried == 1
    assert old.calls_in_flight == 0 and newer.items == 1


def test_the_ingress_reports_a_retired_application_in_use_until_its_calls_are_back():
    """`Ingress.apps_in_use`: what the routes name, and the applications they left while calls there are out
    (never longer than the deadline after they left); the backend deletes a retired generation only then."""
    import time
    from types import SimpleNamespace

    from pipetune.serving.app import Ingress

    async def send(items):
        return list(items), None

    busy, idle = StageChannel(send, 1, 1), StageChannel(send, 1, 1)
    busy.calls_in_flight = 1
    now = time.monotonic()
    ing = SimpleNamespace(
        _routed={"new"},
        _retired={"busy": (busy, now), "idle": (idle, now), "unused": (None, now), "old": (busy, now - 10.0)},
        per_item_calls=False,
        drop_after_s=5.0,
    )
    in_use = Ingress.func_or_class.apps_in_use
    assert run(in_use(ing)) == ["busy", "new"]
    busy.calls_in_flight = 0
    assert run(in_use(ing)) == ["new"] and ing._retired == {}
    ing.per_item_calls, ing._retired = True, {"a": (None, now), "b": (None, now - 10.0)}  # calls not tracked
    assert run(in_use(ing)) == ["a", "new"]


def test_a_model_error_is_not_retried():
    async def go():
        calls = []

        async def send(items):
            calls.append(items)
            raise ValueError("bad input for the model")

        ch = StageChannel(send, max_batch=4, max_calls=1, retry_if=lambda e: not isinstance(e, ValueError))
        return calls, await asyncio.gather(ch.submit(1), return_exceptions=True)

    calls, outs = run(go())
    assert len(calls) == 1 and isinstance(outs[0], ValueError)


def test_a_hand_over_needs_the_event_loop_so_the_ingress_reconfigures_on_it():
    """A hand-over sends queued items at once, which schedules calls on the event loop: from a thread without one
    it fails. Ray Serve runs a plain `reconfigure` on a worker thread (no event loop) and stops the replica when it
    raises, so the ingress's reconfigure, and the methods that read what the requests change, are coroutines."""
    import inspect
    import threading

    from pipetune.serving.app import Ingress

    async def send(items):
        return list(items), None

    async def queued() -> tuple[StageChannel, StageChannel]:
        old, new = StageChannel(send, max_batch=2, max_calls=0), StageChannel(send, max_batch=2, max_calls=1)
        old._queue.append((1, asyncio.get_running_loop().create_future()))
        return old, new

    old, new = run(queued())
    errors: list[BaseException] = []

    def off_loop() -> None:
        try:
            old.hand_over(new)
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=off_loop)
    t.start()
    t.join()
    assert errors and "event loop" in str(errors[0])
    assert old.queued == 0 and new.queued == 1  # nothing was lost: the item waits in the new channel
    for name in ("reconfigure", "stats", "record_decision", "apps_in_use"):
        assert inspect.iscoroutinefunction(getattr(Ingress.func_or_class, name)), name
