"""Latency model: the sojourn time of an item at one stage, and end to end through the DAG.

One stage runs `n` replicas of one variant with max batch size `b` on `c` cores each. Items arrive at rate λ
(items/s, Poisson). A central queue forms batches; a replica serves one batch at a time. From the profile row of
(variant, b, c) we take the batch service time S (mean, p50, p99) and the saturation throughput θ (items/s of one
replica), so the time a replica is busy per batch is S_eff = b / θ (equal to S unless the profiler measured
pipelining inside the model server).

    sojourn = batch formation wait + queueing wait + service time

* **Formation.** An item waits for the b − 1 items that complete its batch. The first item of a batch waits the
  longest, for b − 1 Poisson arrivals: a Gamma(b − 1, λ) time, whose p-quantile we use for the SLA term; an
  average item waits (b − 1) / (2λ). A batch timeout `max_wait` (if set) caps both. At low load this term is what
  makes large batches infeasible, as it should.
* **Queueing.** Batches are the customers of an n-server queue with offered load a = (λ/b)·S_eff and utilisation
  ρ = λ / (n θ). We use Erlang C for the probability C of waiting and the Allen–Cunneen correction for the
  variability of batch inter-arrivals (c_a² = 1/b: a batch is b Poisson gaps) and of service (c_s² from the
  profile's p99/mean ratio under a shifted-exponential fit):
      mean wait  Wq = C · S_eff / (n (1 − ρ)) · (c_a² + c_s²) / 2
      tail       Wq(t) = S_eff (c_a² + c_s²) / 2 / (n (1 − ρ)) · ln(C / t)   (0 when C ≤ t)
  i.e. the M/M/n waiting-time tail scaled by the G/G/n variability factor, taken at half the tail budget,
  t = (1 − p) · WAIT_TAIL_SHARE (see the constant).
  **Arrival variability.** c_a² of items is 1 (Poisson) unless the caller says how variable the per-second
  counts are: `arrival_dispersion` D = variance / mean of the count in one second (Poisson 1, the same count
  every second 0, bursty traffic > 1). Inside a second arrivals are taken as Poisson, so D only applies to a
  queue whose wait builds over seconds: c_a² = D + (1 − D) · min(1, T / (3τ)), with T = 1 s the counting
  period and τ the wait's exponential scale under Poisson arrivals. That is the variance / mean of such a
  process's count over a window of τ ≥ T seconds: whole seconds add D each, and the two partial seconds at the
  window's ends add λ f (1 − f) each with E[f (1 − f)] = 1/6 over a uniform offset f. A queue that empties
  within a second sees Poisson gaps; one near ρ = 1 integrates the counts over many seconds and sees their
  dispersion. For D < 1 this lowers the wait of stages planned close to saturation only; for D > 1 it raises
  it. D is per-second: a load that drifts over minutes (IDC rising with the window) is burstier than D says at
  the scale a saturated queue integrates; docs/calibration.md has the check on a real trace.
* **Service.** The profile's p-quantile of S (`profiles.service_quantile`: between p50 and p99), or its mean.

The stage's SLA-percentile sojourn is the *sum* of the three terms. A sum of quantiles is not by itself a bound
on the quantile of the sum (P(X + Y > x_q + y_q) can reach 2q); the queueing term's halved budget keeps the
union bound's share for it at q/2, and formation and service (continuous, nearly independent) add their
quantiles conservatively. End to end, the SLA term is the longest path of stage terms — again a sum of
quantiles, conservative in simulation (docs/calibration.md), which keeps the promise "the SLA holds at the
planned load" on the safe side.
Assumptions: Poisson arrivals at the planned rate (or per-second counts of the given dispersion); replicas identical; join stages see the slowest branch.
The simulator issue calibrates these terms against simulated p99s (see docs/simulator.md).

Everything is vectorised over options (numpy arrays) because the optimizer evaluates thousands per decision.

**Shared host** (with a `RuntimeProfile`, runtime_profile.py). The replicas, the ingress and the engine share
`host_cores` physical cores. The one host model, the planner's here and the twin's in backends/simulator/host.py:
  * a batch of b items on a remote replica of c cores is a job of work S + hop (hop = call_cpu_s + b * item_cpu_s,
    0 for a stage the runtime runs inline) that holds the replica's c cores: it costs c * (S + hop) CPU-seconds;
  * a request's path outside the stages is a 1-core job of work request_cpu_s before its source stages;
  * side_cpu_s per request is 1-core work beside the path (it loads the host, delays nothing);
  * the host serves its jobs by processor sharing: with demand D above host_cores every job runs at
    host_cores / D.
The planner keeps the plan's mean CPU demand within utilisation_cap x host_cores (U cores, optimizer/options.py)
and stretches every job by `host_slowdown`: with total demand c + N above host_cores k (the job's own c cores and N
one-core jobs of others) every job runs at k / (c + N), so its slowdown is E[max(1, (c + N) / k)]. The others
are whatever else keeps the host busy, at most U less the job's own replica's demand d (a replica serves one batch
at a time: it never waits behind itself; its own queue is the queueing term above). N is taken as Poisson with
mean s (U - d): the busy others are stretched by the same slowdown s (a fixed point, the least one), and for a
given mean a Poisson count is the most variable count of independent busy processes (a sum of independent
Bernoullis is below the Poisson of its mean in the convex order, Hoeffding), so the stretch is on the safe side of
any split of U - d into independent single-core processes. On one core with d = 0 this is M/M/1 processor
sharing's 1 / (1 - U). A plan below the cap is slowed less than that; `host_service` applies the stretch to the
service quantiles and to a replica's throughput alike.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.special import gammaincinv, pdtr

from pipetune.profiles import service_quantile

LN100_MINUS_1 = math.log(100.0) - 1.0

# The queueing wait has an atom at zero: P(wait > 0) is Erlang C, which at planned loads is often just above the
# tail budget q = 1 - pct/100. Its q-quantile is then a small positive number, and adding it to the other terms'
# q-quantiles is not a bound: P(sojourn > sum of quantiles) reaches ~2q (paper/sum-qa's plan broke its p99 SLA
# for 2.28% of true-Poisson requests in simulation). So the waiting term is taken at its (q * WAIT_TAIL_SHARE)-
# quantile: by the union bound P(sojourn > f + w + s) <= P(W > w) + P(F + S > f + s) ~ q/2 + P(F + S > f + s),
# and the last term is in practice small, because the sum of the quantiles of two continuous, nearly
# independent terms is above the quantile of their sum. This is a heuristic, not a proof; docs/calibration.md
# has the simulated check.
WAIT_TAIL_SHARE = 0.5

# The period over which `arrival_dispersion` (variance / mean of per-second counts) is measured, in seconds.
COUNT_PERIOD_S = 1.0


@dataclass(frozen=True)
class StageLatency:
    mean_s: float
    slo_s: float  # at the SLA percentile
    utilization: float
    formation_s: float
    queue_s: float
    service_s: float


class LatencyArrays(NamedTuple):
    mean: np.ndarray  # mean sojourn
    slo: np.ndarray  # sojourn at the SLA percentile
    utilization: np.ndarray
    formation_slo: np.ndarray
    queue_slo: np.ndarray
    service_slo: np.ndarray


def erlang_c(n: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Probability of waiting in an M/M/n queue with offered load a (Erlang C), vectorised; 1 where a >= n.

    Erlang B comes from the stable recursion B_k = a B_{k-1} / (k + a B_{k-1}), run once per distinct `a`
    up to the largest n asked for, then gathered (the optimizer asks for many n per offered load).
    """
    n, a = np.asarray(n, dtype=np.int64), np.asarray(a, dtype=float)
    shape = np.broadcast_shapes(n.shape, a.shape)
    if math.prod(shape) == 0:
        return np.ones(shape)
    # distinct offered loads on a's own shape (the optimizer passes one load per row and many n per row)
    ua, inv = np.unique(a.ravel(), return_inverse=True)
    inv = np.broadcast_to(inv.reshape(a.shape), shape).ravel()
    n, a = np.broadcast_to(n, shape).ravel(), np.broadcast_to(a, shape).ravel()
    nmax = max(int(n.max()), 1)
    table = np.empty((nmax + 1, ua.size))  # row k: B_k of every distinct load (contiguous rows)
    table[0] = 1.0
    t, den = np.empty(ua.size), np.empty(ua.size)
    for k in range(1, nmax + 1):  # in place: this loop runs up to ~100 times per call
        np.multiply(ua, table[k - 1], out=t)
        np.add(t, k, out=den)
        np.divide(t, den, out=table[k])
    blk = table[np.clip(n, 0, nmax), inv]
    rho = np.divide(a, n, out=np.full(a.shape, np.inf), where=n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = blk / (1.0 - rho * (1.0 - blk))
    return np.where(rho >= 1.0, 1.0, np.clip(c, 0.0, 1.0)).reshape(shape)


def service_scv(mean_s: np.ndarray, p99_s: np.ndarray) -> np.ndarray:
    """Squared coefficient of variation of service under a shifted-exponential fit to (mean, p99), in [0, 1]."""
    theta = np.maximum(np.asarray(p99_s) - np.asarray(mean_s), 0.0) / LN100_MINUS_1
    return np.clip((theta / np.asarray(mean_s)) ** 2, 0.0, 1.0)


def _broadcast_floats(*xs: np.ndarray | float) -> list[np.ndarray]:
    return list(np.broadcast_arrays(*(np.asarray(x, float) for x in xs)))


def _formation(b: np.ndarray, lam: np.ndarray, q: float, max_wait: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Batch formation wait: (mean, quantile at 1 - q) per element of the batch sizes `b` at rates `lam`."""
    pos = lam > 0
    safe_lam = np.where(pos, lam, 1.0)
    form_mean = np.where(b > 1, np.where(pos, (b - 1) / (2 * safe_lam), np.inf), 0.0)
    # Gamma quantile per distinct batch size (a handful), not per option
    ub, binv = np.unique(b, return_inverse=True)
    gq = gammaincinv(np.maximum(ub - 1, 1), 1 - q)[binv.reshape(b.shape)]
    form_q = np.where(b > 1, np.where(pos, gq / safe_lam, np.inf), 0.0)
    if max_wait is not None:
        form_mean = np.minimum(form_mean, max_wait)
        form_q = np.minimum(form_q, max_wait)
    return form_mean, form_q


def latency_floor(
    *,
    p50_s: np.ndarray,
    p99_s: np.ndarray,
    batch: np.ndarray,
    rate: np.ndarray | float,
    pct: float,
    max_wait: float | None = None,
) -> np.ndarray:
    """The SLA-percentile sojourn without its queueing term: a lower bound at any replica count (the queueing
    quantile is >= 0, and `stage_latency_arrays` adds it in between, so its sum is never below this one)."""
    p50_s, p99_s, b, lam = _broadcast_floats(p50_s, p99_s, batch, rate)
    _, form_q = _formation(b, lam, 1.0 - pct / 100.0, max_wait)
    return form_q + service_quantile(p50_s, p99_s, pct)


def stage_latency_arrays(
    *,
    mean_s: np.ndarray,
    p50_s: np.ndarray,
    p99_s: np.ndarray,
    throughput: np.ndarray,
    batch: np.ndarray,
    replicas: np.ndarray | int,
    rate: np.ndarray | float,
    pct: float,
    max_wait: float | None = None,
    arrival_dispersion: float = 1.0,
    formation_rate: np.ndarray | float | None = None,
) -> LatencyArrays:
    """Vectorised stage latency over broadcastable arrays; inf where the stage is unstable (ρ >= 1).
    `arrival_dispersion`: variance / mean of the per-second arrival counts (1: Poisson; module docstring).
    `formation_rate`: the rate batch formation is taken at, if not `rate` (formation falls as the rate rises and
    queueing rises with it, so formation at the top of a range of rates and queueing at its bottom bound the
    sojourn at every rate of the range from below: the optimizer's bound on continuous shares)."""
    # The terms that do not depend on the replica count are computed at their own (smaller) shape; only
    # queueing is evaluated on the full grid (the optimizer passes rows x replica-candidates).
    form_at = rate if formation_rate is None else formation_rate
    mean_s, p50_s, p99_s, thr, b, lam, lam_f = _broadcast_floats(mean_s, p50_s, p99_s, throughput, batch, rate, form_at)
    n = np.asarray(replicas, np.int64)
    q = 1.0 - pct / 100.0

    form_mean, form_q = _formation(b, lam_f, q, max_wait)

    # queueing
    s_eff = b / thr
    cs2 = service_scv(mean_s, p99_s)
    rho = lam / (n * thr)
    c = erlang_c(n, (lam / b) * s_eff)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = s_eff * ((1.0 / b + cs2) / 2.0) / (n * (1.0 - rho))  # Poisson arrivals
        if arrival_dispersion != 1.0:
            d = float(arrival_dispersion)
            ca2 = d + (1.0 - d) * np.minimum(1.0, COUNT_PERIOD_S / (3.0 * np.where(rho < 1.0, scale, np.inf)))
            scale = s_eff * ((ca2 / b + cs2) / 2.0) / (n * (1.0 - rho))
        wq_mean = np.where(rho < 1.0, c * scale, np.inf)
        qw = q * WAIT_TAIL_SHARE
        wq_q = np.where(rho < 1.0, np.where(c > qw, scale * np.log(np.maximum(c, qw) / qw), 0.0), np.inf)

    svc_q = service_quantile(p50_s, p99_s, pct)
    shape = np.broadcast_shapes(rho.shape, mean_s.shape)
    return LatencyArrays(
        form_mean + wq_mean + mean_s,
        form_q + wq_q + svc_q,
        rho,
        np.broadcast_to(form_q, shape),
        wq_q,
        np.broadcast_to(svc_q, shape),
    )


def stage_latency(
    row, replicas: int, rate: float, pct: float = 99.0, max_wait: float | None = None, arrival_dispersion: float = 1.0
) -> StageLatency:
    """Scalar convenience over `stage_latency_arrays` for one ProfileRow."""
    r = stage_latency_arrays(
        mean_s=row.latency_mean_s,
        p50_s=row.latency_p50_s,
        p99_s=row.latency_p99_s,
        throughput=row.throughput_rps,
        batch=row.batch,
        replicas=replicas,
        rate=rate,
        pct=pct,
        max_wait=max_wait,
        arrival_dispersion=arrival_dispersion,
    )
    return StageLatency(
        mean_s=float(r.mean),
        slo_s=float(r.slo),
        utilization=float(r.utilization),
        formation_s=float(r.formation_slo),
        queue_s=float(r.queue_slo),
        service_s=float(r.service_slo),
    )


# The slowdown is tabulated per (host cores, job cores) over the others' demand from 0 to host_cores on this many
# steps and read by linear interpolation: it is convex in the demand, so the chord is never below the exact value.
SLOWDOWN_STEPS = 1024
SLOWDOWN_MAX_ITER = 5000


def _poisson_excess(mu: np.ndarray, t: float) -> np.ndarray:
    """E[(N - t)^+] for N ~ Poisson(mu): mu - t + t P(N <= j) - mu P(N <= j - 1), j = floor(t) (0 terms for t < 0)."""
    if t <= 0:
        return mu - t
    j = math.floor(t)
    below = pdtr(j - 1, mu) if j >= 1 else np.zeros_like(mu)
    return mu - t + t * pdtr(j, mu) - mu * below


@functools.lru_cache(maxsize=64)
def _slowdown_table(host_cores: float, job_cores: float) -> np.ndarray:
    """The least fixed point s = 1 + E[(c + N - k)^+] / k, N ~ Poisson(s m), at m = 0, k / STEPS, ..., k (module
    docstring); inf where the iteration from s = 1 does not settle (no fixed point: the others fill the host)."""
    k, t = float(host_cores), float(host_cores) - float(job_cores)
    m = np.linspace(0.0, k, SLOWDOWN_STEPS + 1)
    s = np.ones_like(m)
    settled = np.zeros(m.shape, bool)
    for _ in range(SLOWDOWN_MAX_ITER):
        g = 1.0 + _poisson_excess(s * m, t) / k
        settled = np.abs(g - s) <= 1e-12 * g
        s = np.minimum(g, 1e9)
        if settled.all():
            break
    s[~settled] = np.inf
    s.setflags(write=False)
    return s


def host_slowdown(
    host_cores: float,
    utilisation: np.ndarray | float,
    own_cores: np.ndarray | float = 0.0,
    job_cores: np.ndarray | float = 1.0,
) -> np.ndarray | float:
    """Mean slowdown of a job of `job_cores` cores on a processor-sharing host of `host_cores` cores whose demand
    is at most `utilisation` x host_cores, of which `own_cores` is the job's own replica's (module docstring,
    "Shared host"); inf where the others fill the host. Arrays broadcast; a float for scalar inputs."""
    k = float(host_cores)
    u, own, c = np.broadcast_arrays(*(np.asarray(x, float) for x in (utilisation, own_cores, job_cores)))
    x = np.clip(u * k - own, 0.0, k) / k * SLOWDOWN_STEPS  # the others' demand in table steps
    lo = np.minimum(np.floor(x), SLOWDOWN_STEPS - 1).astype(np.int64)
    w = x - lo
    out = np.empty(x.shape)
    for cv in np.unique(c):
        sel = c == cv
        table = _slowdown_table(k, float(cv))
        a, b = table[lo[sel]], table[lo[sel] + 1]
        with np.errstate(invalid="ignore"):
            out[sel] = np.where(np.isinf(b), np.where(w[sel] > 0, np.inf, a), a + w[sel] * (b - a))
    return float(out) if out.ndim == 0 else out


def host_service(
    *,
    mean_s: np.ndarray,
    p50_s: np.ndarray,
    p99_s: np.ndarray,
    throughput: np.ndarray,
    batch: np.ndarray,
    hop_s: np.ndarray | float,
    slowdown: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A batch's service on the shared host: (S + hop) x slowdown for the mean and quantiles, and the replica's
    throughput b / ((b / θ + hop) x slowdown) (module docstring, "Shared host")."""
    mean_s, p50_s, p99_s, thr, b, hop = _broadcast_floats(mean_s, p50_s, p99_s, throughput, batch, hop_s)
    return (
        (mean_s + hop) * slowdown,
        (p50_s + hop) * slowdown,
        (p99_s + hop) * slowdown,
        b / ((b / thr + hop) * slowdown),
    )


def host_cpu_per_item(
    *, mean_s: np.ndarray, batch: np.ndarray, cores: np.ndarray, hop_s: np.ndarray | float
) -> np.ndarray:
    """CPU-seconds one item costs the host at a stage: its batch's job holds the replica's cores for S + hop at
    full speed (module docstring, "Shared host"), shared by the batch's items."""
    mean_s, b, c, hop = _broadcast_floats(mean_s, batch, cores, hop_s)
    return c * (mean_s + hop) / b


def longest_path(pipeline, stage_values: dict[str, float]) -> tuple[float, list[str]]:
    """The largest sum of `stage_values` over source-to-sink paths, and that path."""
    best: dict[str, tuple[float, list[str]]] = {}
    for s in pipeline.topological_order():
        ins = pipeline.parents(s)
        prev = max((best[e.src] for e in ins), key=lambda t: t[0], default=(0.0, []))
        best[s] = (prev[0] + stage_values[s], prev[1] + [s])
    return max((best[s] for s in pipeline.sinks()), key=lambda t: t[0])
