"""Simulator shared host (SimSettings.host_cores, host_overhead_s, host_hop_s, host_load_cores): processor sharing
of the physical cores."""

from __future__ import annotations

import heapq
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from pipetune.backends.simulator import SimSettings, Simulator, SimulatorError
from pipetune.backends.simulator.bench import poisson_arrivals
from pipetune.configs import StageConfig as C
from pipetune.profiles import PipelineProfiles, ProfileRow, VariantProfile, load_profiles
from pipetune.spec import load_pipeline, parse_pipeline

SYNTH = Path(__file__).resolve().parents[1] / "src/pipetune/examples/synthetic/pipeline.yaml"


@pytest.fixture(scope="module")
def synth():
    p = load_pipeline(SYNTH)
    return p, load_profiles(p)


def one_stage(service_s: dict[int, float], sla_s: float = 1e9):
    """One stage, one variant: `service_s[cores]` per item at each core count (no batching gain, no load time)."""
    pipe = parse_pipeline(
        {
            "name": "host-single",
            "sla": {"seconds": sla_s},
            "caps": {"batch_sizes": [1], "cores": sorted(service_s)},
            "stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 1.0}]}],
        }
    )
    rows = [
        ProfileRow("v", b, c, t * b, t * b, t * b, 1 / t, 0.0, 0.0) for c, t in service_s.items() for b in (1, 2, 4, 8)
    ]
    return pipe, PipelineProfiles({("s", "v"): VariantProfile("v", rows)})


def run_one(arr, replicas=1, cores=1, service_s=None, **kw):
    pipe, prof = one_stage(service_s or {cores: 0.01})
    kw.setdefault("drop_limit_s", 1e18)
    sim = Simulator(pipe, prof, arr, {"s": C("v", 1, cores, replicas)}, SimSettings(**kw), record_batches=True)
    sim.close()
    return sim, sim.result()


def base_config():
    return {
        "detect": C("det-small", 2, 1, 2),
        "classify": C("cls-18", 4, 1, 2),
        "tag": C("tag-lite", 2, 1, 1),
        "fuse": C("fuse-rules", 1, 1, 1),
    }


def run_synth(synth, arr, seed=0, steps=(), **kw):
    p, pr = synth
    sim = Simulator(p, pr, arr, base_config(), SimSettings(seed=seed, **kw), record_batches=True)
    for t, change in steps:
        sim.wait_until(t)
        sim.apply(change)
    sim.close()
    return sim, sim.result()


STEPS = [(30.0, {"classify": C("cls-50", 4, 1, 3)}), (60.0, {"detect": C("det-small", 2, 1, 1)})]


def same(a, b) -> bool:
    return (
        np.array_equal(a.finish_s, b.finish_s)
        and np.array_equal(a.status, b.status)
        and np.array_equal(a.pas, b.pas, equal_nan=True)
        and np.array_equal(a.cost_t, b.cost_t)
        and np.array_equal(a.cost_cores, b.cost_cores)
    )


def sojourn(res):
    return (res.finish_s - res.arrival_s)[res.status == 1]


# ---------------------------------------------------------------- no sharing: today's simulator, bit for bit
def test_host_none_is_the_default(synth):
    arr = poisson_arrivals(15, 1500, seed=1)
    _, a = run_synth(synth, arr, seed=3, steps=STEPS)
    _, b = run_synth(synth, arr, seed=3, steps=STEPS, host_cores=None, host_overhead_s=0.0)
    assert same(a, b)


def test_host_with_room_for_every_replica_changes_nothing(synth):
    """A host with at least the cores ever held is never oversubscribed: identical finish times, drops, cost."""
    arr = poisson_arrivals(15, 1500, seed=1)
    _, a = run_synth(synth, arr, seed=3, steps=STEPS, batch_wait_s=0.005)
    held = float(a.cost_cores.max())
    sim, b = run_synth(synth, arr, seed=3, steps=STEPS, batch_wait_s=0.005, host_cores=held)
    assert same(a, b)
    assert sim.host is not None and sim.host.work_done_s > 0  # the host path did run
    # ... and one core less (the busy replicas then sometimes exceed it) does change the run
    _, c = run_synth(synth, arr, seed=3, steps=STEPS, batch_wait_s=0.005, host_cores=1.0)
    assert not same(a, c) and sojourn(c).mean() > sojourn(a).mean()


# ---------------------------------------------------------------- work conservation and slow-down
@pytest.mark.parametrize("host", [1.0, 1.5])
def test_saturated_host_completes_host_cores_over_work(host):
    """2 replicas of 1 core, always busy: throughput = host_cores / work (not 2 / work), the host never idles."""
    n, w = 600, 0.01
    arr = np.linspace(0.0, 0.5, n)  # 1200 rps >> the 200 rps two free replicas could serve
    _, free = run_one(arr, replicas=2, service="deterministic")
    sim, shared = run_one(arr, replicas=2, service="deterministic", host_cores=host)
    assert (shared.status == 1).all()
    rate = min(host, 2.0) / w
    end = shared.finish_s.max()
    if host == 1.0:  # one core, never idle from the first arrival on: the last completion is exactly n w / 1
        assert end == pytest.approx(n * w, rel=1e-12)
    assert end == pytest.approx(n / rate, rel=1e-3)  # (1.5: a lone job at either end uses 1 of the 1.5 cores)
    assert free.finish_s.max() == pytest.approx(n / (2 / w), rel=1e-3)
    done = np.sort(shared.finish_s)
    mid = done[n // 4 : 3 * n // 4]
    assert (mid.size - 1) / (mid[-1] - mid[0]) == pytest.approx(rate, rel=0.01)
    assert sim.host.work_done_s == pytest.approx(n * w, rel=1e-9)  # CPU-seconds: 1 core x w per request
    assert sim.host.busy_s == pytest.approx(end, rel=1e-12)


def test_saturated_host_with_random_work_completes_host_cores_over_mean_work():
    n, w = 4000, 0.01
    arr = np.linspace(0.0, 1.0, n)
    _, res = run_one(arr, replicas=3, service="exponential", host_cores=1.0, seed=5)
    done = np.sort(res.finish_s)
    mid = done[n // 10 : 9 * n // 10]
    assert (mid.size - 1) / (mid[-1] - mid[0]) == pytest.approx(1.0 / w, rel=0.05)


def test_two_core_replica_on_one_core_host_takes_twice_each_service():
    arr = np.arange(50) * 1.0  # one at a time: only the replica's own demand counts
    svc = {1: 0.01, 2: 0.006}
    for host, factor in ((None, 1.0), (4.0, 1.0), (2.0, 1.0), (1.0, 2.0), (0.5, 4.0)):
        sim, res = run_one(arr, replicas=1, cores=2, service_s=svc, service="deterministic", host_cores=host)
        lat = sojourn(res)
        assert lat.size == 50
        np.testing.assert_allclose(lat, factor * 0.006, rtol=1e-9, err_msg=f"host_cores={host}")
        assert [b[-1] for b in sim.batch_log] == [0.006] * 50  # the log keeps the work at full speed


def test_shared_host_leaves_cost_alone(synth):
    """Cores held are what the replicas reserve, shared or not (only drains and the end of the run move)."""
    arr = poisson_arrivals(15, 1500, seed=2)
    grow = [(30.0, {"classify": C("cls-18", 4, 1, 3)}), (60.0, {"detect": C("det-small", 2, 1, 3)})]
    _, a = run_synth(synth, arr, steps=grow)
    _, b = run_synth(synth, arr, steps=grow, host_cores=1.0, host_overhead_s=0.01)
    assert np.array_equal(a.cost_cores, b.cost_cores) and np.array_equal(a.cost_t[:-1], b.cost_t[:-1])
    assert sojourn(b).mean() > sojourn(a).mean()


# ---------------------------------------------------------------- processor sharing against theory
def test_md1_ps_mean_sojourn_is_work_over_one_minus_rho():
    """Many 1-core replicas on a 1-core host = one processor shared by every job in service: M/D/1-PS, whose
    mean sojourn is S / (1 - rho) (insensitive to the distribution), not FCFS M/D/1's S + rho S / (2 (1 - rho))."""
    w, rho = 0.01, 0.6
    sims = []
    for seed in range(3):
        arr = poisson_arrivals(rho / w, 30_000, seed)
        _, res = run_one(arr, replicas=60, service="deterministic", host_cores=1.0)
        sims.append(sojourn(res)[600:].mean())
    ps, fcfs = w / (1 - rho), w + rho * w / (2 * (1 - rho))
    assert np.mean(sims) == pytest.approx(ps, rel=0.03)
    assert abs(np.mean(sims) - fcfs) > 0.15 * ps


def test_overhead_only_jobs_are_md1_ps():
    """Requests whose stage is (nearly) free: only the host overhead is work, shared by every request in it."""
    o, rho = 0.01, 0.5
    sims = []
    for seed in range(3):
        arr = poisson_arrivals(rho / o, 30_000, seed)
        _, res = run_one(arr, replicas=8, service_s={1: 1e-9}, service="deterministic", host_cores=1.0,
                         host_overhead_s=o)  # fmt: skip
        sims.append(sojourn(res)[600:].mean())
    assert np.mean(sims) == pytest.approx(o / (1 - rho), rel=0.03)


# ---------------------------------------------------------------- host overhead
def test_overhead_on_a_big_host_delays_every_request_by_exactly_the_overhead():
    arr = poisson_arrivals(20, 2000, seed=4)
    _, a = run_one(arr, replicas=1, service="exponential", seed=4, host_cores=64.0)
    _, b = run_one(arr, replicas=1, service="exponential", seed=4, host_cores=64.0, host_overhead_s=0.015)
    np.testing.assert_allclose(b.finish_s - a.finish_s, 0.015, atol=1e-9)


def test_overhead_adds_about_its_cpu_time_at_low_load(synth):
    arr = poisson_arrivals(2, 300, seed=6)
    _, a = run_synth(synth, arr, seed=6, host_cores=2.0)
    _, b = run_synth(synth, arr, seed=6, host_cores=2.0, host_overhead_s=0.015)
    extra = sojourn(b).mean() - sojourn(a).mean()
    assert 0.015 <= extra < 0.015 * 1.5


def test_overhead_consumes_host_cpu():
    """Overhead and replicas share the host: 1 replica busy 50% + overhead 50% of one core saturates it."""
    arr = poisson_arrivals(50, 3000, seed=7)
    _, no = run_one(arr, replicas=1, service="deterministic", host_cores=1.0)
    sim, yes = run_one(arr, replicas=1, service="deterministic", host_cores=1.0, host_overhead_s=0.008)
    assert sim.host.work_done_s == pytest.approx(3000 * (0.01 + 0.008), rel=1e-9)
    assert sojourn(yes).mean() > sojourn(no).mean() + 0.008


# ---------------------------------------------------------------- per-item hop CPU
def test_hop_adds_its_cpu_to_every_item_on_a_big_host():
    """Alone on a big host, each request takes its service plus the hop; the hop's CPU is consumed."""
    arr = np.arange(200) * 1.0  # one at a time: never any queueing
    _, a = run_one(arr, replicas=1, service="deterministic", host_cores=64.0)
    sim, b = run_one(arr, replicas=1, service="deterministic", host_cores=64.0, host_hop_s=0.003)
    np.testing.assert_allclose(sojourn(b), sojourn(a) + 0.003, rtol=1e-9)
    assert sim.host.work_done_s == pytest.approx(200 * 0.013, rel=1e-9)


def test_hop_work_counts_per_item_of_a_batch():
    """A batch of k items is one job of service + k x hop."""
    arr = np.zeros(4)  # four at once into a replica of batch 4
    pipe, prof = one_stage({1: 0.01})
    sim = Simulator(pipe, prof, arr, {"s": C("v", 4, 1, 1)},
                    SimSettings(service="deterministic", host_cores=8.0, host_hop_s=0.002, drop_limit_s=1e9))  # fmt: skip
    sim.close()
    res = sim.result()
    # work conserving: the first item is served alone (10 + 2 ms), the three queued behind it as one batch of 3
    np.testing.assert_allclose(res.finish_s, [0.012] + [0.012 + 3 * 0.01 + 3 * 0.002] * 3, rtol=1e-9)


# ---------------------------------------------------------------- CPU beside the request's path
def test_side_work_adds_no_latency_on_a_big_host_but_uses_its_cpu():
    arr = poisson_arrivals(20, 1000, seed=11)
    sa, a = run_one(arr, replicas=1, service="exponential", seed=2, host_cores=64.0)
    sb, b = run_one(arr, replicas=1, service="exponential", seed=2, host_cores=64.0, host_side_s=0.008)
    np.testing.assert_array_equal(a.finish_s, b.finish_s)
    assert sb.host.work_done_s - sa.host.work_done_s == pytest.approx(1000 * 0.008, rel=1e-9)


def test_side_work_slows_the_replicas_it_shares_the_host_with():
    """One core: a replica busy half the time and side work of half a core leave it no slack."""
    arr = poisson_arrivals(50, 3000, seed=7)
    _, no = run_one(arr, replicas=1, service="deterministic", host_cores=1.0)
    sim, yes = run_one(arr, replicas=1, service="deterministic", host_cores=1.0, host_side_s=0.008)
    assert sim.host.work_done_s == pytest.approx(3000 * (0.01 + 0.008), rel=1e-9)
    assert sojourn(yes).mean() > 1.5 * sojourn(no).mean()
    assert sojourn(yes).min() >= 0.01 - 1e-12  # nothing waits for the side work itself


# ---------------------------------------------------------------- loading on the host
def _load_run(host_cores, load_cores, cancel_at=None, arr=None, load_s=1.0):
    pipe, prof = one_stage({1: 0.01})
    arr = np.array([]) if arr is None else arr
    sim = Simulator(pipe, prof, arr, {"s": C("v", 1, 1, 1)},
                    SimSettings(service="deterministic", host_cores=host_cores, host_load_cores=load_cores,
                                load_time_s=load_s, drop_limit_s=1e9), record_batches=True)  # fmt: skip
    sim.apply({"s": C("v", 1, 1, 2)})
    if cancel_at is not None:
        sim.wait_until(cancel_at)
        sim.apply({"s": C("v", 1, 1, 1)})
    sim.close()
    return sim, [e["t"] for e in sim.events if e["event"] == "ready"]


@pytest.mark.parametrize("host, load_cores, ready", [(4.0, 0.0, 1.0), (0.5, 0.0, 1.0), (4.0, 1.0, 1.0),
                                                     (1.0, 1.0, 1.0), (0.5, 1.0, 2.0), (1.0, 2.0, 2.0)])  # fmt: skip
def test_a_load_on_the_host_takes_its_work_over_its_speed(host, load_cores, ready):
    """load_time_s of work at demand host_load_cores: exactly load_time / min(1, host / demand); 0: a delay."""
    _, readies = _load_run(host, load_cores)
    assert readies == [pytest.approx(ready, rel=1e-12)]


def test_a_replica_starts_before_its_model_loads():
    """replica_start_s is added to every load: a replica added is ready after start + load (host with room)."""
    pipe, prof = one_stage({1: 0.01})
    for start, ready in ((0.0, 1.0), (2.5, 3.5)):
        sim = Simulator(pipe, prof, np.array([]), {"s": C("v", 1, 1, 1)},
                        SimSettings(service="deterministic", host_cores=4.0, host_load_cores=1.0, load_time_s=1.0,
                                    replica_start_s=start, drop_limit_s=1e9))  # fmt: skip
        sim.apply({"s": C("v", 1, 1, 2)})
        sim.close()
        assert [e["t"] for e in sim.events if e["event"] == "ready"] == [pytest.approx(ready, rel=1e-12)]
    with pytest.raises(ValueError, match="replica_start_s"):
        SimSettings(replica_start_s=-1.0)


def test_a_load_slows_the_replicas_serving_beside_it():
    """A 1-core host, one loading replica (1 core) beside a serving one: a 10 ms request takes 20 ms during the
    load and 10 ms after it (a request alone, nothing else in service)."""
    arr = np.array([0.5, 3.0])
    pipe, prof = one_stage({1: 0.01})
    sim = Simulator(pipe, prof, arr, {"s": C("v", 1, 1, 1)},
                    SimSettings(service="deterministic", host_cores=1.0, host_load_cores=1.0, load_time_s=1.0,
                                drop_limit_s=1e9))  # fmt: skip
    sim.apply({"s": C("v", 1, 1, 2)})
    sim.close()
    res = sim.result()
    np.testing.assert_allclose(res.finish_s - res.arrival_s, [0.02, 0.01], rtol=1e-9)
    ready = [e["t"] for e in sim.events if e["event"] == "ready"]
    assert ready == [pytest.approx(1.01, rel=1e-12)]  # the load lost 10 ms of its speed to the request


def test_a_load_at_a_lower_priority_takes_what_the_serving_replicas_leave():
    """The same run at load weight 0.1 (a loading replica niced, as live): during the load the request gets
    1 / 1.1 of the core (11 ms, not 20), the load 0.1 / 1.1; the host stays work conserving, so the load is
    ready at the same 1.01 s."""
    arr = np.array([0.5, 3.0])
    pipe, prof = one_stage({1: 0.01})
    sim = Simulator(pipe, prof, arr, {"s": C("v", 1, 1, 1)},
                    SimSettings(service="deterministic", host_cores=1.0, host_load_cores=1.0, load_time_s=1.0,
                                host_load_weight=0.1, drop_limit_s=1e9))  # fmt: skip
    sim.apply({"s": C("v", 1, 1, 2)})
    sim.close()
    res = sim.result()
    np.testing.assert_allclose(res.finish_s - res.arrival_s, [0.011, 0.01], rtol=1e-9)
    assert [e["t"] for e in sim.events if e["event"] == "ready"] == [pytest.approx(1.01, rel=1e-9)]
    assert not sim.host.jobs and not sim.host.ljobs and sim.host.demand == 0 and sim.host.ldemand == 0


def test_a_low_priority_load_on_a_full_host_waits_for_room():
    """Two serving replicas keep a 1-core host full (demand 2) while a replica loads at weight 0.1: the load
    runs at 0.1 / 2.1 of a core until they stop, then at full speed."""
    from pipetune.backends.simulator.host import SharedHost

    heap: list = []
    seq = itertools.count()
    h = SharedHost(1.0, heap, seq, 0, 1, 2, lambda rid, t: None, load_weight=0.1)
    h.start(0.0, 1.0, 1.0, 0, "a", None)  # serving, 1 s of work each
    h.start(0.0, 1.0, 1.0, 0, "b", None)
    h.start(0.0, 1.0, 1.0, -2, "r", None)  # loading, 1 s of work
    done = {}
    while heap:
        t, _, kind, epoch, *_ = heapq.heappop(heap)
        if kind == 0:
            h.wake(t, epoch)
        else:
            done[kind] = done.get(kind, []) + [t]
    fs = 1 / 2.1  # each serving job's speed while all three run
    t_serve = 1 / fs  # both serving jobs finish together
    left = 1 - 0.1 * fs * t_serve
    assert done[1] == [pytest.approx(t_serve)] * 2
    assert done[2] == [pytest.approx(t_serve + left)]
    assert h.work_done_s == pytest.approx(3.0)


def test_a_stage_run_in_the_ingress_holds_no_cores_and_switches_at_once():
    """host_inline: live, such a stage runs in the ingress with every variant loaded from the start, so its
    replicas hold no cores of their own and a new generation serves at once; elsewhere a load takes its time."""
    pipe, prof = one_stage({1: 0.01})
    for inline, ready, held in ((frozenset({("s", "v")}), 0.0, 0.0), (frozenset(), 1.0, 2.0)):
        sim = Simulator(pipe, prof, np.array([]), {"s": C("v", 1, 1, 1)},
                        SimSettings(service="deterministic", host_cores=4.0, host_load_cores=1.0, load_time_s=1.0,
                                    host_inline=inline, drop_limit_s=1e9))  # fmt: skip
        sim.apply({"s": C("v", 1, 1, 2)})
        assert sim.cores_held() == held
        sim.close()
        assert [e["t"] for e in sim.events if e["event"] == "ready"] == [pytest.approx(ready)]


def test_a_switch_cancels_the_serving_generations_loads():
    """A replica of the serving variant still loading when the stage switches variant is cancelled (its CPU goes to
    the new generation); the ready one serves until the new generation is."""
    pipe = parse_pipeline({"name": "two", "sla": {"seconds": 1e9}, "caps": {"batch_sizes": [1], "cores": [1]},
                           "stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 1.0},
                                                                  {"name": "w", "accuracy": 0.9}]}]})  # fmt: skip
    rows = [ProfileRow("v", 1, 1, 0.01, 0.01, 0.01, 100.0, 1.0, 0.0)]
    prof = PipelineProfiles({("s", "v"): VariantProfile("v", rows), ("s", "w"): VariantProfile("w", [
        ProfileRow("w", 1, 1, 0.01, 0.01, 0.01, 100.0, 1.0, 0.0)])})  # fmt: skip
    sim = Simulator(
        pipe,
        prof,
        np.array([]),
        {"s": C("v", 1, 1, 1)},
        SimSettings(service="deterministic", host_cores=1.0, host_load_cores=1.0, drop_limit_s=1e9),
    )
    sim.apply({"s": C("v", 1, 1, 2)})  # a second replica of v starts loading
    sim.wait_until(0.5)
    sim.apply({"s": C("w", 1, 1, 1)})
    assert sim.cores_held() == 2.0  # v's ready replica and w's loading one: v's load was cancelled
    sim.close()
    ready = [(e["variant"], e["t"]) for e in sim.events if e["event"] == "ready"]
    assert ready == [("w", pytest.approx(1.5))]  # alone on the host from 0.5 s: its 1 s load, at full speed


def test_a_switch_completes_when_every_replica_asked_for_is_ready():
    """As live: growing an incoming generation while it loads, the switch waits for the new replica too."""
    pipe = parse_pipeline({"name": "two", "sla": {"seconds": 1e9}, "caps": {"batch_sizes": [1], "cores": [1]},
                           "stages": [{"name": "s", "variants": [{"name": "v", "accuracy": 1.0},
                                                                  {"name": "w", "accuracy": 0.9}]}]})  # fmt: skip
    prof = PipelineProfiles({(("s", n)): VariantProfile(n, [ProfileRow(n, 1, 1, 0.01, 0.01, 0.01, 100.0, 1.0, 0.0)])
                             for n in ("v", "w")})  # fmt: skip
    sim = Simulator(pipe, prof, np.array([]), {"s": C("v", 1, 1, 1)}, SimSettings(drop_limit_s=1e9))
    sim.apply({"s": C("w", 1, 1, 1)})  # w loads for 1 s
    sim.wait_until(0.5)
    sim.apply({"s": C("w", 1, 1, 2)})  # a second w replica, ready at 1.5 s
    sim.close()
    switch = [e["t"] for e in sim.events if e["event"] == "switch"]
    assert switch == [pytest.approx(1.5)]


def test_a_cancelled_load_leaves_the_host():
    """Scaling back down while loading cancels the load: no ready event, only the CPU it used is counted."""
    sim, readies = _load_run(1.0, 1.0, cancel_at=0.25)
    assert readies == []
    assert not sim.host.jobs and sim.host.demand == 0
    assert sim.host.work_done_s == pytest.approx(0.25, rel=1e-9)


# ---------------------------------------------------------------- determinism, reconfiguration, conservation
def test_shared_host_is_deterministic_and_conserves_requests(synth):
    arr = poisson_arrivals(25, 2500, seed=8)
    kw = dict(seed=9, steps=STEPS, host_cores=1.5, host_overhead_s=0.01, drop_limit_s=0.5)
    sa, a = run_synth(synth, arr, **kw)
    _, b = run_synth(synth, arr, **kw)
    assert same(a, b)
    assert set(np.unique(a.status)) <= {1, 2, 3} and (a.status == 1).any()
    assert sa.host is not None and sa.host.demand == 0 and not sa.host.jobs and not sa._heap


def test_superseded_host_events_do_not_move_the_clock():
    """Jobs of random work starting and finishing on a saturated host supersede many events: the clock still
    stops at the last completion (which is the last real event of a one-stage run)."""
    arr = poisson_arrivals(150, 3000, seed=10)
    sim, res = run_one(arr, replicas=4, service="exponential", seed=10, host_cores=1.5, host_overhead_s=0.002)
    assert (res.status == 1).all()
    # one valid event per job (2 jobs per request: overhead, batch); each epoch is one event pushed (or the host
    # falling idle, rare here): far more epochs than jobs = many superseded events
    assert sim.host.epoch > 1.5 * 2 * 3000
    assert sim.now() == pytest.approx(res.finish_s.max(), abs=1e-12)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kw, field",
    [
        ({"host_cores": 0}, "host_cores"),
        ({"host_cores": -2.0}, "host_cores"),
        ({"host_cores": math.nan}, "host_cores"),
        ({"host_cores": math.inf}, "host_cores"),
        ({"host_cores": "2"}, "host_cores"),
        ({"host_cores": 2.0, "host_overhead_s": -0.01}, "host_overhead_s"),
        ({"host_cores": 2.0, "host_overhead_s": math.nan}, "host_overhead_s"),
        ({"host_overhead_s": 0.015}, "host_overhead_s"),  # overhead runs on the host: needs host_cores
        ({"host_cores": 2.0, "host_hop_s": -1e-3}, "host_hop_s"),
        ({"host_cores": 2.0, "host_hop_s": math.inf}, "host_hop_s"),
        ({"host_hop_s": 0.003}, "host_hop_s"),
        ({"host_cores": 2.0, "host_side_s": -1.0}, "host_side_s"),
        ({"host_side_s": 0.008}, "host_side_s"),
        ({"host_cores": 2.0, "host_load_cores": -1.0}, "host_load_cores"),
        ({"host_cores": 2.0, "host_load_cores": math.nan}, "host_load_cores"),
        ({"host_load_cores": 1.0}, "host_load_cores"),
    ],
)
def test_bad_host_settings_are_refused_naming_the_field(kw, field):
    with pytest.raises(SimulatorError, match=field):
        SimSettings(**kw)


def test_simulate_passes_the_host_settings_to_the_simulator(monkeypatch, synth):
    from pipetune.experiments import one_run
    from pipetune.experiments.spec import Settings

    seen = []
    real = one_run.Simulator

    def spy(*a, **kw):
        seen.append(a[4])
        return real(*a, **kw)

    monkeypatch.setattr(one_run, "Simulator", spy)
    p, pr = synth
    one_run.simulate(p, np.full(12, 5.0), policy="ipa", predictor="reactive", profiles=pr,
                     settings=Settings(host_cores=2.0, host_overhead_s=0.015, host_hop_s=0.003,
                                       host_load_cores=1.0))  # fmt: skip
    got = seen[0]
    assert (got.host_cores, got.host_overhead_s, got.host_hop_s, got.host_load_cores) == (2.0, 0.015, 0.003, 1.0)
