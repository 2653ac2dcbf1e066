"""What a load test writes: summary.json (strict JSON), timeline.csv (per second), requests.csv (per request),
loadtest.png (sent vs completed rps, p99 latency over time).

Timeline buckets: `planned`, `sent` and `not_sent` count in the second the request was planned or sent;
`completed`, `refused`, `dropped`, `failed` and `timeout` in the second its answer (or error) came, so
`completed` is the delivered throughput; `p50_ms`/`p99_ms` are the latencies of the requests completed in that
second (empty when none completed).

SLA violations (with an SLA): every planned request that was not completed within the SLA, i.e. completed
late, refused, dropped, failed, timed out or not sent: a refused request is a user not served.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pipetune import jsonio
from pipetune.loadgen.runner import Records
from pipetune.metrics import COMPLETED, DROPPED, FAILED, NOT_SENT, OUTCOMES, REFUSED, TIMEOUT, sla_masks

TIMELINE_COLUMNS = (
    "second",
    "planned",
    "sent",
    "not_sent",
    "completed",
    "refused",
    "dropped",
    "failed",
    "timeout",
    "p50_ms",
    "p99_ms",
)


def _q(x: np.ndarray, q: float) -> float | None:
    x = x[np.isfinite(x)]
    return None if x.size == 0 else round(float(np.percentile(x, q)), 4)


def _stats_ms(x: np.ndarray, qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float | None]:
    ms = x * 1e3
    out: dict[str, float | None] = {f"p{q}": _q(ms, q) for q in qs}
    finite = ms[np.isfinite(ms)]
    out["max"] = round(float(finite.max()), 4) if finite.size else None
    out["mean"] = round(float(finite.mean()), 4) if finite.size else None
    return out


def summarise(rec: Records, meta: dict[str, Any], sla_s: float | None = None) -> dict[str, Any]:
    counts = rec.counts()
    planned = int(rec.planned.size)
    sent = planned - counts["not_sent"]
    done = rec.outcome == COMPLETED
    elapsed = max(rec.elapsed_s, 1e-9)
    span = float(rec.planned[-1]) if planned else 0.0
    statuses = Counter(int(s) for s in rec.status if s)
    reasons = Counter(r[:120] for r in rec.reasons if r)
    variants: dict[str, Counter] = {}
    for v in rec.variants:
        if v:
            for pair in v.split(";"):
                stage, _, variant = pair.partition("=")
                variants.setdefault(stage, Counter())[variant] += 1
    send_err = rec.sent - rec.planned
    out: dict[str, Any] = {
        **meta,
        "planned": planned,
        "sent": sent,
        "outcomes": counts,
        "accounted": int(sum(counts.values())) == planned,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "offered_rps": round(planned / max(span, 1e-9), 3) if planned > 1 else float(planned),
        "sent_rps": round(sent / elapsed, 3),
        "achieved_rps": round(int(done.sum()) / elapsed, 3),
        "elapsed_s": round(elapsed, 4),
        "latency_ms": _stats_ms(rec.latency[done]),
        "server_e2e_ms": _stats_ms(rec.server_e2e[done]),
        "send_error_ms": _stats_ms(send_err, (50, 99)),
        "client_cpu_ms_per_request": round(rec.cpu_s * 1e3 / sent, 4) if sent else None,
        "variants": {s: dict(c.most_common()) for s, c in sorted(variants.items())},
        "reasons": dict(reasons.most_common(10)),
        "interrupted": rec.interrupted,
    }
    if sla_s is not None:
        late, violation = sla_masks(rec.outcome, rec.latency, sla_s)
        viol = int(violation.sum())
        out["sla"] = {
            "seconds": sla_s,
            "violations": viol,
            "late": int(late.sum()),
            "violation_rate": round(viol / planned, 6) if planned else 0.0,
        }
    return out


def timeline(rec: Records, duration_s: int = 0) -> list[dict[str, Any]]:
    """One row per second of the plan's duration (longer if answers came after it)."""
    last = max(rec.elapsed_s, float(rec.planned[-1]) if rec.planned.size else 0.0)
    n = max(int(duration_s), int(math.floor(last)) + 1)

    def per_second(t: np.ndarray, mask: np.ndarray) -> np.ndarray:
        t = t[mask & np.isfinite(t)]
        return np.bincount(np.clip(t.astype(np.int64), 0, n - 1), minlength=n)

    sent_mask = rec.outcome != NOT_SENT
    cols = {
        "planned": per_second(rec.planned, np.ones(rec.planned.size, bool)),
        "sent": per_second(rec.sent, sent_mask),
        "not_sent": per_second(rec.planned, ~sent_mask),
    }
    for name, code in (
        ("completed", COMPLETED),
        ("refused", REFUSED),
        ("dropped", DROPPED),
        ("failed", FAILED),
        ("timeout", TIMEOUT),
    ):
        cols[name] = per_second(rec.done, rec.outcome == code)
    done = (rec.outcome == COMPLETED) & np.isfinite(rec.done)
    sec = np.clip(rec.done[done].astype(np.int64), 0, n - 1)
    lat = rec.latency[done] * 1e3
    order = np.argsort(sec, kind="stable")
    sec, lat = sec[order], lat[order]
    bounds = np.searchsorted(sec, np.arange(n + 1))
    rows = []
    for s in range(n):
        chunk = lat[bounds[s] : bounds[s + 1]]
        row: dict[str, Any] = {"second": s, **{k: int(v[s]) for k, v in cols.items()}}
        row["p50_ms"] = round(float(np.percentile(chunk, 50)), 3) if chunk.size else None
        row["p99_ms"] = round(float(np.percentile(chunk, 99)), 3) if chunk.size else None
        rows.append(row)
    return rows


def write_outputs(rec: Records, summary: dict[str, Any], out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "summary.json",
        "timeline": out / "timeline.csv",
        "requests": out / "requests.csv",
    }
    paths["summary"].write_text(jsonio.dumps(summary, indent=2) + "\n")
    rows = timeline(rec, int(summary.get("workload", {}).get("duration_s", 0)))
    with paths["timeline"].open("w", newline="") as fh:
        dw = csv.DictWriter(fh, fieldnames=TIMELINE_COLUMNS)
        dw.writeheader()
        for r in rows:
            dw.writerow({k: "" if v is None else v for k, v in r.items()})
    with paths["requests"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["i", "planned_s", "sent_s", "latency_ms", "status", "outcome", "variants", "server_e2e_ms", "reason"]
        )
        for i in range(rec.planned.size):
            w.writerow(
                [
                    i,
                    f"{rec.planned[i]:.6f}",
                    _fmt(rec.sent[i], 1.0, 6),
                    _fmt(rec.latency[i], 1e3, 3),
                    int(rec.status[i]) or "",
                    OUTCOMES[int(rec.outcome[i])],
                    rec.variants[i] or "",
                    _fmt(rec.server_e2e[i], 1e3, 3),
                    rec.reasons[i] or "",
                ]
            )
    if plot:
        paths["plot"] = plot_timeline(rows, out / "loadtest.png", summary)
    return paths


def _fmt(x: float, scale: float, digits: int) -> str:
    return "" if not math.isfinite(x) else f"{x * scale:.{digits}f}"


def plot_timeline(rows: list[dict[str, Any]], path: Path, summary: dict[str, Any]) -> Path:
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()
    t = np.array([r["second"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax1.plot(t, [r["planned"] for r in rows], color="tab:gray", lw=1, ls="--", label="planned")
    ax1.plot(t, [r["sent"] for r in rows], color="tab:blue", lw=1.2, label="sent")
    ax1.plot(t, [r["completed"] for r in rows], color="tab:green", lw=1.2, label="completed")
    bad = [r["refused"] + r["dropped"] + r["failed"] + r["timeout"] + r["not_sent"] for r in rows]
    if any(bad):
        ax1.plot(t, bad, color="tab:red", lw=1, label="refused/dropped/failed/timeout/not sent")
    ax1.set_ylabel("requests / s")
    ax1.legend(fontsize=7, loc="upper left")
    ax1.grid(alpha=0.3)
    p99 = np.array([np.nan if r["p99_ms"] is None else r["p99_ms"] for r in rows])
    ax2.plot(t, p99, color="tab:purple", lw=1.2, label="p99 latency (completed that second)")
    sla = summary.get("sla", {}).get("seconds")
    if sla is not None:
        ax2.axhline(sla * 1e3, color="tab:red", ls=":", lw=1, label=f"SLA {sla:g} s")
    ax2.set_ylabel("ms")
    ax2.set_xlabel("second of the run")
    ax2.legend(fontsize=7, loc="upper left")
    ax2.grid(alpha=0.3)
    o = summary["outcomes"]
    ax1.set_title(
        f"{summary.get('url', '')}  planned {summary['planned']}, completed {o['completed']}, refused "
        f"{o['refused']}, dropped {o['dropped']}, failed {o['failed']}, timeout {o['timeout']}, "
        f"not sent {o['not_sent']}",
        fontsize=8,
    )
    return save_figure(fig, path)
