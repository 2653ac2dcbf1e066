"""The profiler's measurement: a pinned fresh subprocess, sane statistics, failures reported by phase."""

from __future__ import annotations

import functools
import os
import time

import pytest

from pipetune.models import CallableAdapter
from pipetune.models.base import ModelAdapter
from pipetune.profiler import ProfilingError, measure_variant, profile_variant
from pipetune.profiler.measure import available_cpus, choose_cpus


class SleepModel(ModelAdapter):
    """A model whose batch takes `fixed_s + per_item_s * batch` (sleep: wall time without burning a core)."""

    def __init__(self, fixed_s: float = 0.002, per_item_s: float = 0.001, fail: str = ""):
        self.fixed_s, self.per_item_s, self.fail = fixed_s, per_item_s, fail
        self.name = "sleep"

    def load(self) -> None:
        if self.fail == "load":
            raise RuntimeError("weights are corrupt")
        self.threads = os.environ.get("OMP_NUM_THREADS")

    def predict(self, batch):
        if self.fail == "predict" and len(batch) > 1:
            raise ValueError("shape mismatch")
        time.sleep(self.fixed_s + self.per_item_s * len(batch))
        return [self.threads] * len(batch)

    def sample_inputs(self, n):
        return list(range(n))


def test_profile_variant_measures_latency_and_throughput_of_a_known_model():
    row = profile_variant(
        functools.partial(SleepModel, 0.002, 0.001), 4, 1, variant="sleep", budget_s=0.5, min_batches=30
    )
    expect = 0.002 + 0.004
    assert row.variant == "sleep" and row.batch == 4 and row.cores == 1 and row.source == "measured"
    # sleep never returns early; the upper bound only catches measuring the wrong thing (a loaded machine may
    # add several times the sleep: how fast is a benchmark's question, not a unit test's)
    assert expect <= row.latency_p50_s < expect * 10
    assert row.latency_p50_s <= row.latency_p99_s
    # Back-to-back batches: saturation throughput is batch / mean service time.
    assert row.throughput_rps == pytest.approx(4 / row.latency_mean_s, rel=0.1)
    assert row.memory_mb > 10 and row.load_time_s >= 0


@pytest.mark.slow
def test_cells_share_one_load_and_latency_grows_with_batch():
    cells = measure_variant(functools.partial(SleepModel, 0.001, 0.002), [1, 8], 1, budget_s=0.5, min_batches=15)
    assert [c.batch for c in cells] == [1, 8]
    assert cells[0].load_time_s == cells[1].load_time_s
    assert cells[1].latency_p50_s > cells[0].latency_p50_s + 0.010
    assert cells[1].throughput_rps > cells[0].throughput_rps  # a fixed per-call cost amortised by batching
    assert all(c.n_batches >= 15 for c in cells)


def test_a_slow_cell_stops_at_its_budget_but_never_below_the_floor():
    (m,) = measure_variant(
        functools.partial(SleepModel, 0.02, 0.0), [1], 1, budget_s=0.05, min_batches=100, floor_batches=10
    )
    assert 10 <= m.n_batches < 100


def test_the_subprocess_is_pinned_and_its_threads_limited():
    cpus = available_cpus()
    (m,) = measure_variant(functools.partial(SleepModel, 0.0, 0.0), [1], 1, budget_s=0.1, min_batches=5)
    assert m.cpus == (cpus[0],)
    if len(cpus) >= 2:
        (m2,) = measure_variant(functools.partial(SleepModel, 0.0, 0.0), [1], 2, budget_s=0.1, min_batches=5)
        assert m2.cpus == tuple(cpus[:2])
    # nothing leaked into this process (where the OS has CPU affinity at all: Linux)
    assert available_cpus() == cpus


def test_a_plain_callable_adapter_can_be_profiled():
    row = profile_variant(
        functools.partial(CallableAdapter, fn=sorted, inputs=[3, 1, 2]), 2, 1, budget_s=0.1, min_batches=5
    )
    assert row.throughput_rps > 0 and row.latency_p99_s >= row.latency_p50_s


def test_too_many_cores_is_a_clear_error():
    with pytest.raises(ProfilingError, match="profile at most"):
        choose_cpus(len(available_cpus()) + 1)


def test_a_model_that_fails_to_load_is_reported_with_its_reason():
    with pytest.raises(ProfilingError, match=r"failed in load: RuntimeError: weights are corrupt"):
        measure_variant(functools.partial(SleepModel, fail="load"), [1, 2], 1, budget_s=0.1)


def test_a_failure_mid_way_keeps_the_cells_measured_before_it():
    got = []
    with pytest.raises(ProfilingError, match=r"predict at batch 2: ValueError: shape mismatch"):
        measure_variant(
            functools.partial(SleepModel, 0.0, 0.0, "predict"),
            [1, 2, 4],
            1,
            budget_s=0.1,
            min_batches=5,
            on_cell=got.append,
        )
    assert [m.batch for m in got] == [1]


def test_an_unpicklable_factory_is_refused_with_the_fix():
    with pytest.raises(ProfilingError, match="module-level class"):
        measure_variant(lambda: SleepModel(), [1], 1)


def test_memory_is_the_models_process_not_the_profilers():
    import numpy as np  # noqa: F401 - make this (parent) process big; the child must not inherit its peak

    ballast = bytearray(300 * 1024 * 1024)  # 300 MB resident in the parent
    ballast[::4096] = b"x" * len(ballast[::4096])
    (m,) = measure_variant(
        functools.partial(CallableAdapter, fn=sorted, inputs=[3, 1, 2]), [1], 1, budget_s=0.05, min_batches=5
    )
    assert 5 < m.memory_mb < 200
    del ballast
