"""Run metrics from a simulated (or recorded) run: SLA violations, latency, accuracy as served, cost.

Definitions (the same for every backend and every report):

* **SLA violation**: a request that was refused (admission), dropped, failed, or completed later than the SLA.
  The rate is over all requests that arrived in the window; refusals, drops, failures and late completions are
  also reported on their own.
* **Latency** percentiles are over completed requests (end to end, arrival to last item done).
* **Accuracy as served**: per completed request, PAS = product over stages of the accuracy of the variant(s)
  that served its items (mean over items where a stage saw several, e.g. 2 crops), and the normalised
  accuracy = mean over stages of (acc - min acc of the stage) / (max - min), in [0, 1].
* **Cost**: every core held (loading, serving, draining replicas), integrated over [start, end) in
  core-seconds; mean cores = core-seconds / duration.
Per-interval rows assign requests to the interval they arrived in.

Every report computes these figures here: the simulator's runs and experiments (`summarise`, `per_interval`), the
load generator's summary (`loadgen/report.py`), the live demo (`tooling/demo.py`). Requests carry one outcome
code from OUTCOMES, the same for the simulator's status array and the load generator's records; a live answer's
HTTP status maps to one through `outcomes_of_http`. An SLA violation is any request not completed within the
SLA: late, dropped, failed, refused, timed out or not sent (the simulator drops, fails, or with admission on refuses one).
"""

from __future__ import annotations

import numpy as np

# Request outcomes, one set of codes for every backend and report. PENDING: not finished yet (in flight).
OUTCOMES = ("pending", "completed", "dropped", "failed", "refused", "timeout", "not_sent")
PENDING, COMPLETED, DROPPED, FAILED, REFUSED, TIMEOUT, NOT_SENT = range(len(OUTCOMES))

# The live path's HTTP statuses (serving's ingress answers them; the load generator and the demo read them).
HTTP_OK, HTTP_REFUSED, HTTP_DROPPED = 200, 503, 504  # served; refused by admission control; dropped at the deadline


def outcomes_of_http(status) -> np.ndarray:  # noqa: ANN001 - an int or an array of them
    """The outcome of each HTTP answer: 200 completed, 503 refused, 504 dropped, anything else (0: no answer)
    failed."""
    st = np.asarray(status)
    return np.select(
        [st == HTTP_OK, st == HTTP_REFUSED, st == HTTP_DROPPED], [COMPLETED, REFUSED, DROPPED], FAILED
    ).astype(np.int8)


def outcome_counts(outcome: np.ndarray) -> dict[str, int]:
    """Requests per finished outcome (pending ones are in none)."""
    c = np.bincount(np.asarray(outcome, dtype=np.int64), minlength=len(OUTCOMES))
    return {name: int(c[i]) for i, name in enumerate(OUTCOMES) if i != PENDING}


def sla_masks(outcome: np.ndarray, latency_s: np.ndarray, sla_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per request: late (completed after the SLA) and violation (anything but completed within the SLA)."""
    done = np.asarray(outcome) == COMPLETED
    late = done & (np.asarray(latency_s, float) > sla_s)
    return late, ~done | late


def latency_or_inf(outcome: np.ndarray, latency_s: np.ndarray) -> np.ndarray:
    """Per request, its latency if completed, else +inf: a quantile over all requests then counts a request that
    was not served as never answered (use method="inverted_cdf", so that no level interpolates into an inf)."""
    return np.where(np.asarray(outcome) == COMPLETED, np.asarray(latency_s, float), np.inf)


def served_pas(pipeline, variants: dict[str, str] | None) -> float:  # noqa: ANN001 - a spec.Pipeline
    """PAS of one request served live: the product of the accuracies of the variant that served each stage
    (NaN when a stage's variant is not known)."""
    if not variants:
        return float("nan")
    acc = 1.0
    for s in pipeline.stage_names:
        v = next((x for x in pipeline.stage(s).variants if x.name == variants.get(s)), None)
        if v is None:
            return float("nan")
        acc *= v.accuracy
    return acc


def core_seconds(cost_t: np.ndarray, cost_cores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Integral of the piecewise-constant cores-held curve between consecutive `edges`."""
    t = np.asarray(cost_t, float)
    v = np.asarray(cost_cores, float)
    cum = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(t))])

    def at(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, t.size - 1)
        return np.where(x <= t[0], 0.0, cum[k] + v[k] * (x - t[k]))

    c = at(np.asarray(edges, float))
    return np.diff(c)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def summarise(res, duration_s: float | None = None, decisions: int = 0, switches: int | None = None) -> dict:
    """Per-run metrics of a `SimResult` over [0, duration_s) (default: the result's horizon)."""
    dur = float(duration_s if duration_s is not None else res.horizon_s) or 1.0
    st = res.status
    n = int(st.size)
    lat = res.finish_s - res.arrival_s
    done = st == COMPLETED
    late, violation = sla_masks(st, lat, res.sla_s)
    dropped, failed, refused = int(np.sum(st == DROPPED)), int(np.sum(st == FAILED)), int(np.sum(st == REFUSED))
    viol = int(violation.sum())
    cs = float(core_seconds(res.cost_t, res.cost_cores, np.array([0.0, dur]))[0])
    if switches is None:
        switches = sum(1 for e in res.events if e.get("event") == "switch")
    lat_done = lat[done]
    return {
        "requests": n,
        "completed": int(done.sum()),
        "refused": refused,
        "dropped": dropped,
        "failed": failed,
        "late": int(late.sum()),
        "sla_violation_rate": viol / n if n else 0.0,
        "drop_rate": dropped / n if n else 0.0,
        "late_rate": float(late.sum()) / n if n else 0.0,
        "latency_p50_s": _pct(lat_done, 50),
        "latency_p95_s": _pct(lat_done, 95),
        "latency_p99_s": _pct(lat_done, 99),
        "pas_mean": float(np.nanmean(res.pas[done])) if done.any() else float("nan"),
        "norm_acc_mean": float(np.nanmean(res.norm_acc[done])) if done.any() else float("nan"),
        "core_seconds": cs,
        "mean_cores": cs / dur,
        "duration_s": dur,
        "decisions": int(decisions),
        "switches": int(switches),
    }


def per_interval(res, interval_s: float = 10.0, duration_s: float | None = None) -> dict[str, np.ndarray]:
    """Column arrays, one row per interval [k*interval_s, (k+1)*interval_s)."""
    dur = float(duration_s if duration_s is not None else res.horizon_s)
    k = max(1, int(np.ceil(dur / interval_s - 1e-9)))
    edges = np.arange(k + 1) * interval_s
    bins = np.clip((res.arrival_s // interval_s).astype(np.int64), 0, k - 1)
    st = res.status
    lat = res.finish_s - res.arrival_s
    done = st == COMPLETED
    viol = sla_masks(st, lat, res.sla_s)[1]
    arrivals = np.bincount(bins, minlength=k).astype(float)
    out = {
        "t_start_s": edges[:-1],
        "arrivals": arrivals,
        "rps": arrivals / interval_s,
        "sla_violation_rate": np.divide(
            np.bincount(bins, viol, minlength=k), arrivals, out=np.zeros(k), where=arrivals > 0
        ),
        "drop_rate": np.divide(
            np.bincount(bins, st == DROPPED, minlength=k), arrivals, out=np.zeros(k), where=arrivals > 0
        ),
        "mean_cores": core_seconds(res.cost_t, res.cost_cores, edges) / interval_s,
    }
    nd = np.bincount(bins[done], minlength=k).astype(float)
    pas = np.where(done, np.nan_to_num(res.pas), 0.0)
    nrm = np.where(done, np.nan_to_num(res.norm_acc), 0.0)
    out["pas_mean"] = np.divide(np.bincount(bins, pas, minlength=k), nd, out=np.full(k, np.nan), where=nd > 0)
    out["norm_acc_mean"] = np.divide(np.bincount(bins, nrm, minlength=k), nd, out=np.full(k, np.nan), where=nd > 0)
    p99 = np.full(k, np.nan)
    order = np.argsort(bins[done], kind="stable")
    lb, ll = bins[done][order], lat[done][order]
    cuts = np.searchsorted(lb, np.arange(k + 1))
    for i in range(k):
        if cuts[i + 1] > cuts[i]:
            p99[i] = np.percentile(ll[cuts[i] : cuts[i + 1]], 99)
    out["latency_p99_s"] = p99
    return out
