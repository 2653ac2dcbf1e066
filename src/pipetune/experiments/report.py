"""Write an experiment's outputs: results.json / results.csv / intervals.csv, figures (PNG), report.md/.html."""

from __future__ import annotations

import csv
import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from pipetune import jsonio
from pipetune.experiments.verdicts import WELL_BELOW, verdicts

SUMMARY_COLS = [
    "sla_violation_rate",
    "drop_rate",
    "late_rate",
    "mean_cores",
    "pas_mean",
    "norm_acc_mean",
    "latency_p99_s",
    "switches",
    "decisions",
]


def system_table(runs: list[dict]) -> list[dict]:
    """Per system, the mean over workloads and seeds of the headline metrics."""
    by = defaultdict(list)
    for r in runs:
        by[r["system"]].append(r["summary"])
    rows = []
    for s, ms in by.items():
        row = {"system": s, "runs": len(ms)}
        for c in SUMMARY_COLS:
            vals = [m[c] for m in ms if m.get(c) is not None and not (isinstance(m[c], float) and math.isnan(m[c]))]
            row[c] = float(np.mean(vals)) if vals else float("nan")
        rows.append(row)
    return rows


def pipeline_table(runs: list[dict]) -> list[dict]:
    out = []
    for pipe in dict.fromkeys(r.get("pipeline", "") for r in runs):
        for row in system_table([r for r in runs if r.get("pipeline", "") == pipe]):
            out.append({"pipeline": pipe, **row})
    return out


def workload_table(runs: list[dict]) -> list[dict]:
    by = defaultdict(list)
    for r in sorted(runs, key=lambda r: (r.get("pipeline", ""), r["workload"])):
        by[(r.get("pipeline", ""), r["workload"], r["system"])].append(r["summary"])
    out = []
    for (pipe, w, s), ms in by.items():
        out.append(
            {
                "pipeline": pipe,
                "workload": w,
                "system": s,
                **{
                    c: float(np.nanmean([m[c] for m in ms]))
                    for c in ("sla_violation_rate", "mean_cores", "pas_mean", "latency_p99_s")
                },
            }
        )
    return out


def calibration_summary(cal: list[dict]) -> dict:
    ratios = np.array([c["ratio"] for c in cal if c.get("ratio") is not None], dtype=float)
    viol = np.array([c["sim_violation_rate"] for c in cal], dtype=float)
    if not cal:
        return {}
    return {
        "plans": len(cal),
        "ratio_median": float(np.median(ratios)) if ratios.size else None,
        "ratio_p90": float(np.percentile(ratios, 90)) if ratios.size else None,
        "ratio_max": float(ratios.max()) if ratios.size else None,
        "under_predicted_share": float(np.mean(ratios > 1.0)) if ratios.size else None,
        "sla_violation_rate_max": float(viol.max()),
        "sla_violation_rate_mean": float(viol.mean()),
        "plans_over_1pct": int(np.sum(viol > 0.01)),
    }


def findings(systems: list[dict]) -> list[str]:
    """IPA's qualitative claim, checked on our numbers: accuracy close to FA2-high at a cost close to FA2-low."""
    by = {r["system"]: r for r in systems}
    ipa = next((r for n, r in by.items() if n.lower().startswith("ipa")), None)
    out: list[str] = []
    if ipa is None:
        return out
    for other in ("FA2-low", "FA2-high", "RIM"):
        o = by.get(other)
        if not o or not (o["pas_mean"] > 0) or not (o["mean_cores"] > 0) or not (ipa["pas_mean"] > 0):
            continue  # nothing completed (nan) or nothing held: no ratio to state
        dp = 100 * (ipa["pas_mean"] - o["pas_mean"]) / o["pas_mean"]
        dc = 100 * (ipa["mean_cores"] - o["mean_cores"]) / o["mean_cores"]
        out.append(
            f"{ipa['system']} vs {other}: accuracy (PAS) {ipa['pas_mean']:.3f} vs {o['pas_mean']:.3f} ({dp:+.1f}%), "
            f"cost {ipa['mean_cores']:.1f} vs {o['mean_cores']:.1f} cores ({dc:+.1f}%), SLA violations "
            f"{100 * ipa['sla_violation_rate']:.2f}% vs {100 * o['sla_violation_rate']:.2f}%."
        )
    return out


def auto_notes(data: dict, systems: list[dict], cal: dict) -> list[str]:
    """Remarks the numbers support on their own: where the predictor or the planner explains a difference."""
    out = []
    by = {r["system"]: r for r in systems}
    ipa = next((r for n, r in by.items() if n.lower() == "ipa"), None)
    oracle = next((r for n, r in by.items() if "oracle" in n.lower()), None)
    if ipa and oracle and ipa["sla_violation_rate"] > 2 * oracle["sla_violation_rate"] + 0.002:
        out.append(
            f"IPA's SLA violations ({100 * ipa['sla_violation_rate']:.2f}%) come from load prediction: the same "
            f"policy with a perfect predictor violates {100 * oracle['sla_violation_rate']:.2f}%. Misses concentrate "
            "at the start of surges, when new replicas need their load time before they serve."
        )
    if cal and cal.get("ratio_median") is not None:
        if cal["ratio_median"] < 0.8:
            out.append(
                f"The planner is conservative: its p99 is {1 / cal['ratio_median']:.1f}x the simulated p99 for the "
                "median ipa plan (it adds stage p99s along a path and, within a stage, the p99s of batch formation, "
                "queueing and service), so every policy holds more capacity than the SLA needs."
            )
        elif cal.get("under_predicted_share", 0) > 0.2:
            out.append(f"The planner under-predicts p99 for {100 * cal['under_predicted_share']:.0f}% of ipa plans.")
    grid = [r for r in data["runs"] if r["kind"] == "grid"]
    for r_sys in systems:
        runs = [r for r in grid if r["system"] == r_sys["system"]]
        if not runs or runs[0]["policy"] != "rim" or r_sys["sla_violation_rate"] <= 0.05:
            continue
        low = [r for r in grid if r["policy"] == "fa2-low"]
        need = max((max(x for x in r["intervals"]["mean_cores"] if x is not None) for r in low), default=None)
        held = max(r["summary"]["mean_cores"] for r in runs)
        text = (
            f"{r_sys['system']} violates {100 * r_sys['sla_violation_rate']:.1f}%: it holds a fixed ~{held:.0f} "
            "cores and can only trade accuracy for speed"
        )
        if need is not None and need > held:
            text += (
                f", while FA2-low (the fastest variants, free to scale) needed up to {need:.0f} cores at the "
                "peaks: no variant switch makes up for missing replicas on these profiles"
            )
        out.append(text + ".")
    overloaded = set()
    for pipe in data.get("pipelines") or {}:
        runs = [r for r in grid if r.get("pipeline") == pipe]
        decided = sum(r["summary"]["decisions"] for r in runs)
        infeasible = sum(r["summary"].get("infeasible_decisions", 0) for r in runs)
        if decided and infeasible / decided > 0.5:
            overloaded.add(pipe)
        if decided and infeasible / decided > 0.2:
            worst = sorted(
                {
                    r["system"]
                    for r in runs
                    if r["summary"].get("infeasible_decisions", 0) > 0.5 * r["summary"]["decisions"]
                }
            )
            check = (data.get("load_check") or {}).get(pipe)
            if check and check["scaled_feasible"]:
                # the peak has a plan under the unrestricted policy: the misses are the restricted policies' own
                why = (
                    f"Some configuration serves the windows' peak ({check['scaled_peak_rps']:.1f} rps) within the "
                    "SLA, so these are the limits of those systems' restrictions (fixed variants or replicas), not "
                    "of the load."
                )
            else:
                why = (
                    "The windows' load is beyond what these profiles (measured on a 2-vCPU VM) can serve under this "
                    "SLA; IPA's testbed was a cluster of 96-core servers."
                )
            out.append(
                f"On {pipe}, {100 * infeasible / decided:.0f}% of all decisions found no plan that meets the SLA at "
                f"the predicted load within the caps (mostly {', '.join(worst) or 'several systems'}); the adapter "
                f"then applies the planner's best-effort fallback and requests are dropped. {why}"
            )
    for pipe, facts in (data.get("variants") or {}).items():
        if pipe in overloaded:
            continue  # the fallback, not the objective, chose the variants there
        rows = [r for r in grid if r.get("pipeline") == pipe]
        ipa_p = [r["summary"]["pas_mean"] for r in rows if r["system"].lower() == "ipa"]
        low_p = [r["summary"]["pas_mean"] for r in rows if r["policy"] == "fa2-low"]
        if not ipa_p or not low_p or abs(np.nanmean(ipa_p) - np.nanmean(low_p)) > 1e-3 * np.nanmean(low_p):
            continue
        steps = []
        for stage, vs in facts["stages"].items():
            if len(vs) < 2:
                continue
            fast = max(vs, key=lambda v: v["items_per_s_per_core"])
            better = [v for v in vs if v["accuracy"] > fast["accuracy"]]
            if better:
                nxt = max(better, key=lambda v: v["items_per_s_per_core"])
                steps.append(
                    f"{stage}: {fast['variant']} -> {nxt['variant']} gains "
                    f"{nxt['accuracy'] - fast['accuracy']:.3f} accuracy for "
                    f"{fast['items_per_s_per_core'] / nxt['items_per_s_per_core']:.1f}x the cores per item"
                )
        if steps:
            out.append(
                f"On {pipe}, IPA served the same variants as FA2-low: with alpha={facts['alpha']:g} per unit of "
                f"accuracy and beta={facts['beta']:g} per core, no heavier variant pays for its cores on these "
                f"profiles ({'; '.join(steps)}). A PAS gain over FA2-low, as IPA reports, needs heavier variants "
                "that cost less, relative to the lightest, than they do on these profiles."
            )
    out.append(
        "Our SLA violations count dropped, failed and late requests (IPA counted drops only); our cost counts "
        "replicas while they load and drain (IPA counted configured replicas); our accuracy is what each "
        "request was served with."
    )
    return out


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if pct:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _md_table(rows: list[dict], cols: list[str], pct: set[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c), c in pct) for c in cols) + " |\n" for r in rows)


def _html_table(rows: list[dict], cols: list[str], pct: set[str]) -> str:
    th = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), c in pct))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{trs}</table>"


def write_outputs(data: dict, out: Path, figures: bool = True) -> dict:
    out = Path(out)
    (out / "results.json").write_text(jsonio.dumps(data, indent=1, default=float))
    runs = data["runs"]
    with open(out / "results.csv", "w", newline="") as f:
        keys = list(runs[0]["summary"]) if runs else []
        w = csv.writer(f)
        w.writerow(["pipeline", "kind", "workload", "system", "policy", "predictor", "seed", *keys, "wall_s"])
        for r in sorted(runs, key=lambda r: (r["pipeline"], r["kind"], r["workload"], r["system"], r["seed"])):
            w.writerow(
                [
                    r["pipeline"],
                    r["kind"],
                    r["workload"],
                    r["system"],
                    r["policy"],
                    r["predictor"],
                    r["seed"],
                    *[r["summary"][k] for k in keys],
                    f"{r['wall_s']:.3f}",
                ]
            )
    with open(out / "intervals.csv", "w", newline="") as f:
        w = csv.writer(f)
        cols = list(runs[0]["intervals"]) if runs else []
        w.writerow(["pipeline", "kind", "workload", "system", "seed", *cols])
        for r in runs:
            iv = r["intervals"]
            for i in range(len(iv[cols[0]])):
                w.writerow([r["pipeline"], r["kind"], r["workload"], r["system"], r["seed"], *[iv[c][i] for c in cols]])
    if data.get("calibration"):
        with open(out / "calibration.csv", "w", newline="") as f:
            w = csv.writer(f)
            cols = [
                "pipeline",
                "workload",
                "rps",
                "sla_s",
                "predicted_p99_s",
                "sim_p99_s",
                "ratio",
                "sim_violation_rate",
                "configs",
            ]
            w.writerow(cols)
            for c in data["calibration"]:
                w.writerow([*(c.get(k) for k in cols[:-1]), jsonio.dumps(c["configs"], sort_keys=True)])
    figs = {}
    if figures:
        from pipetune.experiments.figures import all_figures

        figs = all_figures(data, out)
    write_report(data, out, figs)
    return figs


TITLES = {
    "grid": "Cost and accuracy over time (IPA Figure 8 style)",
    "cdf": "End-to-end latency CDF",
    "ablation": "Predictor ablation",
    "sweep": "Objective preference sweep (α, β)",
    "calibration": "Planner calibration",
    "verdict": "IPA's claims: per-seed means and 95% CIs",
}


def partial_note(data: dict) -> str:
    """What a report of an interrupted experiment says about itself ("" for a complete one)."""
    p = data.get("partial")
    if not p:
        return ""
    cal = (
        f", {p['calibration_done']} of {p['calibration_planned']} calibration points"
        if p.get("calibration_planned")
        else ""
    )
    return (
        f"The experiment was {p['reason']}: {p['runs_done']} of {p['runs_planned']} runs completed{cal}. The tables "
        "cover the completed runs only; run the experiment again for the full grid (`pipetune experiment report` "
        "draws the figures of these)."
    )


def write_report(data: dict, out: Path, figs: dict) -> None:
    exp = data["experiment"]
    grid = [r for r in data["runs"] if r["kind"] == "grid"]
    pipes = list(data.get("pipelines", {}))
    multi = len(pipes) > 1
    systems = system_table(grid)
    per_p = pipeline_table(grid)
    per_w = workload_table(grid)
    cal = calibration_summary(data.get("calibration", []))
    find = findings(systems)
    pct = {"sla_violation_rate", "drop_rate", "late_rate"}
    cols = ["system", "runs", *SUMMARY_COLS]
    pcols = [
        "pipeline",
        "system",
        "sla_violation_rate",
        "drop_rate",
        "late_rate",
        "mean_cores",
        "pas_mean",
        "latency_p99_s",
        "switches",
    ]
    wcols = (["pipeline"] if multi else []) + [
        "workload",
        "system",
        "sla_violation_rate",
        "mean_cores",
        "pas_mean",
        "latency_p99_s",
    ]
    n_runs = len(data["runs"])
    where = ", ".join(f"`{k}` ({Path(v).as_posix().split('/src/')[-1]})" for k, v in data.get("pipelines", {}).items())
    intro = (
        f"Pipelines: {where}; workloads: {', '.join(w['name'] for w in exp['workloads'])}; seeds: "
        f"{exp['seeds']}; {n_runs} simulated runs + {len(data.get('calibration', []))} calibration points in "
        f"{data['wall_s']:.1f} s wall ({data.get('grid_wall_s', data['wall_s']):.1f} s for the runs) on "
        f"{data['workers']} worker processes"
        + (
            f"; the runs used {data['grid_cpu_s']:.0f} CPU-seconds, i.e. {data['grid_cpu_s'] / data['workers']:.0f} s "
            f"on {data['workers']} dedicated cores (the machine was shared)."
            if data.get("grid_cpu_s")
            else "."
        )
    )
    defs = (
        "SLA violation = dropped + failed + completed after the SLA. Cost = mean cores held (loading and "
        "draining replicas included). Accuracy = PAS as served (product of the accuracies of the variants each "
        "request actually passed through)."
    )
    partial = partial_note(data)
    load = load_lines(data)
    verdict = verdict_lines(data, figs)
    md = [
        f"# Experiment: {exp['name']}" + (" (partial)" if partial else ""),
        "",
        *([f"**Partial results.** {partial}", ""] if partial else []),
        *load,
        exp.get("description", "").strip(),
        "",
        intro,
        "",
        defs,
        "",
        *verdict,
        "## Summary per system (mean over pipelines, workloads and seeds)",
        "",
        _md_table(systems, cols, pct),
    ]
    if find:
        md += ["## IPA's qualitative result, checked", "", *[f"- {x}" for x in find], ""]
    if multi:
        md += ["## Per pipeline", "", _md_table(per_p, pcols, pct)]
        for pipe in pipes:
            f = findings([r for r in per_p if r["pipeline"] == pipe])
            md += [f"- **{pipe}**: " + " ".join(f)] if f else []
        md += [""]
    notes = list(exp.get("notes") or []) + auto_notes(data, systems, cal)
    if notes:
        md += ["## Where and why ours differs", "", *[f"- {x}" for x in notes], ""]
    errors = data.get("errors") or []
    if errors:
        md += [
            f"## Runs that failed ({len(errors)})",
            "",
            *[
                f"- {e.get('pipeline')} / {e.get('workload')} / {e.get('system')} ({e.get('kind')}): {e['error']}"
                for e in errors
            ],
            "",
        ]
    md += ["## Per workload", "", _md_table(per_w, wcols, pct)]
    cal_text = ""
    if cal:
        cal_text = (
            f"{cal['plans']} distinct plans of the ipa system, each held fixed at its planned rate (steady "
            f"Poisson): simulated/predicted p99 median {_fmt(cal['ratio_median'])}, p90 "
            f"{_fmt(cal['ratio_p90'])}, max {_fmt(cal['ratio_max'])}; under-predicted in "
            f"{_fmt(cal['under_predicted_share'], True)} of plans; SLA violations mean "
            f"{_fmt(cal['sla_violation_rate_mean'], True)}, max {_fmt(cal['sla_violation_rate_max'], True)} "
            f"({cal['plans_over_1pct']} plans over 1%)."
        )
    for k, p in figs.items():
        base = k.split(" (")[0]
        md += [f"## {TITLES[base]}{k[len(base) :]}", "", f"![{k}]({Path(p).name})", ""]
        if base == "calibration" and cal_text:
            md += [cal_text, ""]
    (out / "report.md").write_text("\n".join(md) + "\n")
    body = [
        f"<h1>Experiment: {html.escape(exp['name'])}{' (partial)' if partial else ''}</h1>",
        *([f"<p><strong>Partial results.</strong> {html.escape(partial)}</p>"] if partial else []),
        f"<p>{html.escape(exp.get('description', ''))}</p>",
        *([f"<pre>{html.escape(chr(10).join(load))}</pre>"] if load else []),
        f"<p>{html.escape(intro)}</p><p>{html.escape(defs)}</p>",
        *([f"<pre>{html.escape(chr(10).join(verdict))}</pre>"] if verdict else []),
        "<h2>Summary per system</h2>",
        _html_table(systems, cols, pct),
    ]
    if find:
        body += ["<h2>IPA's qualitative result, checked</h2><ul>"] + [f"<li>{html.escape(x)}</li>" for x in find]
        body += ["</ul>"]
    if multi:
        body += ["<h2>Per pipeline</h2>", _html_table(per_p, pcols, pct)]
    if notes:
        body += ["<h2>Where and why ours differs</h2><ul>"] + [f"<li>{html.escape(x)}</li>" for x in notes] + ["</ul>"]
    if errors:
        body += (
            [f"<h2>Runs that failed ({len(errors)})</h2><ul>"]
            + [
                f"<li>{html.escape(str(e.get('pipeline')))} / {html.escape(str(e.get('workload')))} / "
                f"{html.escape(str(e.get('system')))}: {html.escape(e['error'])}</li>"
                for e in errors
            ]
            + ["</ul>"]
        )
    body += ["<h2>Per workload</h2>", _html_table(per_w, wcols, pct)]
    for k, p in figs.items():
        base = k.split(" (")[0]
        body += [
            f"<h2>{html.escape(TITLES[base] + k[len(base) :])}</h2>",
            f'<img src="{Path(p).name}" style="max-width:100%">',
        ]
        if base == "calibration" and cal_text:
            body += [f"<p>{html.escape(cal_text)}</p>"]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(exp['name'])}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _num(metric: str, v: float, signed: bool = False) -> str:
    if not math.isfinite(v):
        return "–" if math.isnan(v) else ("+∞" if v > 0 else "−∞")
    sign = "+" if signed else ""
    if metric == "sla_violation_rate":
        return f"{100 * v:{sign}.2f}%" if not signed else f"{100 * v:+.2f} pp"
    if metric == "pas_mean":
        return f"{v:{sign}.4f}"
    return f"{v:{sign}.1f}"


def part_text(p: dict) -> str:
    """'IPA 0.335 vs FA2-low 0.329: difference +0.0060 [+0.0040, +0.0080]' (the interval is the 95% CI over seeds)."""
    m, iv = p["metric"], p["interval"]
    head = f"{p['a']} {_num(m, p['a_mean'])} vs {p['b']} {_num(m, p['b_mean'])}"
    if p["kind"] == "ratio":
        body = f"ratio {iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]" if math.isfinite(iv.lo) else f"ratio {iv.mean:.3f}"
    else:
        body = f"difference {_num(m, iv.mean, True)}" + (
            f" [{_num(m, iv.lo, True)}, {_num(m, iv.hi, True)}]" if math.isfinite(iv.lo) else ""
        )
    return f"{head}: {body}"


def verdict_lines(data: dict, figs: dict[str, Path]) -> list[str]:
    """The report's verdict table (markdown) and what it rests on: a part that does not hold cites the
    pipeline's verdict figure (per-seed means, CIs) and its cost/accuracy-over-time grid."""
    vs = verdicts(data)
    if not vs:
        return []
    seeds = data["experiment"]["seeds"]
    lines = [
        "## Verdict: IPA's claims per pipeline",
        "",
        f"Each measured value is the mean over the {len(data['experiment']['workloads'])} workloads, paired by seed; "
        f"the bracket is its 95% Student-t confidence interval over the {len(seeds)} seeds {seeds}. A part holds "
        "when the whole interval is on the claimed side of its threshold, does not hold when none of it is, and is "
        "inconclusive when the interval straddles it; a claim holds when all its parts do. "
        f'"Well below" = at most {WELL_BELOW:.0%} of FA2-high\'s cores.',
        "",
        "| pipeline | claim | part | measured (mean [95% CI]) | part verdict | claim verdict | why (figure) |",
        "|---|---|---|---|---|---|---|",
    ]
    for pipe, claims in vs.items():

        def cited(base: str, pipe: str = pipe) -> Path | None:
            hit = next((p for k, p in figs.items() if k.startswith(base) and f"({pipe})" in k), None)
            return hit if hit is not None else figs.get(base)

        shown = [Path(f).name for f in (cited("verdict"), cited("grid")) if f is not None]
        why_link = ", ".join(f"[{n}]({n})" for n in shown)
        for c in claims:
            for i, p in enumerate(c["parts"]):
                op = {">=": "≥", "<": "<", "<=": "≤"}[p["op"]]
                rel = "−" if p["kind"] == "diff" else "/"
                cond = f"{p['what']}: {p['a']} {rel} {p['b']} {op} {p['threshold']:g}"
                why = why_link if p["verdict"] != "holds" else ""
                lines.append(
                    f"| {pipe if i == 0 and c is claims[0] else ''} | {'(' + c['claim'] + ') ' + c['text'] if i == 0 else ''} "
                    f"| {cond} | {part_text(p)} | {p['verdict']} | {c['verdict'] if i == 0 else ''} | {why} |"
                )
    lines.append("")
    tally = defaultdict(list)
    for pipe, claims in vs.items():
        for c in claims:
            tally[c["claim"]].append(f"{pipe} {c['verdict']}")
    lines += [f"- Claim ({k}): " + "; ".join(v) + "." for k, v in tally.items()] + [""]
    return lines


def load_lines(data: dict) -> list[str]:
    """The top of the report: pipelines whose windows' peak no configuration serves within the SLA, and the
    factor their load was scaled by."""
    checks = data.get("load_check") or {}
    out = []
    for pipe, c in checks.items():
        sla = (data.get("sla_s") or {}).get(pipe)
        sla_t = f" ({sla:g} s)" if sla else ""
        if c["feasible"]:
            if c["scale"] != 1.0:
                out.append(
                    f"- **{pipe}**: its load is scaled by {c['scale']:g} although its peak ({c['peak_rps']:.1f} rps) "
                    "is servable unscaled."
                )
            continue
        text = (
            f"- **{pipe}**: the windows' peak ({c['peak_rps']:.1f} rps after IPA's division by 8) cannot be served "
            f"within the SLA{sla_t} by any configuration ({c['reason']}); the largest servable factor is "
            f"{c['max_servable_scale']:.3f}. "
        )
        if c["scale"] != 1.0:
            text += (
                f"Its load is scaled by **{c['scale']:g}** (IPA's damping of 8 becomes {8 / c['scale']:g}): peak "
                f"{c['scaled_peak_rps']:.1f} rps, "
                + ("servable." if c["scaled_feasible"] else f"still not servable ({c['scaled_reason']}).")
            )
        else:
            text += "Its load is not scaled: its SLA violations there are the load's, not a policy's."
        out.append(text)
    if not out:
        if not checks:
            return []
        peak = max(c["peak_rps"] for c in checks.values())
        return [
            f"Load: every pipeline's peak ({peak:.1f} rps) has a plan within its SLA (checked with the ipa "
            "policy, any configuration within the caps); no load is scaled.",
            "",
        ]
    return ["## Load that no configuration serves", "", *out, ""]
