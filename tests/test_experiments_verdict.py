"""The verdict of IPA's claims on small synthetic result sets: holds, does not hold, and an interval that
straddles the threshold (inconclusive); no simulation."""

from __future__ import annotations

import math

import pytest

from pipetune.experiments.report import verdict_lines
from pipetune.experiments.verdicts import WELL_BELOW, judge, t_interval, verdicts

SYSTEMS = [
    {"name": "IPA", "policy": "ipa", "predictor": "default"},
    {"name": "FA2-low", "policy": "fa2-low", "predictor": "default"},
    {"name": "FA2-high", "policy": "fa2-high", "predictor": "default"},
    {"name": "RIM", "policy": "rim", "predictor": "default"},
    {"name": "IPA-reactive", "policy": "ipa", "predictor": "reactive"},
]


def _data(values: dict[str, list[tuple[float, float, float]]], workloads=("w1", "w2")) -> dict:
    """values: system -> per seed (violation rate, cores, PAS); every workload gets the same numbers."""
    runs = [
        {
            "kind": "grid",
            "pipeline": "p",
            "workload": w,
            "system": s,
            "seed": seed,
            "summary": {"sla_violation_rate": v, "mean_cores": c, "pas_mean": a},
        }
        for s, per_seed in values.items()
        for seed, (v, c, a) in enumerate(per_seed)
        for w in workloads
    ]
    return {
        "experiment": {"systems": SYSTEMS, "seeds": [0, 1, 2], "workloads": [{"name": w} for w in workloads]},
        "pipelines": {"p": "p.yaml"},
        "runs": runs,
    }


def _claims(data: dict) -> dict[str, dict]:
    return {c["claim"]: c for c in verdicts(data)["p"]}


def test_t_interval_matches_the_textbook_formula():
    iv = t_interval([1.0, 2.0, 3.0])
    assert iv.mean == pytest.approx(2.0)
    assert iv.hi - iv.mean == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    one = t_interval([5.0])
    assert one.n == 1 and math.isinf(one.lo) and judge(one, "<", 10.0) == "inconclusive"


def test_every_claim_holds_when_ipa_is_better_on_every_seed():
    d = _data(
        {
            "IPA": [(0.01, 50, 0.52), (0.02, 51, 0.50), (0.015, 49, 0.51)],
            "FA2-low": [(0.01, 45, 0.40), (0.02, 46, 0.41), (0.01, 44, 0.40)],
            "FA2-high": [(0.30, 100, 0.70), (0.31, 101, 0.70), (0.29, 99, 0.70)],
            "RIM": [(0.60, 60, 0.40), (0.62, 61, 0.40), (0.61, 60, 0.40)],
            "IPA-reactive": [(0.20, 48, 0.50), (0.22, 49, 0.50), (0.21, 47, 0.50)],
        }
    )
    c = _claims(d)
    assert [c[k]["verdict"] for k in "abc"] == ["holds"] * 3
    cost = c["a"]["parts"][1]
    assert cost["threshold"] == WELL_BELOW and cost["interval"].mean == pytest.approx(50 / 100, rel=0.02)
    assert "holds" in "\n".join(verdict_lines(d, {}))


def test_claims_do_not_hold_when_ipa_is_worse_on_every_seed_and_the_figure_is_cited():
    d = _data(
        {
            "IPA": [(0.10, 95, 0.40), (0.11, 96, 0.41), (0.10, 95, 0.40)],
            "FA2-low": [(0.01, 45, 0.45), (0.02, 46, 0.46), (0.01, 44, 0.45)],
            "FA2-high": [(0.30, 100, 0.70), (0.31, 101, 0.70), (0.29, 99, 0.70)],
            "RIM": [(0.05, 12, 0.40), (0.06, 12, 0.40), (0.05, 12, 0.40)],
            "IPA-reactive": [(0.10, 95, 0.40), (0.11, 96, 0.41), (0.10, 95, 0.40)],  # identical: not fewer
        }
    )
    c = _claims(d)
    assert [c[k]["verdict"] for k in "abc"] == ["does not hold"] * 3
    assert [p["verdict"] for p in c["a"]["parts"]] == ["does not hold", "does not hold"]
    assert c["c"]["parts"][0]["interval"].mean == 0.0  # a tie is no reduction
    text = "\n".join(verdict_lines(d, {"verdict (p)": "out/sim-verdict-p.png", "grid (p)": "out/sim-grid-p.png"}))
    assert "[sim-verdict-p.png](sim-verdict-p.png), [sim-grid-p.png](sim-grid-p.png)" in text


def test_an_interval_that_straddles_the_threshold_is_inconclusive():
    # IPA's accuracy minus FA2-low's is +0.05, -0.04, +0.02 over the seeds: the mean is above 0, the CI is not
    d = _data(
        {
            "IPA": [(0.01, 50, 0.55), (0.02, 50, 0.46), (0.01, 50, 0.52)],
            "FA2-low": [(0.01, 45, 0.50), (0.02, 46, 0.50), (0.01, 44, 0.50)],
            "FA2-high": [(0.30, 100, 0.70), (0.31, 101, 0.70), (0.29, 99, 0.70)],
        }
    )
    c = _claims(d)
    acc = c["a"]["parts"][0]
    assert acc["interval"].mean > 0 > acc["interval"].lo
    assert acc["verdict"] == "inconclusive" and c["a"]["verdict"] == "inconclusive"
    assert set(c) == {"a"}  # no RIM, no reactive variant: those claims are left out, not judged


@pytest.mark.parametrize(
    ("op", "lo", "hi", "want"),
    [
        (">=", 0.0, 0.1, "holds"),
        (">=", -0.2, -0.1, "does not hold"),
        ("<", -0.2, -0.1, "holds"),
        ("<", 0.0, 0.0, "does not hold"),
        ("<=", 0.7, 0.8, "holds"),
        ("<=", 0.7, 0.9, "inconclusive"),
    ],
)
def test_judge_by_where_the_interval_lies(op, lo, hi, want):
    from pipetune.experiments.verdicts import Interval

    assert judge(Interval((lo + hi) / 2, lo, hi, 3), op, 0.8 if op == "<=" else 0.0) == want


def test_load_scale_multiplies_a_pipelines_counts_and_refuses_a_name_that_is_no_pipeline():
    from pipetune.experiments.spec import ExperimentError, parse_experiment
    from pipetune.experiments.tasks import build_tasks

    base = {
        "name": "t",
        "pipeline": "example:synthetic",
        "workloads": [{"name": "w", "synthetic": "steady-low", "peak": 10, "seconds": 120}],
        "systems": [{"name": "IPA", "policy": "ipa"}],
    }
    plain = build_tasks(parse_experiment(base), logs=False)[0]
    scaled = build_tasks(parse_experiment({**base, "load_scale": {"synthetic": 0.5}}), logs=False)[0]
    assert scaled.requests == pytest.approx(0.5 * plain.requests)
    with pytest.raises(ExperimentError, match="load_scale.*synthtic.*did you mean 'synthetic'"):
        build_tasks(parse_experiment({**base, "load_scale": {"synthtic": 0.5}}), logs=False)


def test_report_top_says_which_load_is_unservable_and_its_factor_or_that_all_is_servable():
    from pipetune.experiments.report import load_lines

    ok = {"peak_rps": 34.4, "feasible": True, "scale": 1.0}
    bad = {"peak_rps": 34.4, "feasible": False, "reason": "nlp-trans at 100 replicas serves 13.6 items/s",
           "max_servable_scale": 0.233, "scale": 0.2, "scaled_peak_rps": 6.88, "scaled_feasible": True}  # fmt: skip
    top = "\n".join(load_lines({"load_check": {"video": ok, "nlp": bad}, "sla_s": {"nlp": 17.61}}))
    assert "## Load that no configuration serves" in top and "**nlp**" in top and "video" not in top
    assert "0.233" in top and "scaled by **0.2**" in top and "becomes 40" in top
    top = "\n".join(load_lines({"load_check": {"video": ok, "nlp": ok}}))
    assert "every pipeline's peak (34.4 rps) has a plan within its SLA" in top and "no load is scaled" in top
    assert load_lines({}) == []
