"""IPA's claims, judged per pipeline with 95% Student-t confidence intervals over seeds: the statistics
(`t_interval`, `judge`, `per_seed`) and the verdicts built on them. The report (`report.py`) writes them as text
and the figures (`figures.py`) draw them; both import this module, neither imports the other."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

WELL_BELOW = 0.8  # "a cost well below FA2-high's": IPA's mean cores at most 80% of FA2-high's
PREDICTOR_COST_TOLERANCE = 1.10  # the predictor may cost up to 10% more cores than planning for the last load
VERDICT_METRICS = {"sla_violation_rate": "SLA violations", "mean_cores": "cost (cores)", "pas_mean": "accuracy (PAS)"}


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided 95% Student-t interval of per-seed values (n < 2: no interval, infinite bounds)."""

    mean: float
    lo: float
    hi: float
    n: int


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if x.size < 2:
        return Interval(m, -math.inf, math.inf, int(x.size))
    half = float(t.ppf(0.5 + level / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(m, m - half, m + half, int(x.size))


def judge(iv: Interval, op: str, threshold: float) -> str:
    """'holds' when the whole interval satisfies `value op threshold`, 'does not hold' when none of it does,
    'inconclusive' when it straddles the threshold (or there is no interval)."""
    if not (iv.n and math.isfinite(iv.mean)):
        return "inconclusive"
    if op == ">=":
        return "holds" if iv.lo >= threshold else "does not hold" if iv.hi < threshold else "inconclusive"
    if op == "<":
        return "holds" if iv.hi < threshold else "does not hold" if iv.lo >= threshold else "inconclusive"
    if op == "<=":
        return "holds" if iv.hi <= threshold else "does not hold" if iv.lo > threshold else "inconclusive"
    raise ValueError(f"op {op!r}: use >=, < or <=")


def per_seed(runs: list[dict], system: str, metric: str) -> dict[int, float]:
    """Per seed, the mean over workloads of one summary metric of `system` (runs of one pipeline)."""
    by: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        v = r["summary"].get(metric) if r["system"] == system else None
        if v is not None and math.isfinite(v):
            by[r["seed"]].append(float(v))
    return {s: float(np.mean(v)) for s, v in sorted(by.items())}


def verdict_systems(systems: list[dict]) -> dict[str, str | None]:
    """The systems each claim compares, by policy and predictor: IPA (the first ipa system), FA2-low, FA2-high,
    RIM, IPA with a reactive predictor (another ipa system whose predictor is 'reactive') and Ray Serve's
    autoscaler (the first ray-autoscale system)."""
    ipa = next((s for s in systems if s["policy"] == "ipa"), None)

    def first(pred) -> str | None:
        return next((s["name"] for s in systems if pred(s)), None)

    return {
        "ipa": ipa["name"] if ipa else None,
        "fa2-low": first(lambda s: s["policy"] == "fa2-low"),
        "fa2-high": first(lambda s: s["policy"] == "fa2-high"),
        "rim": first(lambda s: s["policy"] == "rim"),
        "reactive": first(lambda s: s["policy"] == "ipa" and s is not ipa and str(s.get("predictor")) == "reactive"),
        "ray": first(lambda s: s["policy"] == "ray-autoscale"),
    }


def _part(runs, a: str, b: str, metric: str, kind: str, op: str, threshold: float, what: str) -> dict:
    """One measured comparison of `a` against `b`, paired by seed: a - b (kind 'diff') or a / b ('ratio')."""
    va, vb = per_seed(runs, a, metric), per_seed(runs, b, metric)
    seeds = [s for s in va if s in vb]
    if kind == "diff":
        vals = [va[s] - vb[s] for s in seeds]
    else:
        vals = [va[s] / vb[s] if vb[s] > 0 else math.nan for s in seeds]
    iv = t_interval(vals)
    return {
        "what": what,
        "metric": metric,
        "kind": kind,
        "op": op,
        "threshold": threshold,
        "a": a,
        "b": b,
        "a_mean": float(np.mean([va[s] for s in seeds])) if seeds else math.nan,
        "b_mean": float(np.mean([vb[s] for s in seeds])) if seeds else math.nan,
        "interval": iv,
        "seeds": seeds,
        "verdict": judge(iv, op, threshold),
    }


def _combine(verdicts: list[str]) -> str:
    if all(v == "holds" for v in verdicts):
        return "holds"
    return "does not hold" if "does not hold" in verdicts else "inconclusive"


def verdicts(data: dict) -> dict[str, list[dict]]:
    """Per pipeline, IPA's three claims, each with its measured parts and a verdict (holds / does not hold /
    inconclusive): (a) accuracy at least FA2-low's at a cost at most WELL_BELOW of FA2-high's; (b) fewer SLA
    violations than RIM at a lower cost; (c) its predictor: fewer SLA violations than planning for the last
    interval's load (reactive) at most PREDICTOR_COST_TOLERANCE of its cost; and pipetune's own (d): against Ray
    Serve's autoscaler (ray-autoscale), no more SLA violations at no more cost. A claim whose systems are not in
    the grid is left out."""
    exp = data["experiment"]
    grid = [r for r in data["runs"] if r["kind"] == "grid"]
    ran = {r["system"] for r in grid}
    names = verdict_systems([s for s in exp["systems"] if s["name"] in ran])
    ipa = names["ipa"]
    out: dict[str, list[dict]] = {}
    if ipa is None:
        return out
    pipes = list(data.get("pipelines") or dict.fromkeys(r.get("pipeline", "") for r in grid))
    for pipe in pipes:
        runs = [r for r in grid if r.get("pipeline", "") == pipe]
        claims: list[dict] = []
        if names["fa2-low"] and names["fa2-high"]:
            claims.append(
                {
                    "claim": "a",
                    "text": f"accuracy at least FA2-low's, at a cost well below FA2-high's (<= {WELL_BELOW:.0%})",
                    "parts": [
                        _part(runs, ipa, names["fa2-low"], "pas_mean", "diff", ">=", 0.0, "accuracy"),
                        _part(runs, ipa, names["fa2-high"], "mean_cores", "ratio", "<=", WELL_BELOW, "cost"),
                    ],
                }
            )
        if names["rim"]:
            claims.append(
                {
                    "claim": "b",
                    "text": "fewer SLA violations than RIM, at a lower cost",
                    "parts": [
                        _part(runs, ipa, names["rim"], "sla_violation_rate", "diff", "<", 0.0, "SLA violations"),
                        _part(runs, ipa, names["rim"], "mean_cores", "ratio", "<", 1.0, "cost"),
                    ],
                }
            )
        if names["reactive"]:
            claims.append(
                {
                    "claim": "c",
                    "text": "its predictor: fewer SLA violations than a reactive predictor, at most "
                    f"{PREDICTOR_COST_TOLERANCE - 1:.0%} more cost",
                    "parts": [
                        _part(runs, ipa, names["reactive"], "sla_violation_rate", "diff", "<", 0.0, "SLA violations"),
                        _part(
                            runs, ipa, names["reactive"], "mean_cores", "ratio", "<=", PREDICTOR_COST_TOLERANCE, "cost"
                        ),
                    ],
                }
            )
        if names["ray"]:
            claims.append(
                {
                    "claim": "d",
                    "text": "pipetune against Ray Serve's autoscaler on fixed variants: no more SLA violations, at "
                    "no more cost",
                    "parts": [
                        _part(runs, ipa, names["ray"], "sla_violation_rate", "diff", "<=", 0.0, "SLA violations"),
                        _part(runs, ipa, names["ray"], "mean_cores", "ratio", "<=", 1.0, "cost"),
                    ],
                }
            )
        for c in claims:
            c["verdict"] = _combine([p["verdict"] for p in c["parts"]])
        out[pipe] = claims
    return out
