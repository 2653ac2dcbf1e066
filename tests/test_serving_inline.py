"""A stage replica's batch-1 path: which models run on the event loop, and what such a call returns (no Ray)."""

import time

import pytest

from pipetune.examples.digits.models import Features
from pipetune.serving.app import INLINE_PREDICT_S, predict_one, serves_on_loop


class Sleeper:
    """A model whose predict takes `seconds` per call (a real adapter of the ModelAdapter contract)."""

    def __init__(self, seconds: float, outputs_per_item: int = 1):
        self.seconds, self.k, self.calls = seconds, outputs_per_item, 0

    def load(self) -> None:
        pass

    def sample_inputs(self, n: int) -> list[int]:
        return list(range(n))

    def predict(self, batch: list) -> list:
        self.calls += 1
        time.sleep(self.seconds)
        return [x for x in batch for _ in range(self.k)]


def test_a_microsecond_model_runs_on_the_loop_and_a_slower_one_does_not():
    pixels = Features(None)  # the digits identity stage: a few microseconds a call
    pixels.load()
    assert serves_on_loop(pixels)
    slow = Sleeper(5 * INLINE_PREDICT_S)  # sleeps at least that long, however fast the machine
    assert not serves_on_loop(slow, probes=3) and slow.calls == 3


def test_an_inline_call_returns_the_output_and_its_time():
    out, dt = predict_one(Sleeper(0.002), 7, "topic/minilm")
    assert out == 7 and 0.002 <= dt < 1.0


def test_an_inline_call_with_the_wrong_number_of_outputs_names_the_stage_and_variant():
    with pytest.raises(RuntimeError, match=r"topic/minilm: 2 outputs for a batch of 1"):
        predict_one(Sleeper(0.0, outputs_per_item=2), 7, "topic/minilm")


def test_a_starting_replica_runs_at_a_lower_priority_and_every_thread_returns_to_the_serving_one():
    import os
    import threading

    from pipetune.serving.app import STARTING_NICENESS, starting_priority

    before = os.getpriority(os.PRIO_PROCESS, 0)
    seen: dict[str, int] = {}
    stop = threading.Event()

    def pool_thread() -> None:  # a thread a model library starts while loading (it inherits the priority)
        seen["started"] = os.getpriority(os.PRIO_PROCESS, 0)
        stop.wait(5)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, 0)

    with starting_priority():
        during = os.getpriority(os.PRIO_PROCESS, 0)
        t = threading.Thread(target=pool_thread)
        t.start()
        while "started" not in seen:
            pass
    stop.set()
    t.join()
    if os.geteuid() == 0:  # allowed to return to the serving priority: it lowers, then restores
        assert during == min(19, before + STARTING_NICENESS) and seen["started"] == during
        assert os.getpriority(os.PRIO_PROCESS, 0) == before and seen["after"] == before
    else:  # where it could not return, it does not lower at all
        assert during in (before, min(19, before + STARTING_NICENESS))
        assert os.getpriority(os.PRIO_PROCESS, 0) in (before, during)
