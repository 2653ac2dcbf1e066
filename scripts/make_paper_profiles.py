#!/usr/bin/env python
"""Make the profile packs of IPA's five paper pipelines: `python scripts/make_paper_profiles.py`.

One reproducible command. It

1. writes `src/pipetune/examples/paper/<pipeline>/pipeline.yaml` for video, audio-qa, audio-sent, sum-qa and
   nlp: the stages and variants of IPA (JSys 2024), the published accuracies as fractions, IPA's SLA and
   objective weights (all copied here, so the product never needs ../shared);
2. measures every (variant, input shape) once, on 1 and 2 cores, in a fresh subprocess per (variant, cores)
   pinned to those CPUs (the rules of `pipetune.profiler`: affinity and thread pools set before the model's
   libraries load, a warm-up batch, back-to-back timed batches, p50/p99/mean, saturation throughput, load time,
   peak RSS). Its own small loop rather than `pipetune.profiler.measure_variant` because the time budget needs
   an adaptive stop: batch sizes 1 and 2 always, 4 and 8 while one batch is predicted (from the cells measured
   so far) to take at most `--max-batch-s` seconds, 16 only where a batch of 8 takes under 1 s. Raw per-batch latencies go to `src/pipetune/examples/paper/measurements.json`, which
   also makes the run resumable (a (variant, shape, cores, batch) already there is not measured again);
3. writes each pipeline's `profile.csv` (pipetune.profiles.ProfileTable): measured cells as measured, every
   other cell of batches {1,2,4,8,16} x cores {1,2,4,8} from the fitted scaling law of
   `pipetune.profiles.VariantProfile`, marked `fitted`, and a header saying where every number came from;
4. plots latency and throughput against batch size per variant into docs/figures/paper-<pipeline>.png and
   writes each pipeline's README.md with the table (accuracy, p99 at batch 1, throughput at batch 1 and 8).

`--no-measure` rebuilds 1, 3 and 4 from the committed measurements without running any model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from pipetune.errors import PipetuneError  # noqa: E402
from pipetune.models.paper import InputShape, shape_params  # noqa: E402
from pipetune.profiles import FALLING_TOLERANCE, ProfileRow, ProfileTable, VariantProfile  # noqa: E402

PACK_DIR = ROOT / "src" / "pipetune" / "examples" / "paper"
FIG_DIR = ROOT / "docs" / "figures"
RAW_FILE = PACK_DIR / "measurements.json"
MEASURED_BATCHES = [1, 2, 4, 8, 16]
MEASURED_CORES = [1, 2]
TABLE_BATCHES = [1, 2, 4, 8, 16]
TABLE_CORES = [1, 2, 4, 8]
ADAPTER = "pipetune.models.paper:PaperModel"

# ---- IPA's facts (../shared/reference/ipa.yaml), copied so that the product runs without ../shared ----------
# Accuracies in percent as published: mAP (detection), ImageNet top-1, 100-WER, SQuAD2 F1, SST-2 / sentiment
# accuracy, ROUGE-L, language-ID accuracy, BLEU. Stored in the YAML as fractions.
S2T = {"s2t-small-librispeech": 58.72, "s2t-medium-librispeech": 64.88, "s2t-large-librispeech": 66.74}
QA = {"roberta-base-squad2": 82.91, "xlm-roberta-base-squad2": 77.14}
SUM = {
    "distilbart-xsum-1-1": 32.26,
    "distilbart-xsum-12-1": 33.37,
    "distilbart-xsum-6-6": 35.73,
    "distilbart-xsum-12-3": 36.39,
    "distilbart-xsum-9-6": 36.61,
    "distilbart-xsum-12-6": 36.99,
}

# Input shapes: what one item of each stage is (fixed, so that latency is comparable across variants).
IMG640 = InputShape("image", image_size=640)
IMG224 = InputShape("image", image_size=224)
AUDIO10S = InputShape("fbank", frames=1000, features=80, new_tokens=40)
QA128 = InputShape("tokens", tokens=128)
SENT64 = InputShape("tokens", tokens=64)
DOC256_SUM32 = InputShape("tokens", tokens=256, new_tokens=32)
TXT64 = InputShape("tokens", tokens=64)
TXT64_TRANS64 = InputShape("tokens", tokens=64, new_tokens=64)
TXT64_SUM32 = InputShape("tokens", tokens=64, new_tokens=32)

PIPELINES: dict[str, dict] = {
    "video": {
        "description": "object detection on 640x640 frames, then ImageNet classification of each crop "
        "(one crop per frame, resized to 224x224)",
        "sla": 6.89,
        "objective": {"alpha": 2, "beta": 1, "gamma": 1.0e-6},
        "objective_note": "IPA's video weights (alpha 2, beta 1, gamma 1e-6)",
        "stages": [
            (
                "crop",
                "detection mAP (YOLOv5 as published; D-FINE stand-in is measured)",
                IMG640,
                {"yolov5n": 45.7, "yolov5s": 56.8, "yolov5m": 64.1, "yolov5l": 67.3, "yolov5x": 68.9},
            ),
            (
                "classification",
                "ImageNet top-1",
                IMG224,
                {"resnet18": 69.75, "resnet34": 73.31, "resnet50": 76.13, "resnet101": 77.37, "resnet152": 78.31},
            ),
        ],
    },
    "audio-qa": {
        "description": "speech recognition of 10 s utterances, then extractive question answering on the text",
        "sla": 9.23,
        "objective": {"alpha": 10, "beta": 0.5, "gamma": 1.0e-6},
        "objective_note": "IPA's audio-qa weights (alpha 10, beta 0.5); gamma not published, 1e-6",
        "stages": [("audio", "100 - WER (LibriSpeech)", AUDIO10S, S2T), ("nlp-qa", "SQuAD2 F1", QA128, QA)],
    },
    "audio-sent": {
        "description": "speech recognition of 10 s utterances, then sentiment analysis of the text",
        "sla": 9.42,
        "objective": {"alpha": 10, "beta": 0.5, "gamma": 1.0e-6},
        "objective_note": "IPA publishes no audio-sent weights; audio-qa's are used (alpha 10, beta 0.5)",
        "stages": [
            ("audio", "100 - WER (LibriSpeech)", AUDIO10S, S2T),
            (
                "nlp-sent",
                "sentiment accuracy",
                SENT64,
                {
                    "distilbert-sst2": 91.1,
                    "bert-sentiment": 79.90,
                    "distilbert-sentiment": 79.63,
                    "roberta-sentiment": 83.03,
                },
            ),
        ],
    },
    "sum-qa": {
        "description": "summarise a 256-token news article into 32 tokens, then answer a question on it",
        "sla": 3.84,
        "objective": {"alpha": 10, "beta": 0.5, "gamma": 1.0e-6},
        "objective_note": "IPA's sum-qa weights (alpha 10, beta 0.5); gamma not published, 1e-6",
        "stages": [("nlp-sum", "ROUGE-L (XSum)", DOC256_SUM32, SUM), ("nlp-qa", "SQuAD2 F1", QA128, QA)],
    },
    "nlp": {
        "description": "identify the language of a 64-token text, translate it French->English, summarise it",
        "sla": 17.61,
        "objective": {"alpha": 10, "beta": 0.5, "gamma": 1.0e-6},
        "objective_note": "IPA's nlp weights (alpha 10, beta 0.5); gamma not published, 1e-6",
        "stages": [
            ("nlp-li", "language-ID accuracy", TXT64, {"xlm-roberta-base-language-id": 99.59}),
            ("nlp-trans", "BLEU (fr->en)", TXT64_TRANS64, {"opus-mt-fr-en": 33.1, "opus-mt-tc-big-fr-en": 34.4}),
            ("nlp-sum", "ROUGE-L (XSum)", TXT64_SUM32, SUM),
        ],
    },
}


def cell_key(variant: str, shape: InputShape) -> str:
    return f"{variant}@{shape.key()}"


# ---- 1. specs --------------------------------------------------------------------------------------------------
def pipeline_dict(name: str) -> dict:
    p = PIPELINES[name]
    stages = []
    for stage, _metric, shape, accs in p["stages"]:
        stages.append(
            {
                "name": stage,
                "variants": [
                    {
                        "name": v,
                        "accuracy": round(a / 100.0, 6),
                        "model": {"adapter": ADAPTER, "params": {"variant": v, "shape": shape_params(shape)}},
                    }
                    for v, a in accs.items()
                ],
            }
        )
    names = [s[0] for s in p["stages"]]
    return {
        "name": f"ipa-{name}",
        "description": p["description"],
        "sla": {"seconds": p["sla"], "percentile": 99},
        "objective": {"accuracy": "pas", **p["objective"]},
        "caps": {"batch_sizes": TABLE_BATCHES, "cores": TABLE_CORES, "max_replicas": 100},
        "profile": "profile.csv",
        "stages": stages,
        "edges": [{"from": a, "to": b} for a, b in zip(names, names[1:])],
    }


def write_spec(name: str) -> Path:
    p = PIPELINES[name]
    head = [
        f"# IPA's {name} pipeline (Ghafouri et al., JSys 2024), written by scripts/make_paper_profiles.py.",
        "# Accuracies: published in the paper, as fractions; per stage the metric is:",
        *[f"#   {stage}: {metric}" for stage, metric, _, _ in p["stages"]],
        f"# SLA: IPA's {p['sla']} s for this pipeline, bound here at p99 (IPA counted only dropped requests).",
        f"# Objective: {p['objective_note']}; accuracy method pas (IPA v3: product of stage accuracies).",
        "# IPA searched batch sizes up to 8 for video and 1 for the others, replicas up to 100, cores fixed per",
        "# variant; pipetune searches the caps below. Models: random-weight builds of the paper's architectures",
        "# (pipetune.models.paper); profile.csv says how each number was obtained.",
    ]
    text = (
        "\n".join(head)
        + "\n"
        + yaml.safe_dump(pipeline_dict(name), sort_keys=False, width=120, default_flow_style=None)
    )
    path = PACK_DIR / name / "pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- 2. measurement ----------------------------------------------------------------------------------------------
def load_raw() -> dict:
    if RAW_FILE.exists():
        return json.loads(RAW_FILE.read_text())
    return {
        "about": "raw per-batch latencies behind the paper profile packs; see scripts/make_paper_profiles.py",
        "runs": [],
        "cells": {},
    }


def save_raw(raw: dict) -> None:
    RAW_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = RAW_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw, indent=1, sort_keys=True))
    os.replace(tmp, RAW_FILE)


def unique_work(only: list[str]) -> list[tuple[str, InputShape]]:
    seen: dict[str, tuple[str, InputShape]] = {}
    for name in only:
        for _, _, shape, accs in PIPELINES[name]["stages"]:
            for v in accs:
                seen.setdefault(cell_key(v, shape), (v, shape))
    return list(seen.values())


def predicted_batch_s(cells: dict, b: int) -> float:
    """Extrapolate a batch's time from the measured cells (affine in the batch size through the two largest)."""
    bs = sorted(int(k) for k in cells)
    mean = {x: cells[str(x)]["mean_s"] for x in bs}
    if len(bs) == 1:
        return mean[bs[0]] * b / bs[0]
    b1, b2 = bs[-2], bs[-1]
    slope = max(0.0, (mean[b2] - mean[b1]) / (b2 - b1))
    return mean[b2] + slope * (b - b2)


def worker(job: dict) -> None:
    """The measuring process: pin CPUs and thread pools, build the model, measure batch sizes in ascending order.

    Runs as `make_paper_profiles.py --worker JSON` in a fresh interpreter. Prints one JSON line per cell.
    Batches 1 and 2 are always measured; a larger one only while its batch time, extrapolated from the cells
    measured so far, stays within `max_batch_s`; 16 only where a batch of 8 took under 1 s.
    """
    import resource

    cores = int(job["cores"])
    cpus = job["cpus"]
    os.sched_setaffinity(0, cpus)
    from pipetune.models.base import pin_threads

    pin_threads(cores)  # before transformers is imported (PaperModel imports it in load())
    from pipetune.models.paper import PaperModel

    t = time.perf_counter()
    model = PaperModel(job["variant"], job["shape"])
    model.load()
    load_s = time.perf_counter() - t
    pool = model.sample_inputs(max(job["batches"]))
    known = {int(b): m for b, m in job.get("known_means", {}).items()}
    for b in job["batches"]:
        if b > 2:
            if known and predicted_batch_s({str(k): {"mean_s": v} for k, v in known.items()}, b) > job["max_batch_s"]:
                break
            if b == 16 and not known.get(8, 99.0) < 1.0:
                break
        if str(b) in job.get("skip", []):
            continue
        batch = pool[:b]
        model.predict(batch)  # warm-up: lazy init, allocator growth
        lat: list[float] = []
        cpu: list[float] = []  # process CPU seconds per batch: wall >> cpu/cores means the VM was contended
        start = time.perf_counter()
        while True:
            t, tc = time.perf_counter(), time.process_time()
            out = model.predict(batch)
            lat.append(time.perf_counter() - t)
            cpu.append(time.process_time() - tc)
            elapsed = time.perf_counter() - start
            if len(out) != b:
                raise RuntimeError(f"predict returned {len(out)} outputs for a batch of {b}")
            if len(lat) >= job["max_batches"] or (len(lat) >= job["min_batches"] and elapsed >= job["cell_budget_s"]):
                break
        wall = time.perf_counter() - start
        lat_sorted = sorted(lat)

        def pct(q: float, lat_sorted: list = lat_sorted) -> float:  # linear interpolation, as numpy's default
            pos = (len(lat_sorted) - 1) * q / 100.0
            lo = int(pos)
            hi = min(lo + 1, len(lat_sorted) - 1)
            return lat_sorted[lo] + (lat_sorted[hi] - lat_sorted[lo]) * (pos - lo)

        mean = sum(lat) / len(lat)
        known[b] = mean
        cell = {
            "batch": b,
            "mean_s": mean,
            "p50_s": pct(50),
            "p95_s": pct(95),
            "p99_s": pct(99),
            "throughput_rps": b * len(lat) / wall,
            "load_time_s": load_s,
            "memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "n_batches": len(lat),
            "wall_s": wall,
            "cpus": sorted(os.sched_getaffinity(0)),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "latencies_s": [round(x, 6) for x in lat],
            "cpu_mean_s": sum(cpu) / len(cpu),
        }
        print(json.dumps(cell), flush=True)


def run_worker(job: dict, on_cell, timeout_s: float) -> str | None:  # noqa: ANN001
    """Start a measuring process for one (variant, shape, cores); call on_cell per cell; return an error or None."""
    import subprocess

    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        **{v: str(job["cores"]) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
    }
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    t0 = time.perf_counter()
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("{"):
            on_cell(json.loads(line))
        if time.perf_counter() - t0 > timeout_s:
            proc.kill()
            proc.wait()
            return f"ran past {timeout_s:.0f} s and was killed"
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    if rc != 0:
        lines = [x for x in err.strip().splitlines() if x.strip()]
        said = [x for x in lines if x.startswith("error:")] or lines[-2:]
        return f"exited with code {rc}: {' | '.join(said)}"
    return None


def measure(
    only: list[str],
    budget_s: float,
    cell_budget_s: float,
    max_batch_s: float,
    console: Console,
    max_batch_s_multicore: float | None = None,
    cores_list: list[int] | None = None,
    min_batches: int = 2,
) -> None:
    raw = load_raw()
    work = unique_work(only)
    run = {
        "started": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine_line(),
        "command": "python scripts/make_paper_profiles.py " + " ".join(sys.argv[1:]),
        "cell_budget_s": cell_budget_s,
        "min_batches": min_batches,
        "max_batch_s": max_batch_s,
        "loadavg_1m_at_start": os.getloadavg()[0],
        "max_batch_s_multicore": max_batch_s_multicore if max_batch_s_multicore is not None else max_batch_s,
    }
    raw["runs"].append(run)
    t0 = time.perf_counter()
    failures: list[str] = []
    cpus_all = sorted(os.sched_getaffinity(0))

    prog = Progress(
        TextColumn("[bold]paper profiles[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with prog:
        passes = cores_list or MEASURED_CORES
        task = prog.add_task("", total=len(passes) * len(work))
        # Pass 1 profiles every variant on one core, pass 2 on two: a budget that runs out leaves every variant
        # profiled and only 2-core cells to the fitted law (which then assumes no gain from a second core).
        for cores in passes:
            for v, shape in work:
                prog.advance(task)
                key = cell_key(v, shape)
                have = raw["cells"].get(key, {}).get(str(cores), {})
                if cores > len(cpus_all):
                    continue
                done = have and (len(have) >= 5 or raw.get("complete", {}).get(f"{key}/{cores}"))
                if done:
                    continue
                if time.perf_counter() - t0 > budget_s:
                    console.print(f"[yellow]budget spent[/]: {key} on {cores} core(s) left to the fitted law")
                    continue
                prog.update(task, description=f"{key} on {cores} core(s)")
                job = {
                    "variant": v,
                    "shape": shape_params(shape),
                    "cores": cores,
                    "cpus": cpus_all[:cores],
                    "batches": MEASURED_BATCHES,
                    "skip": sorted(have),
                    "cell_budget_s": cell_budget_s,
                    "min_batches": min_batches,
                    "max_batches": 50,
                    "max_batch_s": max_batch_s if cores == 1 else run["max_batch_s_multicore"],
                    "known_means": {b: c["mean_s"] for b, c in have.items()},
                }

                def save(cell: dict, _key: str = key, _cores: int = cores) -> None:
                    cell["run"] = len(raw["runs"]) - 1  # which run measured it (runs[i] says how)
                    raw["cells"].setdefault(_key, {}).setdefault(str(_cores), {})[str(cell.pop("batch"))] = cell
                    save_raw(raw)

                err = run_worker(job, save, timeout_s=900)
                if err:
                    failures.append(f"{key} on {cores} core(s): {err}")
                    console.print(f"[red]failed[/] {key} on {cores} core(s): {err}", highlight=False)
                else:
                    raw.setdefault("complete", {})[f"{key}/{cores}"] = True
                    save_raw(raw)
    run["finished"] = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    run["wall_s"] = round(time.perf_counter() - t0, 1)
    run["loadavg_1m_at_end"] = os.getloadavg()[0]
    run["failures"] = failures
    save_raw(raw)
    console.print(f"measured for {run['wall_s']:.0f} s; {len(failures)} failure(s)")


def machine_line() -> str:
    from pipetune.profiler.pipeline import cpu_name

    cpu = cpu_name()
    import torch
    import transformers

    return (
        f"{cpu}, {os.cpu_count()} vCPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )


# ---- 3. tables ---------------------------------------------------------------------------------------------------
def measured_rows(raw: dict, variant: str, shape: InputShape) -> list[ProfileRow]:
    rows = []
    for cores, cells in raw["cells"].get(cell_key(variant, shape), {}).items():
        for b, c in cells.items():
            rows.append(
                ProfileRow(
                    variant=variant,
                    batch=int(b),
                    cores=int(cores),
                    latency_mean_s=c["mean_s"],
                    latency_p50_s=c["p50_s"],
                    latency_p99_s=max(c["p99_s"], c["p50_s"]),
                    throughput_rps=c["throughput_rps"],
                    load_time_s=c["load_time_s"],
                    memory_mb=c["memory_mb"],
                    source="measured",
                )
            )
    return rows


def contended(rows: list[ProfileRow]) -> list[ProfileRow]:
    """Multi-core cells measured SLOWER than the same batch on one core: the VM's other jobs, not the model.

    More cores never slow a dense network down on dedicated cores; on this shared VM a multi-threaded batch
    stalls whenever one of its threads is descheduled. Such cells stay in measurements.json but are left out
    of the table, so the fitted law (which then sees no multi-core gain) fills them conservatively.
    """
    one = {r.batch: r.latency_mean_s for r in rows if r.cores == 1}
    return [r for r in rows if r.cores > 1 and r.batch in one and r.latency_mean_s > one[r.batch]]


def pack_cells(raw: dict, name: str | None = None) -> list[tuple[str, int, int, dict]]:
    """(variant, cores, batch, cell) of every measured cell, of one pipeline's variant-shapes or of all."""
    keys = {cell_key(v, shape) for pn, p in PIPELINES.items() if name in (None, pn) for _, _, shape, accs in
            p["stages"] for v in accs}  # fmt: skip
    out = []
    for key in sorted(keys):
        for cores, cells in raw["cells"].get(key, {}).items():
            for b, c in cells.items():
                out.append((key.split("@")[0], int(cores), int(b), c))
    return out


def conditions(cells: list[tuple[str, int, int, dict]]) -> dict:
    """What the machine was like while `cells` were measured: the recorded load average and CPU/wall ratio.

    cpu/wall = the measuring process's CPU time per batch over (wall time x cores): 1.0 means it had its
    cores to itself; the shared runs of 2026-11-28 recorded ~0.3. The load average counts the measuring
    process's own threads (about 1 on 1 core, 2 on 2), so on a quiet machine it stays near the core count.
    """
    import statistics

    load = [c["loadavg_1m"] for _, _, _, c in cells if "loadavg_1m" in c]
    ratio = [c["cpu_mean_s"] / c["mean_s"] / k for _, k, _, c in cells if c.get("cpu_mean_s") and c["mean_s"] > 0]
    nb = [c["n_batches"] for _, _, _, c in cells]
    spread = [c["p99_s"] / c["p50_s"] for _, _, _, c in cells if c["p50_s"] > 0]
    return {
        "p99_over_p50_median": statistics.median(spread) if spread else float("nan"),
        "p99_over_p50_max": max(spread, default=float("nan")),
        "cells": len(cells),
        "runs": sorted({c["run"] for _, _, _, c in cells if "run" in c}),
        "load_min": min(load, default=float("nan")),
        "load_max": max(load, default=float("nan")),
        "cpu_wall_median": statistics.median(ratio) if ratio else float("nan"),
        "cpu_wall_min": min(ratio, default=float("nan")),
        "batches_min": min(nb, default=0),
        "batches_median": statistics.median(nb) if nb else 0,
    }


def describe_conditions(k: dict) -> str:
    return (
        f"{k['cells']} cells; 1-minute load average {k['load_min']:.2f}-{k['load_max']:.2f} (the measuring "
        f"process included); process CPU / (wall x cores) median {k['cpu_wall_median']:.3f}, lowest "
        f"{k['cpu_wall_min']:.3f}; timed batches per cell {k['batches_min']}-{k['batches_median']:g} (min-median); "
        f"p99/p50 per cell median {k['p99_over_p50_median']:.3f}, largest {k['p99_over_p50_max']:.3f} (a tight "
        "spread: few batches still give a stable p99)"
    )


def speedups(raw: dict, variant: str, shape: InputShape) -> dict[int, float]:
    """Measured 1-core mean / 2-core mean per batch where both cells exist (>1: the model parallelises)."""
    cells = raw["cells"].get(cell_key(variant, shape), {})
    one, two = cells.get("1", {}), cells.get("2", {})
    return {int(b): one[b]["mean_s"] / two[b]["mean_s"] for b in one if b in two and two[b]["mean_s"] > 0}


def superseded_p99(raw: dict, variant: str, shape: InputShape, batch: int = 1, cores: int = 1) -> float | None:
    """The p99 the previous pack measured for this cell (None where it measured none)."""
    c = raw.get("superseded", {}).get("cells", {}).get(cell_key(variant, shape), {}).get(str(cores), {})
    cell = c.get(str(batch))
    return None if cell is None else max(cell["p99_s"], cell["p50_s"])


def falling_note(raw: dict, name: str) -> list[str]:
    """Header lines flagging measured cells whose throughput is lower than a smaller batch's on the same cores."""
    seen = []
    for v, shape in {(v, shape) for _, _, shape, accs in PIPELINES[name]["stages"] for v in accs}:
        for cores, cells in sorted(raw["cells"].get(cell_key(v, shape), {}).items()):
            thr = sorted((int(b), c["throughput_rps"]) for b, c in cells.items())
            for (b1, t1), (b2, t2) in zip(thr, thr[1:]):
                if t2 * (1 + FALLING_TOLERANCE) < t1:  # the rule profiles.batch_ceilings applies
                    seen.append(f"{v} b{b1}->b{b2} on {cores}c ({t1:.3g} -> {t2:.3g} items/s)")
    if not seen:
        return ["  Throughput rises or stays flat with the batch in every measured cell."]
    return [
        f"  FLAGGED: throughput falls with the batch (by > 2%) in {len(seen)} measured step(s): "
        + "; ".join(sorted(seen)),
        "  (on a quiet machine with CPU/wall ~1 and on both core counts alike: the model on this CPU, not noise).",
        "  Kept as measured; fitted cells of larger batches are held to the per-item time at the largest measured",
        "  batch (pipetune.profiles.batch_ceilings), so no fitted cell claims the gain the measurements contradict.",
    ]


def build_table(name: str, raw: dict) -> tuple[ProfileTable, list[str]]:
    p = PIPELINES[name]
    table = ProfileTable()
    missing = []
    n_dropped = 0
    for _, _, shape, accs in p["stages"]:
        for v in accs:
            rows = measured_rows(raw, v, shape)
            bad = contended(rows)
            n_dropped += len(bad)
            rows = [r for r in rows if r not in bad]
            if not rows:
                missing.append(cell_key(v, shape))
                continue
            vp = VariantProfile(v, rows)
            for r in rows:
                table.upsert(r)
            for b in TABLE_BATCHES:
                for c in TABLE_CORES:
                    if not table.has(v, b, c):
                        table.upsert(vp.row(b, c))
    runs = raw.get("runs", [])
    n_meas = sum(1 for r in table.rows if r.source == "measured")
    table.header = [
        f"Profile pack of IPA's {name} pipeline (see README.md beside this file). Made by:",
        "  python scripts/make_paper_profiles.py   (measures, then writes this file; --no-measure rewrites it from",
        "  src/pipetune/examples/paper/measurements.json, which holds every measured cell and its batch count)",
        "Runs: "
        + "; ".join(
            f"{r['started']} to {r.get('finished', 'interrupted (resumed by the next run)')}"
            f" (`{r['command'].removeprefix('python scripts/make_paper_profiles.py ')}`, load "
            f"average {r.get('loadavg_1m_at_start', 0):.1f} at start)"
            for r in runs
        ),
        "Machine: " + (runs[-1]["machine"] if runs else "(no measurement yet)"),
        "Models: random-weight builds of the paper's architectures from transformers configurations "
        "(pipetune.models.paper); latency does not depend on weight values. yolov5* rows are D-FINE n/s/m/l/x,",
        "  the closest detector family transformers builds (YOLOv5 itself cannot be built there).",
        "Inputs per item: " + "; ".join(f"{stage}: {shape.describe()}" for stage, _, shape, _ in p["stages"]) + ".",
        "Generative models decode greedily (1 beam) exactly the stated number of new tokens.",
        f"MEASURED rows ({n_meas}): one fresh subprocess per (variant, cores) pinned to that many CPUs",
        "  (sched_setaffinity + OMP/MKL/OpenBLAS/torch thread limits); 1 warm-up batch, then back-to-back batches for",
        "  the run's per-cell budget (--cell-budget, seconds; at least --min-batches, at most 50 batches);"
        " latency_* = per-batch wall time (mean, p50, p99",
        "  by linear interpolation: with few batches p99 is close to the maximum); throughput_rps = items / wall",
        "  time with the model kept busy (saturation, one replica); load_time_s = build + random init; memory_mb =",
        "  peak RSS of the measuring process. Batches 1, 2 always; 4, 8 where one batch was predicted to take",
        "  at most --max-batch-s seconds; 16 where a batch of 8 took < 1 s. Cores 1 and 2 only (the VM has 2).",
        "  Conditions recorded with the cells: " + describe_conditions(conditions(pack_cells(raw, name))) + ".",
        *falling_note(raw, name),
        f"  {n_dropped} measured 2-core cell(s) of this pipeline were SLOWER than the same batch on 1 core (contention,",
        "  not the model) and are left out (kept in measurements.json); those cells are fitted instead.",
        "FITTED rows: every other cell of batches {1,2,4,8,16} x cores {1,2,4,8} from pipetune.profiles.VariantProfile:",
        "  service_time(b, c) = (a + k*b) * (s + (1-s)/c), fitted per variant to its measured rows (relative least",
        "  squares, a, k >= 0, s in [0, 1]); p50/p99 = fitted mean x the variant's median measured p50/mean and",
        "  p99/mean ratios; throughput = b / mean. Cores 4 and 8 are always fitted (Amdahl extrapolation).",
    ]
    return table, missing


# ---- 4. plots and READMEs ---------------------------------------------------------------------------------------
def plot(name: str, table: ProfileTable) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = PIPELINES[name]["stages"]
    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 3.6 * len(stages)), squeeze=False)
    for i, (stage, _, shape, accs) in enumerate(stages):
        ax_l, ax_t = axes[i]
        for j, v in enumerate(accs):
            color = plt.cm.viridis(j / max(1, len(accs) - 1))
            for c, style in ((1, "-"), (2, "--")):
                rows = sorted((r for r in table.rows_for(v) if r.cores == c), key=lambda r: r.batch)
                if not rows:
                    continue
                b = [r.batch for r in rows]
                lab = f"{v} ({c} core{'s' if c > 1 else ''})"
                ax_l.plot(b, [r.latency_p99_s for r in rows], style, color=color, lw=1, label=lab)
                ax_t.plot(b, [r.throughput_rps for r in rows], style, color=color, lw=1, label=lab)
                for ax, ys in ((ax_l, [r.latency_p99_s for r in rows]), (ax_t, [r.throughput_rps for r in rows])):
                    for r, y in zip(rows, ys):
                        measured = r.source == "measured"  # on top: fitted 2-core points often coincide
                        ax.plot(
                            r.batch,
                            y,
                            "o",
                            color=color,
                            ms=5,
                            mfc=color if measured else "white",
                            zorder=4 if measured else 3,
                        )
        for ax, ylab in ((ax_l, "p99 latency per batch (s)"), (ax_t, "saturation throughput (items/s)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(ylab)
            ax.set_title(f"{stage}: {shape.describe()}", fontsize=8)
            ax.grid(alpha=0.3, which="both")
        ax_t.legend(fontsize=6, ncol=2, loc="best")
    fig.suptitle(
        f"IPA {name} pipeline, random-weight models on this 2-core VM "
        "(filled = measured, hollow = fitted; solid 1 core, dashed 2 cores)",
        fontsize=9,
    )
    fig.tight_layout()
    out = FIG_DIR / f"paper-{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_rows(name: str, table: ProfileTable, raw: dict) -> list[dict]:
    out = []
    for stage, _, shape, accs in PIPELINES[name]["stages"]:
        vps = {v: VariantProfile(v, table.rows_for(v)) for v in accs if table.rows_for(v)}
        for v, a in accs.items():
            if v not in vps:
                continue
            r1, r8 = vps[v].row(1, 1), vps[v].row(8, 1)
            out.append(
                {
                    "stage": stage,
                    "variant": v,
                    "accuracy": a / 100.0,
                    "p99_b1_s": r1.latency_p99_s,
                    "thr_b1": r1.throughput_rps,
                    "thr_b8": r8.throughput_rps,
                    "b8_fitted": r8.source == "fitted",
                    "load_s": r1.load_time_s,
                    "mem_mb": r1.memory_mb,
                    "speedup": speedups(raw, v, shape),
                    "was_p99_b1_s": superseded_p99(raw, v, shape),
                    "measured": sum(1 for r in table.rows_for(v) if r.source == "measured"),
                    "cells": len(table.rows_for(v)),
                }
            )
    return out


def markdown_table(rows: list[dict]) -> str:
    """One row per variant, 1 core per replica; 2c/1c = measured speed-up from a second core; "before" = the
    p99 the previous (shared-machine) pack had for batch 1 on 1 core."""
    lines = [
        "| stage | variant | accuracy | p99 b=1 (s) | before (s) | throughput b=1 (items/s) | throughput b=8 "
        "(items/s) | 2c/1c b=1 | 2c/1c b=8 | cells measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(r: dict, b: int) -> str:
        x = r["speedup"].get(b)
        return "-" if x is None else f"{x:.2f}"

    for r in rows:
        mark = " (fitted)" if r["b8_fitted"] else ""
        was = "-" if r["was_p99_b1_s"] is None else f"{r['was_p99_b1_s']:.3g}"
        lines.append(
            f"| {r['stage']} | {r['variant']} | {r['accuracy']:.4f} | {r['p99_b1_s']:.3g} | {was} | "
            f"{r['thr_b1']:.3g} | {r['thr_b8']:.3g}{mark} | {ratio(r, 1)} | {ratio(r, 8)} | "
            f"{r['measured']} of {r['cells']} |"
        )
    return "\n".join(lines)


def write_readme(name: str, rows: list[dict]) -> Path:
    p = PIPELINES[name]
    lines = [
        f"# IPA's `{name}` pipeline — profile pack",
        "",
        f"{p['description'][0].upper() + p['description'][1:]}. Stages: "
        + " → ".join(f"`{s[0]}`" for s in p["stages"])
        + f". SLA {p['sla']} s (IPA's), bound at p99.",
        "",
        "* `pipeline.yaml` — the spec: IPA's variants with their published accuracies as fractions "
        f"({', '.join(f'{s[0]}: {s[1]}' for s in p['stages'])}), IPA's SLA, objective: {p['objective_note']}.",
        "* `profile.csv` — latency/throughput per (variant, batch, cores); its header says where every number "
        "came from. Rows marked `measured` were run here; `fitted` rows come from the documented scaling law.",
        f"* plot: `docs/figures/paper-{name}.png` (p99 latency and saturation throughput against batch size).",
        "",
        "The models are the paper's architectures built from `transformers` configurations with random weights "
        "(`pipetune.models.paper`): real shapes and costs, meaningless outputs. Inputs per item: "
        + "; ".join(f"`{s[0]}`: {s[2].describe()}" for s in p["stages"])
        + ".",
    ]
    if name == "video":
        lines += [
            "",
            "**YOLOv5 is not what runs.** `transformers` cannot build YOLOv5, so the `yolov5n..x` variants are "
            "D-FINE nano/small/medium/large/x-large (4 / 10 / 19 / 31 / 62 M parameters, about 7 / 25 / 57 / 91 / "
            "202 GFLOPs at 640x640; YOLOv5 n..x: 1.9 / 7.2 / 21 / 46 / 86 M, 4.5 / 16.5 / 49 / 109 / 205 GFLOPs). "
            "The names and mAPs stay YOLOv5's so the accuracy side matches the paper; latencies are D-FINE's.",
        ]
    lines += [
        "",
        "Reproduce: `python scripts/make_paper_profiles.py --only " + name + "` (re-uses measured cells; "
        "`--no-measure` only rewrites the files). Serve or re-profile a variant with its `model:` mapping "
        "(`pipetune profile pipeline.yaml`).",
        "",
        "## Variants (1 core per replica)",
        "",
        markdown_table(rows),
        "",
        'Throughput is items/s one replica sustains with back-to-back batches. "(fitted)" marks a batch-8 '
        "cell that was too slow to measure within the time budget and comes from the fitted scaling law. "
        "2c/1c: measured mean batch time on 1 core over that on 2 cores (-: a cell not measured). before: the "
        "batch-1 p99 of the previous pack, measured on 2026-11-28 while other jobs shared the 2 vCPUs "
        "(load average 4-8); cells measured: of the variant's rows in `profile.csv` (batches {1,2,4,8,16} x "
        "cores {1,2,4,8}), the rest fitted.",
    ]
    path = PACK_DIR / name / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def pack_summary(tables: dict[str, list[dict]], raw: dict) -> str:
    """Per pack: share of cells measured, 2c/1c speed-up range over its variants, conditions (docs/profiles.md)."""
    import statistics

    lines = [
        "| pack | cells measured | 2c/1c at b=1: min / median / max | 2c/1c at b=8: min / median / max | "
        "variants faster on 2 cores (b=1) | load average | CPU / (wall x cores), median (min) |",
        "|---|---|---|---|---|---|---|",
    ]

    def span(xs: list[float]) -> str:
        return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}" if xs else "-"

    for name, rows in tables.items():
        meas, total = sum(r["measured"] for r in rows), sum(r["cells"] for r in rows)
        s1 = [r["speedup"][1] for r in rows if 1 in r["speedup"]]
        s8 = [r["speedup"][8] for r in rows if 8 in r["speedup"]]
        k = conditions(pack_cells(raw, name))
        lines.append(
            f"| {name} | {meas} of {total} ({meas / total:.0%}) | {span(s1)} | {span(s8)} | "
            f"{sum(x > 1 for x in s1)} of {len(s1)} | {k['load_min']:.2f}-{k['load_max']:.2f} | "
            f"{k['cpu_wall_median']:.3f} ({k['cpu_wall_min']:.3f}) |"
        )
    return "\n".join(lines)


def write_index(tables: dict[str, list[dict]], raw: dict) -> Path:
    """src/pipetune/examples/paper/README.md: what the packs are, how they were made, every variant's figures."""
    runs = raw.get("runs", [])
    last = runs[-1] if runs else {}
    n_dropped = sum(
        len(contended(measured_rows(raw, v, shape)))
        for p in PIPELINES.values()
        for _, _, shape, accs in p["stages"]
        for v in accs
    )
    lines = [
        "# Profile packs of IPA's five paper pipelines",
        "",
        "One folder per pipeline of IPA (Ghafouri et al., JSys 2024): `video`, `audio-qa`, `audio-sent`, `sum-qa`, "
        "`nlp`, each with `pipeline.yaml` (IPA's stages, variants, published accuracies as fractions, SLA and "
        "objective weights), `profile.csv` (measured here + fitted) and a README. `measurements.json` keeps every "
        "measured cell (per-batch latencies, batch counts, CPUs, load average) behind the CSVs.",
        "",
        "Made by one command: `python scripts/make_paper_profiles.py` (resumable; `--no-measure` rewrites the "
        "files from `measurements.json` without running a model). Plots: `docs/figures/paper-<pipeline>.png`.",
        "",
        "How the numbers were obtained:",
        "",
        "* **Models**: the paper's architectures built from `transformers` configurations with random weights "
        "(`pipetune.models.paper`), sizes matching the real checkpoints (tested against their parameter counts). "
        "YOLOv5 cannot be built by `transformers`: the `yolov5n..x` variants are **D-FINE n/s/m/l/x**, a real-time "
        "DETR family of similar size and FLOPs. Generative models decode greedily exactly a fixed number of tokens.",
        "* **Measured**: batch sizes 1 and 2 always, 4 and 8 (16) where a batch was predicted to stay short, on 1 "
        "and 2 cores, each (variant, cores) in a fresh subprocess pinned to its CPUs, a warm-up batch then "
        f"back-to-back batches for a {last.get('cell_budget_s', '?')} s budget (at least "
        f"{last.get('min_batches', 2)} batches, at most 50); every cell records its per-batch latencies, the "
        "process CPU time per batch and the load average.",
        "* **Fitted**: every other cell of batches {1,2,4,8,16} x cores {1,2,4,8} (cores 4 and 8 always) from "
        "`pipetune.profiles.VariantProfile`'s law `(a + k*b) * (s + (1-s)/c)`, marked `fitted`; the law is fitted "
        "to the 1- and 2-core cells together, so its serial share s comes from measured multi-core scaling.",
        "* **Machine**: "
        + (last.get("machine", "?"))
        + ". "
        + last.get("conditions", "")
        + ". Recorded: "
        + describe_conditions(conditions(pack_cells(raw)))
        + f". {n_dropped} 2-core cell(s) came out slower than "
        "1 core and are left out of the CSVs (kept in `measurements.json`).",
        "* **Before**: the previous packs (2026-11-28) were measured while other jobs shared the 2 vCPUs (load "
        "average 4-8, process CPU about a third of wall time); their 2-core pass was stopped because every 2-core "
        "cell came out slower than 1 core. `measurements.json` keeps their cells as summaries under `superseded`; "
        "the tables' `before` column is their batch-1 p99. Use these packs for relative costs and for the "
        "simulator, not as absolute speeds of these models.",
        "",
        pack_summary(tables, raw),
        "",
        "Tables: 1 core per replica; p99 of one batch of 1 (before: the previous pack's); saturation throughput "
        '(items/s, one replica, back-to-back batches) at batch 1 and 8; "(fitted)" = not measured within the '
        "budget; 2c/1c = measured speed-up of a second core at batch 1 and 8.",
    ]
    for name, rows in tables.items():
        lines += ["", f"## {name} (SLA {PIPELINES[name]['sla']} s)", "", markdown_table(rows)]
    path = PACK_DIR / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_budget(text: str) -> float:
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:])
    try:
        return float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise PipetuneError(f"--budget {text!r}: write a duration such as 90s, 35m or 1h") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(PIPELINES), help="comma-separated pipelines (default: all five)")
    ap.add_argument("--budget", default="45m", help="wall-time budget for measuring (e.g. 35m)")
    ap.add_argument("--cell-budget", type=float, default=3.0, help="timed seconds per (variant, batch, cores)")
    ap.add_argument(
        "--min-batches",
        type=int,
        default=5,
        help="timed batches per cell at least, however long they take (p99 of few)",
    )
    ap.add_argument("--max-batch-s", type=float, default=5.0, help="largest predicted batch time worth measuring")
    ap.add_argument(
        "--max-batch-s-multicore",
        type=float,
        default=None,
        help="the same limit for the 2-core pass (default: --max-batch-s); lower it to reach every "
        "variant's batches 1 and 2 on 2 cores within the budget",
    )
    ap.add_argument(
        "--remeasure",
        default="",
        help="comma-separated core counts (e.g. 2, on a quieter machine) "
        "or VARIANT@SHAPE/CORES keys whose cells are measured again; the old cells are replaced",
    )
    ap.add_argument("--cores", default="1,2", help="core counts to measure (default 1,2)")
    ap.add_argument("--no-measure", action="store_true", help="only rewrite specs/tables/plots from measurements")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    console = Console(stderr=True)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = [x for x in only if x not in PIPELINES]
    if bad:
        console.print(f"[red]error:[/] --only: unknown pipeline(s) {bad}; choose from {list(PIPELINES)}")
        return 2
    for name in only:
        write_spec(name)
    if args.remeasure and not args.no_measure:
        raw = load_raw()
        for c in [x.strip() for x in args.remeasure.split(",") if x.strip()]:
            if "/" in c:  # one variant-shape on one core count
                key, cores = c.rsplit("/", 1)
                if key not in raw["cells"]:
                    raise PipetuneError(
                        f"--remeasure {c}: no measured cells for {key!r}; keys look like "
                        "s2t-large-librispeech@fbank1000x80-gen40/1"
                    )
                raw["cells"][key].pop(cores, None)
                raw.get("complete", {}).pop(c, None)
                continue
            for by_cores in raw["cells"].values():
                by_cores.pop(c, None)
            for k in [k for k in raw.get("complete", {}) if k.endswith(f"/{c}")]:
                del raw["complete"][k]
        save_raw(raw)
    if not args.no_measure:
        if not 1 <= args.min_batches <= 50:
            raise PipetuneError(f"--min-batches {args.min_batches}: give 1 to 50 (a cell stops at 50 batches)")
        try:
            cores = sorted({int(x) for x in args.cores.split(",") if x.strip()})
        except ValueError:
            raise PipetuneError(f"--cores {args.cores!r}: give core counts such as 1,2") from None
        measure(
            only,
            parse_budget(args.budget),
            args.cell_budget,
            args.max_batch_s,
            console,
            args.max_batch_s_multicore,
            cores,
            args.min_batches,
        )
    raw = load_raw()
    from pipetune.spec import load_pipeline

    status = 0
    tables: dict[str, list[dict]] = {}
    for name in only:
        table, missing = build_table(name, raw)
        if missing:
            console.print(f"[red]{name}[/]: no measurements for {missing}; run without --no-measure")
            status = 1
            continue
        table.to_csv(PACK_DIR / name / "profile.csv")
        png = plot(name, table)
        rows = summary_rows(name, table, raw)
        write_readme(name, rows)
        tables[name] = rows
        load_pipeline(PACK_DIR / name / "pipeline.yaml")  # validates spec, profile and SLA reachability
        console.print(f"[bold]{name}[/]: {PACK_DIR / name} , {png.relative_to(ROOT)}")
        print(f"\n## {name}\n\n{markdown_table(rows)}")
    if set(only) == set(PIPELINES) and len(tables) == len(PIPELINES):
        write_index(tables, raw)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PipetuneError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
