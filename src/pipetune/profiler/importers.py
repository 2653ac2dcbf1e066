"""Import profiles made by other tools into a ProfileTable (`pipetune profile import FORMAT FILE ... -o out.csv`).

Formats:

* ``triton`` - Triton perf_analyzer's ``-f`` CSV: one row per request concurrency, columns ``Concurrency``,
  ``Inferences/Second``, the latency components (``Client Send``, ``Network+Server Send/Recv``, ``Server Queue``,
  ``Server Compute Input``, ``Server Compute Infer``, ``Server Compute Output``, ``Client Recv``) and ``p50 latency``
  ... ``p99 latency``, all latencies in microseconds. perf_analyzer does not write the batch size (``-b``) or the
  model instance's cores into the file, so each file is one of our cells: the batch is perf_analyzer's ``-b`` and
  the cores are what the instance ran on, given as ``FILE=VARIANT:BATCH:CORES`` or by ``--variant/--batch/--cores``.
  Latency (mean, p50, p99) comes from the lowest-concurrency row (one request in flight: the service time of one
  batch without queueing; its ``Server Queue`` share is recorded in the provenance); throughput is the highest
  ``Inferences/Second`` over all concurrencies (items per second, i.e. requests x batch: the replica's saturation
  throughput). The mean is ``Avg latency`` where the file has it, else the sum of the latency components.
* ``capacity`` - a capacity table as InfAdapter publishes for ResNets on TF-Serving
  (``REPLICA,HARDWARE,CPU,MEM,ARCH,BATCH,...,SLA,p99_latency,capacity,saturation_tp,timestamp``; SLA and latency
  in ms, throughputs in requests/s). One cell per (ARCH, BATCH, CPU): variant ``PREFIX + ARCH`` (``resnet18``),
  cores = CPU. The table gives saturation throughput, not service times: the mean service time of a batch is
  ``BATCH * REPLICA / saturation_tp`` (one replica serving back to back), p50 = mean, p99 = mean x ``--p99-ratio``
  (default 1: no tail information). ``capacity`` under each SLA is recorded in the provenance, not in the cells.
* ``generic`` - any CSV: ``--map ours=theirs,...`` names the file's columns for ours
  (variant, batch, cores, latency_mean_s, latency_p50_s, latency_p99_s, throughput_rps, load_time_s, memory_mb),
  ``--unit ms|s|us`` the latency unit. Missing variant/batch/cores come from ``--variant/--batch/--cores``; a
  missing mean is ``batch / throughput``.

Every import writes provenance lines into the table's header and is validated by the same parser as measured
files (the written text is parsed back before it is written).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from pipetune.profiles import COLUMNS, ProfileError, ProfileRow, ProfileTable

FORMATS = ("triton", "capacity", "generic")
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}

TRITON_COMPONENTS = [
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
]
TRITON_REQUIRED = ["Concurrency", "Inferences/Second", "p50 latency", "p99 latency"]
CAPACITY_REQUIRED = ["REPLICA", "CPU", "ARCH", "BATCH", "saturation_tp"]


class ImportError_(ProfileError):  # noqa: N801 - not the builtin ImportError
    """A file to import is malformed; the message names the file, row and column, and the fix."""


@dataclass(frozen=True)
class CellSpec:
    """What a file does not say about itself: which of our cells it measures."""

    variant: str | None = None
    batch: int | None = None
    cores: int | None = None


def parse_file_arg(arg: str, default: CellSpec) -> tuple[Path, CellSpec]:
    """``FILE`` or ``FILE=VARIANT:BATCH:CORES`` (parts may be empty: ``f.csv=resnet18::2``)."""
    if "=" not in arg:
        return Path(arg), default
    path, _, spec = arg.rpartition("=")
    parts = spec.split(":")
    if len(parts) != 3:
        raise ImportError_(f"{arg!r}: write FILE=VARIANT:BATCH:CORES, e.g. perf.csv=resnet18:8:2")
    v, b, c = parts
    try:
        batch = int(b) if b else default.batch
        cores = int(c) if c else default.cores
    except ValueError:
        raise ImportError_(f"{arg!r}: BATCH and CORES must be integers, e.g. perf.csv=resnet18:8:2") from None
    return Path(path), CellSpec(v or default.variant, batch, cores)


def _read(path: Path) -> tuple[list[str], list[dict[str, str]], str]:
    if not path.exists():
        raise ImportError_(f"{path} does not exist; fix the path")
    text = path.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise ImportError_(f"{path}: the file is empty; it needs a header line and at least one row")
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    if not rows:
        raise ImportError_(f"{path}: only a header line; the file has no data rows")
    return fields, rows, hashlib.sha256(text.encode()).hexdigest()[:12]


def _num(path: Path, line: int, col: str, text: str, *, positive: bool = True) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ImportError_(f"{path}, line {line}, column {col!r}: {text!r} is not a number; fix the row") from None
    if not math.isfinite(v) or (positive and v <= 0) or v < 0:
        need = "a positive" if positive else "a non-negative"
        raise ImportError_(f"{path}, line {line}, column {col!r}: {text!r} must be {need} finite number")
    return v


def _need(path: Path, fields: list[str], required: list[str], what: str) -> None:
    missing = [c for c in required if c not in fields]
    if missing:
        raise ImportError_(f"{path}: missing column(s) {missing} for {what}; the file has {fields}")


def _cell(path: Path, cell: CellSpec) -> tuple[str, int, int]:
    missing = [n for n in ("variant", "batch", "cores") if getattr(cell, n) is None]
    if missing:
        raise ImportError_(
            f"{path}: the file does not say its {', '.join(missing)}; give FILE=VARIANT:BATCH:CORES or "
            f"--{' --'.join(missing)}"
        )
    if cell.batch < 1 or cell.cores < 1:  # type: ignore[operator]
        raise ImportError_(f"{path}: batch and cores must be >= 1 (got {cell.batch}, {cell.cores})")
    return cell.variant, cell.batch, cell.cores  # type: ignore[return-value]


# ---- Triton perf_analyzer -----------------------------------------------------------------------------------
def import_triton(path: Path, cell: CellSpec) -> tuple[list[ProfileRow], list[str]]:
    fields, rows, digest = _read(path)
    _need(path, fields, TRITON_REQUIRED, "a perf_analyzer -f CSV")
    has_avg = "Avg latency" in fields
    if not has_avg:
        _need(path, fields, TRITON_COMPONENTS, "the mean latency (no 'Avg latency' column)")
    variant, batch, cores = _cell(path, cell)
    parsed = []
    for i, r in enumerate(rows, start=2):
        conc = _num(path, i, "Concurrency", r["Concurrency"])
        tput = _num(path, i, "Inferences/Second", r["Inferences/Second"])
        p50 = _num(path, i, "p50 latency", r["p50 latency"]) * 1e-6
        p99 = _num(path, i, "p99 latency", r["p99 latency"]) * 1e-6
        if has_avg:
            mean = _num(path, i, "Avg latency", r["Avg latency"]) * 1e-6
        else:
            mean = sum(_num(path, i, c, r[c], positive=False) for c in TRITON_COMPONENTS) * 1e-6
            if mean <= 0:
                raise ImportError_(f"{path}, line {i}: the latency components sum to 0; the row has no latency")
        queue = _num(path, i, "Server Queue", r["Server Queue"], positive=False) * 1e-6 if "Server Queue" in r else 0
        if p99 < p50:
            raise ImportError_(
                f"{path}, line {i}: p99 latency {p99 * 1e6:g} us < p50 latency {p50 * 1e6:g} us; a valid "
                "perf_analyzer row has p50 <= p99 - fix or drop the row"
            )
        parsed.append((conc, tput, mean, p50, p99, queue, i))
    concs = [p[0] for p in parsed]
    if len(set(concs)) != len(concs):
        raise ImportError_(f"{path}: a concurrency appears twice; one row per concurrency (one -f run per file)")
    low = min(parsed, key=lambda p: p[0])
    best = max(parsed, key=lambda p: p[1])
    # One service model (profiles.THROUGHPUT_TOLERANCE): a replica serves one batch at a time, so it sustains at
    # most batch / mean latency; the extra the server gets by overlapping requests is not counted.
    sequential = batch / low[2]
    tput = min(best[1], sequential)
    cap = (
        f", capped at batch / mean latency = {sequential:.4g}/s (the planner and the simulator model one batch at "
        "a time per replica; the overlap at higher concurrency is not counted)"
        if best[1] > sequential
        else ""
    )
    row = ProfileRow(variant, batch, cores, low[2], low[3], low[4], tput)
    prov = [
        f"imported: triton perf_analyzer CSV {path.name} (sha256 {digest}) -> {variant} batch {batch} cores {cores}: "
        f"latency from concurrency {low[0]:g} (line {low[6]}, server queue {low[5] * 1e3:.3g} ms of "
        f"{low[2] * 1e3:.3g} ms mean), throughput the max Inferences/Second {best[1]:g} at concurrency {best[0]:g}"
        f"{cap}; microseconds -> seconds"
    ]
    return [row], prov


# ---- capacity table (InfAdapter) ----------------------------------------------------------------------------
def _mem_mb(text: str) -> float:
    t = text.strip().upper()
    for suffix, mult in (("GI", 1024.0), ("G", 1024.0), ("MI", 1.0), ("M", 1.0)):
        if t.endswith(suffix):
            try:
                return float(t[: -len(suffix)]) * mult
            except ValueError:
                return 0.0
    return 0.0


def import_capacity(
    path: Path, cell: CellSpec, prefix: str = "resnet", p99_ratio: float = 1.0
) -> tuple[list[ProfileRow], list[str]]:
    if not (p99_ratio >= 1 and math.isfinite(p99_ratio)):
        raise ImportError_(f"--p99-ratio {p99_ratio}: must be >= 1 (p99 is never below the mean here)")
    fields, rows, digest = _read(path)
    _need(path, fields, CAPACITY_REQUIRED, "a capacity table")
    cells: dict[tuple[str, int, int], list[tuple[int, float, float, float | None, float | None]]] = {}
    for i, r in enumerate(rows, start=2):
        if r.get("HARDWARE", "cpu").lower() not in ("cpu", ""):
            raise ImportError_(f"{path}, line {i}, column 'HARDWARE': {r['HARDWARE']!r}; only cpu rows map to cores")
        replicas = _num(path, i, "REPLICA", r["REPLICA"])
        cores = _num(path, i, "CPU", r["CPU"])
        batch = _num(path, i, "BATCH", r["BATCH"])
        if cores != int(cores) or batch != int(batch) or replicas != int(replicas):
            raise ImportError_(f"{path}, line {i}: CPU, BATCH and REPLICA must be whole numbers")
        tp = _num(path, i, "saturation_tp", r["saturation_tp"]) / replicas  # per replica
        variant = cell.variant or f"{prefix}{r['ARCH']}"
        sla = float(r["SLA"]) if r.get("SLA") else None
        cap = float(r["capacity"]) / replicas if r.get("capacity") else None
        cells.setdefault((variant, int(batch), int(cores)), []).append((i, tp, _mem_mb(r.get("MEM", "")), sla, cap))
    out, prov = (
        [],
        [
            f"imported: capacity table {path.name} (sha256 {digest}), {len(rows)} rows -> {len(cells)} cells; "
            f"mean service time = BATCH / per-replica saturation_tp, p50 = mean, p99 = mean x {p99_ratio:g} "
            "(the table has no service-time tails); per-SLA capacity below is not used by the model"
        ],
    )
    for (variant, batch, cores), recs in sorted(cells.items()):
        tps = [t for _, t, _, _, _ in recs]
        if max(tps) > 1.1 * min(tps):
            lines = [ln for ln, *_ in recs]
            raise ImportError_(
                f"{path}, lines {lines}: saturation_tp of {variant} batch {batch} on {cores} CPU differs across "
                f"rows ({min(tps):g}..{max(tps):g}, more than 10%); keep one measurement per cell"
            )
        tp = sorted(tps)[len(tps) // 2]
        mean = batch / tp
        mem = max(m for _, _, m, _, _ in recs)
        out.append(ProfileRow(variant, batch, cores, mean, mean, mean * p99_ratio, tp, memory_mb=mem))
        caps = ", ".join(f"{c:g}/s@{s:g}ms" for _, _, _, s, c in recs if s is not None and c is not None)
        if caps:
            prov.append(f"capacity {variant} b{batch} c{cores}: {caps}")
    return out, prov


# ---- generic CSV --------------------------------------------------------------------------------------------
def parse_mapping(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not theirs:
            raise ImportError_(f"--map {part!r}: write OURS=THEIRS, e.g. latency_p99_s=p99_ms")
        if ours not in COLUMNS or ours == "source":
            raise ImportError_(f"--map {part!r}: {ours!r} is not one of our columns {COLUMNS[:-1]}")
        out[ours] = theirs
    return out


class _OptionalColumns(TypedDict, total=False):
    """The ProfileRow fields a generic CSV may leave out (ProfileRow's defaults then apply)."""

    load_time_s: float
    memory_mb: float


_OPTIONAL_COLUMNS: tuple[Literal["load_time_s", "memory_mb"], ...] = ("load_time_s", "memory_mb")


def import_generic(
    path: Path, cell: CellSpec, mapping: dict[str, str], unit: str = "s"
) -> tuple[list[ProfileRow], list[str]]:
    if unit not in UNITS:
        raise ImportError_(f"--unit {unit!r}: use one of {sorted(UNITS)} (the latency columns' unit)")
    scale = UNITS[unit]
    fields, rows, digest = _read(path)
    col = {c: mapping.get(c, c) for c in COLUMNS[:-1]}
    need = [col[c] for c in ("latency_p50_s", "latency_p99_s", "throughput_rps")]
    need += [col[c] for c in ("variant", "batch", "cores") if getattr(cell, c) is None]
    missing = [c for c in need if c not in fields]
    if missing:
        raise ImportError_(
            f"{path}: missing column(s) {missing}; the file has {fields}. Map them with --map OURS=THEIRS "
            "(e.g. --map latency_p99_s=p99_ms) or give --variant/--batch/--cores"
        )
    out = []
    for i, r in enumerate(rows, start=2):
        variant = r[col["variant"]] if col["variant"] in fields else cell.variant
        if not variant:
            raise ImportError_(f"{path}, line {i}, column {col['variant']!r}: empty variant name")
        ints = {}
        for name in ("batch", "cores"):
            if col[name] in fields:
                v = _num(path, i, col[name], r[col[name]])
                if v != int(v):
                    raise ImportError_(f"{path}, line {i}, column {col[name]!r}: {v:g} must be a whole number")
                ints[name] = int(v)
            else:
                ints[name] = getattr(cell, name)
        p50 = _num(path, i, col["latency_p50_s"], r[col["latency_p50_s"]]) * scale
        p99 = _num(path, i, col["latency_p99_s"], r[col["latency_p99_s"]]) * scale
        tp = _num(path, i, col["throughput_rps"], r[col["throughput_rps"]])
        if col["latency_mean_s"] in fields:
            mean = _num(path, i, col["latency_mean_s"], r[col["latency_mean_s"]]) * scale
        else:
            mean = ints["batch"] / tp
        extra: _OptionalColumns = {}
        for opt in _OPTIONAL_COLUMNS:
            if col[opt] in fields and r[col[opt]]:
                extra[opt] = _num(path, i, col[opt], r[col[opt]], positive=False)
        if p99 < p50:
            raise ImportError_(
                f"{path}, line {i}: {col['latency_p99_s']}={r[col['latency_p99_s']]} is below "
                f"{col['latency_p50_s']}={r[col['latency_p50_s']]}; check the column mapping (p99 >= p50)"
            )
        out.append(ProfileRow(variant, ints["batch"], ints["cores"], mean, p50, p99, tp, **extra))
    mapped = ", ".join(f"{k}<-{v}" for k, v in col.items() if v in fields) or "none"
    mean_note = "" if col["latency_mean_s"] in fields else "; mean = batch / throughput (no mean column)"
    prov = [
        f"imported: generic CSV {path.name} (sha256 {digest}), {len(out)} rows; columns {mapped}; "
        f"latencies in {unit}{mean_note}"
    ]
    return out, prov


# ---- entry --------------------------------------------------------------------------------------------------
def import_profiles(
    fmt: str,
    files: list[str],
    *,
    variant: str | None = None,
    batch: int | None = None,
    cores: int | None = None,
    mapping: str | None = None,
    unit: str = "s",
    prefix: str = "resnet",
    p99_ratio: float = 1.0,
    now: _dt.datetime | None = None,
) -> ProfileTable:
    """All files of one format into one validated ProfileTable (provenance in its header)."""
    if fmt not in FORMATS:
        raise ImportError_(f"format {fmt!r}: use one of {list(FORMATS)}")
    if not files:
        raise ImportError_("give at least one FILE to import")
    default = CellSpec(variant, batch, cores)
    amap = parse_mapping(mapping) if fmt == "generic" else {}
    if mapping and fmt != "generic":
        raise ImportError_(f"--map applies to the generic format only (format {fmt!r} has fixed columns)")
    stamp = (now or _dt.datetime.now(_dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = ProfileTable(header=[f"pipetune profile import {fmt} on {stamp}; every row below is a measured cell"])
    seen: dict[tuple[str, int, int], Path] = {}
    for arg in files:
        path, cell = parse_file_arg(arg, default)
        if fmt == "triton":
            rows, prov = import_triton(path, cell)
        elif fmt == "capacity":
            rows, prov = import_capacity(path, cell, prefix=prefix, p99_ratio=p99_ratio)
        else:
            rows, prov = import_generic(path, cell, amap, unit=unit)
        for r in rows:
            key = (r.variant, r.batch, r.cores)
            if key in seen:
                raise ImportError_(
                    f"{path}: cell {key} was already imported from {seen[key]}; give each file its own cell "
                    "(FILE=VARIANT:BATCH:CORES)"
                )
            seen[key] = path
            try:
                table.upsert(r)
            except ProfileError as e:
                raise ImportError_(f"{path}: {e}") from None
        table.header.extend(prov)
    # The same validation as a measured file: parse what would be written.
    return ProfileTable.parse_csv(table.to_csv(), "<imported profile>")
