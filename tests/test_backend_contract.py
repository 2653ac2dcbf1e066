"""One Backend contract, run against both backends: the simulator and Ray Serve (docs/architecture.md lists the
clauses; `pipetune.backends.base` states them).

Both run the digits pipeline with the same profile, a synthetic one that makes the pipeline slow on paper (a
few requests/s per replica), so that the admission limit both derive from it is small and a burst of requests
is refused the same way in both. The Ray parametrisation shares the session's Ray cluster and one backend for
the module (each test starts from whatever the previous one left serving) and is marked slow.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from pipetune import example_path
from pipetune.backends.base import Backend, Observation
from pipetune.backends.simulator import SimSettings, Simulator
from pipetune.configs import ApplyState, StageConfig, StageStatus
from pipetune.errors import PipetuneError
from pipetune.profiles import PipelineProfiles, ProfileRow, VariantProfile
from pipetune.spec import load_pipeline

INITIAL = {"features": StageConfig("pca-16", 1, 1, 1), "classify": StageConfig("logreg", 1, 1, 1)}
LOAD_TIME_S = 2.0  # the simulator's replica start-up, so that a change has a PENDING phase as live
SETTLE_S = {"sim": 30.0, "ray": 180.0}  # how long a change may take to settle (Ray on a busy 2-core machine)
BURST = 40  # requests sent at BURST_RPS: far above what the profile says the pipeline admits
BURST_RPS = 200.0
SERVICE_S = 0.025  # the synthetic profile's batch-1 latency per stage


def slow_profiles(pipeline: Any) -> PipelineProfiles:
    """Every cell: latency SERVICE_S x (1 + (batch - 1) / 4), p99 1.5 x that, throughput batch / latency."""
    by = {}
    for st in pipeline.stages:
        for v in st.variants:
            rows = []
            for b in pipeline.caps.batch_sizes:
                for c in pipeline.caps.cores:
                    mean = SERVICE_S * (1 + (b - 1) / 4)
                    rows.append(ProfileRow(v.name, b, c, mean, mean, 1.5 * mean, b / mean, load_time_s=LOAD_TIME_S))
            by[(st.name, v.name)] = VariantProfile(v.name, rows)
    return PipelineProfiles(by)


@pytest.fixture(scope="module")
def digits():
    p = load_pipeline(example_path("digits"))
    return p, slow_profiles(p)


class Harness:
    """One backend under contract, and how to drive load through it."""

    def __init__(self, kind: str, backend: Backend, digits):
        self.kind, self.be = kind, backend
        self.pipeline, self.profiles = digits

    def settle(self, stage: str) -> StageStatus:
        """Let time pass until `stage`'s last request is no longer PENDING (or the kind's bound runs out)."""
        t_end = self.be.now() + SETTLE_S[self.kind]
        while True:
            st = self.be.stage_status()[stage]
            if st.state is not ApplyState.PENDING or self.be.now() >= t_end:
                return st
            self.be.wait_until(self.be.now() + 0.25)

    def burst(self) -> tuple[Counter, Observation, int]:
        """BURST requests at BURST_RPS: (answers by outcome as the client saw them, the observation covering
        them, requests sent). The simulator is a fresh one with these arrivals; live, they go over HTTP."""
        if self.kind == "sim":
            sim = Simulator(
                self.pipeline, self.profiles, np.arange(BURST) / BURST_RPS, self.be.in_effect(),
                SimSettings(seed=0, admission=True, load_time_s=LOAD_TIME_S),
            )  # fmt: skip
            sim.observe()
            sim.wait_until(BURST / BURST_RPS + 10 * self.pipeline.sla.seconds)
            obs = sim.observe()
            sim.close()
            names = {1: "completed", 2: "dropped", 3: "failed", 4: "refused"}
            return Counter(names[int(s)] for s in sim.result().status), obs, BURST
        from pipetune.loadgen.client import open_loop_at
        from pipetune.models.registry import variant_model_ref
        from pipetune.protocol import encode_request

        be: Any = self.be
        xs = variant_model_ref(self.pipeline, "features", "pca-16")().sample_inputs(1)
        url = f"http://127.0.0.1:{be.port}/v2/models/{self.pipeline.name}/infer"
        be.observe()  # start the window
        outs = open_loop_at(url, encode_request(xs, be.inputs[0]), np.arange(BURST) / BURST_RPS)
        names = {200: "completed", 503: "refused", 504: "dropped", 500: "failed"}
        seen = Counter(names.get(o.status, f"http {o.status}") for o in outs)
        time.sleep(0.5)  # the ingress counts a request just before it answers it
        return seen, be.observe(), len(outs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_backend(ray_cluster, digits):
    from pipetune.serving.backend import RayServeBackend

    p, prof = digits
    # every stage a replica (digits is light enough to run all in the ingress otherwise): the contract is theirs
    be = RayServeBackend(p, dict(INITIAL), prof, port=_free_port(), drop_after_s=5.0, idle_poll_s=0.5, inline=False)
    yield be
    be.close()


@pytest.fixture(params=["sim", pytest.param("ray", marks=pytest.mark.slow)])
def h(request, digits) -> Harness:
    if request.param == "ray":
        return Harness("ray", request.getfixturevalue("ray_backend"), digits)
    p, prof = digits
    sim = Simulator(p, prof, np.zeros(0), dict(INITIAL), SimSettings(seed=0, load_time_s=LOAD_TIME_S))
    return Harness("sim", sim, digits)


def _other_variant(p, stage: str, current: str) -> str:
    return next(v.name for v in p.stage(stage).variants if v.name != current)


# ---- the clauses --------------------------------------------------------------------------------------------
def test_every_stage_is_reported_and_what_serves_is_what_was_applied(h):
    """in_effect, replicas_ready and stage_status name every stage; a settled stage is APPLIED and serves its
    target exactly (its replicas ready); no placeholder variant; cores held cover what serves."""
    stages = set(h.pipeline.stage_names)
    for s in stages:
        assert h.settle(s).state is ApplyState.APPLIED
    status, serving, ready = h.be.stage_status(), h.be.in_effect(), h.be.replicas_ready()
    assert set(status) == set(serving) == set(ready) == stages
    for s in stages:
        assert serving[s] == status[s].target, s
        assert serving[s].variant in [v.name for v in h.pipeline.stage(s).variants]
        assert ready[s] >= serving[s].replicas >= 1
    held = h.be.cores_held()
    assert isinstance(held, float)
    assert held >= sum(c.total_cores for c in serving.values())


def test_refused_configurations_fail_with_the_reason_and_the_old_one_keeps_serving(h):
    """replicas = 0 (a stage that serves nothing), batch or cores 0, an unknown variant: FAILED at once, the
    reason names the field, the previous configuration keeps serving; an unknown stage is an error."""
    before = h.be.in_effect()
    cur = before["classify"]
    bad = {
        "replicas": dataclasses.replace(cur, replicas=0),
        "batch": dataclasses.replace(cur, batch=0),
        "cores": dataclasses.replace(cur, cores=0),
        "unknown variant": dataclasses.replace(cur, variant="no-such-model"),
    }
    for says, c in bad.items():
        answer = h.be.apply({"classify": c})
        assert set(answer) == {"classify"}
        assert answer["classify"].state is ApplyState.FAILED and answer["classify"].target == c
        assert says in answer["classify"].reason, answer["classify"].reason
        assert h.be.stage_status()["classify"].state is ApplyState.FAILED
        assert h.be.in_effect() == before
    with pytest.raises(PipetuneError, match="unknown stage"):
        h.be.apply({"nope": cur})
    h.be.apply({"classify": cur})  # asking again for what serves clears the failure
    assert h.settle("classify").state is ApplyState.APPLIED
    assert h.be.in_effect() == before


def test_in_place_change_is_pending_or_applied_then_applied(h):
    """A batch and replica change of the serving variant: the answer is PENDING or APPLIED, never FAILED;
    it settles APPLIED, serving exactly the target, and the cores held follow."""
    cur = h.be.in_effect()["classify"]
    new = dataclasses.replace(cur, batch=4 if cur.batch != 4 else 2, replicas=cur.replicas % 2 + 1)
    answer = h.be.apply({"classify": new})["classify"]
    assert answer.state in (ApplyState.PENDING, ApplyState.APPLIED) and answer.target == new
    st = h.settle("classify")
    assert st.state is ApplyState.APPLIED, st
    assert h.be.in_effect()["classify"] == new
    assert h.be.cores_held() >= sum(c.total_cores for c in h.be.in_effect().values())


def test_a_variant_switch_is_pending_and_make_before_break(h):
    """A new variant is PENDING while its replicas start; meanwhile the old one serves (in_effect); then
    APPLIED with the new one serving."""
    cur = h.be.in_effect()["features"]
    new = dataclasses.replace(cur, variant=_other_variant(h.pipeline, "features", cur.variant))
    answer = h.be.apply({"features": new})["features"]
    assert answer.state is ApplyState.PENDING and answer.target == new
    assert h.be.in_effect()["features"].variant == cur.variant
    st = h.settle("features")
    assert st.state is ApplyState.APPLIED, st
    assert h.be.in_effect()["features"] == new


def test_outcomes_are_typed_distinct_and_account_for_every_request(h):
    """A burst far above the admission limit: refusals (503) are counted as refused, deadline drops (504) as
    dropped, model errors (500) as failed, each apart; every request sent is exactly one of them, and the
    observation agrees with what the client saw."""
    seen, obs, sent = h.burst()
    assert all(isinstance(getattr(obs, f), int) for f in ("completed", "refused", "dropped", "failed", "inflight"))
    assert set(seen) <= {"completed", "refused", "dropped", "failed"}, seen  # nothing lost, nothing untyped
    assert obs.answered == sent == sum(seen.values())
    assert (obs.completed, obs.refused, obs.dropped, obs.failed) == (
        seen["completed"], seen["refused"], seen["dropped"], seen["failed"],
    )  # fmt: skip
    assert obs.refused > 0 and obs.completed > 0
    assert obs.sla_violations == obs.refused + obs.dropped + obs.failed + obs.late
    assert obs.inflight == 0
