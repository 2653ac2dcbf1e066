"""Contention-aware measurement: CPU vs wall time, run-queue waits and load per cell; contended or unphysical
cells re-measured, then flagged (or refused) with the reason in the file's provenance.

The contended case is made real: busy-loop processes pinned to the very CPU the measuring process is pinned to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipetune.models import ModelRef
from pipetune.models.base import ModelAdapter
from pipetune.profiler import measure_variant, profile_pipeline
from pipetune.profiler.measure import available_cpus
from pipetune.profiles import ProfileTable
from pipetune.spec import load_pipeline

KNN = ModelRef("pipetune.examples.digits.models:Classifier", {"kind": "knn"})  # real, CPU-bound, small
needs_schedstat = pytest.mark.skipif(
    not os.path.exists("/proc/self/schedstat"), reason="the kernel exposes no /proc/self/schedstat"
)


class Quadratic(ModelAdapter):
    """A batch of b takes 1 ms x b^2 (sleep): throughput falls with batch size, which physics forbids."""

    def load(self) -> None:
        pass

    def predict(self, batch):
        time.sleep(0.001 * len(batch) ** 2)
        return list(batch)

    def sample_inputs(self, n):
        return list(range(n))


def _busy_loops(cpu: int, n: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),  # noqa: PLW0108
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]


@needs_schedstat
def test_a_real_model_cell_records_cpu_wall_wait_and_load():
    (m,) = measure_variant(KNN, [4], 1, budget_s=0.3, min_batches=10, retries=0)
    assert m.cpu_s > 0 and 0 < m.cpu_per_wall < 1.5  # one core: at most ~1 CPU second per wall second
    assert m.wait_share is not None and 0.0 <= m.wait_share <= 1.0
    assert m.loadavg >= 0 and m.attempts == 1
    assert "wait" in m.contention_note()


@pytest.mark.slow
@needs_schedstat
def test_a_busy_loop_on_the_same_core_is_detected_remeasured_and_flagged():
    cpu = available_cpus()[0]  # the CPU a 1-core measurement is pinned to
    hogs = _busy_loops(cpu, 2)
    try:
        time.sleep(0.2)
        (m,) = measure_variant(KNN, [4], 1, budget_s=0.3, min_batches=10, retries=1, max_wait_share=0.10)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    # Two busy loops share the core with the model: its threads wait for the CPU most of their runnable time.
    assert m.wait_share is not None and m.wait_share > 0.25, m
    assert m.cpu_per_wall < 0.8
    assert m.attempts == 2  # measured again, still contended
    assert m.flags and m.flags[0].startswith("contended (wait ")


@pytest.mark.slow
def test_throughput_falling_with_batch_is_remeasured_then_flagged():
    cells = measure_variant(Quadratic, [1, 4], 1, budget_s=0.2, min_batches=10, retries=1, max_wait_share=1.0)
    low, high = cells
    assert high.throughput_rps < low.throughput_rps
    assert low.attempts == high.attempts == 2  # both ends of the violation were measured again
    assert not low.flags and high.flags == (
        f"unphysical (throughput {high.throughput_rps:.4g}/s at batch 4 < {low.throughput_rps:.4g}/s at batch 1, "
        "beyond 10%)",
    )


def _spec(tmp_path: Path) -> Path:
    spec = {
        "name": "t",
        "sla": {"seconds": 1.0},
        "profile": "prof.csv",
        "caps": {"batch_sizes": [1, 4], "cores": [1]},
        "stages": [
            {
                "name": "s",
                "variants": [{"name": "quad", "accuracy": 0.8, "model": {"adapter": f"{__name__}:Quadratic"}}],
            }
        ],
    }
    p = tmp_path / "pipeline.yaml"
    p.write_text(yaml.safe_dump(spec, sort_keys=False))
    return p


@pytest.mark.slow
def test_flagged_cells_are_in_the_provenance_and_refused_on_request(tmp_path):
    spec = _spec(tmp_path)
    kw = dict(cell_budget_s=0.1, min_batches=5, plot=False, progress=False, retries=1, max_wait_share=1.0)
    rep = profile_pipeline(load_pipeline(spec, check_profiles=False), **kw)
    t = ProfileTable.read_csv(tmp_path / "prof.csv")
    assert {(r.batch, r.cores) for r in t.rows} == {(1, 1), (4, 1)}
    flagged = [h for h in t.header if h.startswith("flagged quad b4 c1: unphysical")]
    assert len(flagged) == 1 and [m.batch for _, m in rep.flagged()] == [4]
    assert any(" contention: runnable time spent waiting" in h and "2 of 2 cell(s) re-measured" in h for h in t.header)
    assert len(rep.measured) == 2  # a re-measured cell replaces its first measurement in the report
    # Refusing: the unclean cell is not written (the fitted law answers for it); the reason stays in the header.
    rep = profile_pipeline(load_pipeline(spec, check_profiles=False), force=True, refuse_unclean=True, **kw)
    t = ProfileTable.read_csv(tmp_path / "prof.csv")
    assert {(r.batch, r.cores) for r in t.rows} == {(1, 1)}
    assert [h for h in t.header if h.startswith("refused quad b4 c1: not written")]
    assert not [h for h in t.header if h.startswith("flagged quad b4 c1")]  # the stale flag line is gone
    assert [m.batch for _, m in rep.refused] == [4]
