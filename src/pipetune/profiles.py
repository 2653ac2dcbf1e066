"""Per-variant performance profiles: latency and throughput per (batch size, cores per replica).

`ProfileTable` is the on-disk form (CSV, `#` comment lines at the top say where the numbers came from). Each row
is one (variant, batch, cores) cell and is marked `measured` or `fitted`.

`VariantProfile` answers any (batch, cores) cell: a measured row where there is one, otherwise the fitted
scaling law

    service_time(b, c) = (a + k * b) * (s + (1 - s) / c)        a, k >= 0, s in [0, 1]

i.e. affine in the batch size (a fixed per-call overhead plus a per-item cost) and Amdahl's law in the cores
(serial fraction s). With a, k >= 0 and s in [0, 1] the law is never negative, non-decreasing in b and
non-increasing in c, and throughput b / service_time is non-decreasing in both — the monotonicity physics
asks for. (IPA fits an unconstrained quadratic, which can go negative.) Tail latency of a fitted cell is the
fitted mean times the variant's median measured p99/mean and p50/mean ratios.

Where the measurements show throughput FALLING at the largest batch measured on a core count (a detector at
640x640 on a CPU: cache and memory bandwidth, not noise, when the process had its cores), the monotone law
would still promise a batching gain there. Fitted cells beyond that batch are then held to the per-item time
measured at it (scaled by the law's core factor for other core counts): no fitted cell claims a gain that the
measurements contradict.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from pipetune.errors import PipetuneError, SpecError

COLUMNS = [
    "variant",
    "batch",
    "cores",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p99_s",
    "throughput_rps",
    "load_time_s",
    "memory_mb",
    "source",
]
REQUIRED = COLUMNS[:7]
# One service model for the planner and the simulator: a replica serves one batch at a time, for a time drawn
# from the row's latency columns, so it sustains at most batch / latency_mean_s items/s. A row claiming more
# (a server that overlaps requests) is refused: the planner would count capacity the simulator never serves.
# A throughput below it is kept (per-batch overhead outside the timed call; the planner is then the cautious one).
THROUGHPUT_TOLERANCE = 0.10


class ProfileError(PipetuneError):
    """A profile is missing or malformed. The message names the file, line and field, and the fix."""


@dataclass(frozen=True)
class ProfileRow:
    variant: str
    batch: int
    cores: int
    latency_mean_s: float
    latency_p50_s: float
    latency_p99_s: float
    throughput_rps: float  # items per second one replica sustains at this batch size
    load_time_s: float = 0.0
    memory_mb: float = 0.0
    source: Literal["measured", "fitted"] = "measured"

    def quantile(self, pct: float) -> float:
        """Service-time quantile at `pct` (50..99.9): `service_quantile` of this row's p50 and p99."""
        return float(service_quantile(self.latency_p50_s, self.latency_p99_s, pct))


def service_quantile(p50_s: float | np.ndarray, p99_s: float | np.ndarray, pct: float) -> np.ndarray:
    """Service-time quantile at `pct` (50..99.9), elementwise, interpolated in log-odds space between p50 and p99.

    Exponential-tail interpolation: q(p) = p50 + (p99 - p50) * ln(0.5 / (1 - p)) / ln(50), at least 0; exactly p50
    at 50 and p99 at 99. The one home of this formula: `ProfileRow.quantile` and the latency model call it."""
    if pct == 50:
        return np.asarray(p50_s, dtype=float)
    if pct == 99:
        return np.asarray(p99_s, dtype=float)
    t = math.log(0.5 / (1 - pct / 100.0)) / math.log(50.0)
    return np.maximum(
        0.0, np.asarray(p50_s, dtype=float) + (np.asarray(p99_s, dtype=float) - np.asarray(p50_s, dtype=float)) * t
    )


@dataclass
class ProfileTable:
    rows: list[ProfileRow] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # provenance comments, without the leading '#'

    # ---- I/O ---------------------------------------------------------------------------------------------
    @classmethod
    def read_csv(cls, path: str | Path) -> ProfileTable:
        path = Path(path)
        if not path.exists():
            raise ProfileError(f"profile {path} does not exist; run `pipetune profile` or fix the path")
        return cls.parse_csv(path.read_text(), str(path))

    @classmethod
    def parse_csv(cls, text: str, where: str = "<profile>") -> ProfileTable:
        header, body = [], []
        for line in text.splitlines():
            if line.startswith("#"):
                header.append(line[1:].strip())
            elif line.strip():
                body.append(line)
        if not body:
            raise ProfileError(f"{where}: the profile is empty; it needs a header line {','.join(REQUIRED)}")
        reader = csv.DictReader(io.StringIO("\n".join(body)))
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ProfileError(f"{where}: missing column(s) {missing}; the header must include {REQUIRED}")
        rows: list[ProfileRow] = []
        seen: set[tuple[str, int, int]] = set()
        for i, rec in enumerate(reader, start=2 + len(header)):
            try:
                row = ProfileRow(
                    variant=rec["variant"].strip(),
                    batch=int(rec["batch"]),
                    cores=int(rec["cores"]),
                    latency_mean_s=float(rec["latency_mean_s"]),
                    latency_p50_s=float(rec["latency_p50_s"]),
                    latency_p99_s=float(rec["latency_p99_s"]),
                    throughput_rps=float(rec["throughput_rps"]),
                    load_time_s=float(rec.get("load_time_s") or 0.0),
                    memory_mb=float(rec.get("memory_mb") or 0.0),
                    source=(rec.get("source") or "measured").strip(),  # type: ignore[arg-type]
                )
            except (TypeError, ValueError) as e:
                raise ProfileError(f"{where}, line {i}: {e}; every number column must hold a number") from None
            _validate_row(row, f"{where}, line {i}")
            key = (row.variant, row.batch, row.cores)
            if key in seen:
                raise ProfileError(f"{where}, line {i}: duplicate row for {key}; keep one row per cell")
            seen.add(key)
            rows.append(row)
        return cls(rows=rows, header=header)

    def to_csv(self, path: str | Path | None = None) -> str:
        buf = io.StringIO()
        for h in self.header:
            buf.write(f"# {h}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in sorted(self.rows, key=lambda r: (r.variant, r.cores, r.batch)):
            w.writerow(
                [
                    r.variant,
                    r.batch,
                    r.cores,
                    f"{r.latency_mean_s:.6g}",
                    f"{r.latency_p50_s:.6g}",
                    f"{r.latency_p99_s:.6g}",
                    f"{r.throughput_rps:.6g}",
                    f"{r.load_time_s:.4g}",
                    f"{r.memory_mb:.4g}",
                    r.source,
                ]
            )
        text = buf.getvalue()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    # ---- queries -----------------------------------------------------------------------------------------
    def variants(self) -> list[str]:
        return sorted({r.variant for r in self.rows})

    def rows_for(self, variant: str) -> list[ProfileRow]:
        return [r for r in self.rows if r.variant == variant]

    def upsert(self, row: ProfileRow) -> None:
        _validate_row(row, f"row {row.variant}/b{row.batch}/c{row.cores}")
        self.rows = [r for r in self.rows if (r.variant, r.batch, r.cores) != (row.variant, row.batch, row.cores)]
        self.rows.append(row)

    def has(self, variant: str, batch: int, cores: int) -> bool:
        return any((r.variant, r.batch, r.cores) == (variant, batch, cores) for r in self.rows)

    def variant_profile(self, variant: str) -> VariantProfile:
        rows = self.rows_for(variant)
        if not rows:
            raise ProfileError(f"no profile rows for variant {variant!r}; known variants: {self.variants()}")
        return VariantProfile(variant, rows)

    def filled(self, batches: Iterable[int], cores: Iterable[int]) -> ProfileTable:
        """A copy where every (variant, batch, cores) cell asked for exists, unmeasured ones fitted."""
        out = ProfileTable(rows=list(self.rows), header=list(self.header))
        for v in self.variants():
            vp = self.variant_profile(v)
            for b in batches:
                for c in cores:
                    if not self.has(v, b, c):
                        out.rows.append(vp.row(b, c))
        return out


def _validate_row(r: ProfileRow, where: str) -> None:
    if not r.variant:
        raise ProfileError(f"{where}: variant is empty; name the variant the row measures")
    if r.batch < 1 or r.cores < 1:
        raise ProfileError(f"{where}: batch and cores must be >= 1 (got batch={r.batch}, cores={r.cores})")
    for name in ("latency_mean_s", "latency_p50_s", "latency_p99_s", "throughput_rps"):
        v = getattr(r, name)
        if not (v > 0 and math.isfinite(v)):
            raise ProfileError(f"{where}: {name}={v} must be a positive finite number (seconds or items/s)")
    for name in ("load_time_s", "memory_mb"):
        v = getattr(r, name)
        if not (v >= 0 and math.isfinite(v)):
            raise ProfileError(f"{where}: {name}={v} must be >= 0")
    if r.latency_p99_s < r.latency_p50_s:
        raise ProfileError(f"{where}: latency_p99_s < latency_p50_s; percentiles must not decrease")
    sequential = r.batch / r.latency_mean_s
    if r.throughput_rps > sequential * (1 + THROUGHPUT_TOLERANCE):
        raise ProfileError(
            f"{where}: throughput_rps={r.throughput_rps:.6g} is {r.throughput_rps / sequential:.3g}x "
            f"batch / latency_mean_s = {sequential:.6g}: the row claims a replica that overlaps batches, but the "
            "planner and the simulator both model a replica serving one batch at a time (its latency columns "
            f"are its service time). Set throughput_rps to at most {sequential * (1 + THROUGHPUT_TOLERANCE):.6g} "
            "(batch / latency_mean_s), or profile the server at concurrency 1 and model its overlap as replicas"
        )
    if r.source not in ("measured", "fitted"):
        raise ProfileError(f"{where}: source={r.source!r}; use 'measured' or 'fitted'")


@dataclass(frozen=True)
class ScalingLaw:
    """service_time(b, c) = (a + k*b) * (s + (1-s)/c); see the module docstring."""

    a: float
    k: float
    s: float

    def mean(self, b: int, c: int) -> float:
        return (self.a + self.k * b) * (self.s + (1.0 - self.s) / c)

    @classmethod
    def fit(cls, rows: list[ProfileRow]) -> ScalingLaw:
        b = np.array([r.batch for r in rows], float)
        c = np.array([r.cores for r in rows], float)
        t = np.array([r.latency_mean_s for r in rows], float)
        # Relative least squares (each cell weighs the same whatever its scale), grid over s, NNLS for (a, k),
        # all grid points at once (this fit runs for every variant a profile pack or benchmark instance loads).
        # No free lunch: a core gain only from >= 2 measured core counts (else s = 1: cores do not help), a
        # batching gain only from >= 2 measured batch sizes (else a = 0: latency grows linearly with the batch,
        # throughput stays what was measured). `assumptions()` says which of these a law rests on.
        s_grid = np.linspace(0.0, 1.0, 101) if len(set(c)) > 1 else np.array([1.0])
        g = s_grid[:, None] + (1.0 - s_grid[:, None]) / c[None, :]  # (grid, cells)
        x0, x1 = g / t, g * b / t  # the two columns of X per grid point; the target is y = 1
        if len(set(b)) < 2:
            x0 = np.zeros_like(x0)  # no fixed per-call cost to amortise: the fit is per item only
        coef, err = _nnls2_batched(x0, x1)
        i = int(np.argmin(err))  # first grid point of least error
        law = cls(float(coef[i, 0]), float(coef[i, 1]), float(s_grid[i]))
        if law.a + law.k <= 0:  # degenerate data: fall back to a per-item constant
            law = cls(0.0, float(np.median(t / b)), law.s)
        return law


FALLING_TOLERANCE = 0.02  # throughput lower than a smaller batch's by more than this share counts as falling


def batch_ceilings(rows: list[ProfileRow], tolerance: float = FALLING_TOLERANCE) -> dict[int, tuple[int, float]]:
    """Per core count whose largest measured batch b0 had lower throughput than a smaller measured batch (by more
    than `tolerance`): (b0, per-item time at b0). Fitted cells of larger batches are held to that per-item time."""
    by_cores: dict[int, dict[int, float]] = {}
    for r in rows:
        by_cores.setdefault(r.cores, {})[r.batch] = r.latency_mean_s
    out = {}
    for c, cells in by_cores.items():
        b0 = max(cells)
        thr = {b: b / t for b, t in cells.items() if t > 0}
        if b0 in thr and any(thr[b] > thr[b0] * (1 + tolerance) for b in thr if b < b0):
            out[c] = (b0, cells[b0] / b0)
    return out


def law_assumptions(rows: list[ProfileRow]) -> list[str]:
    """What a fitted law of these (measured) rows assumes for want of data, in words (empty: nothing)."""
    out = []
    batches, cores = sorted({r.batch for r in rows}), sorted({r.cores for r in rows})
    if len(batches) < 2:
        out.append(
            f"measured at one batch size ({batches[0]}): no batching gain assumed (fitted latency grows linearly "
            "with the batch)"
        )
    if len(cores) < 2:
        out.append(f"measured on one core count ({cores[0]}): no speed-up from more cores assumed")
    return out


def _nnls2_batched(x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least squares min ||a x0 + k x1 - 1||^2, a, k >= 0, for each row of x0/x1 (one problem per
    row): the optimum is the free solution when it is non-negative, else the better one-column solution (the
    problem is convex, so the optimum lies in the interior or on one of the two faces); of equal errors the free
    solution wins, then a-only. Returns (coef (m, 2), squared error (m,))."""
    n = x0.shape[1]
    g00, g01, g11 = (x0 * x0).sum(1), (x0 * x1).sum(1), (x1 * x1).sum(1)
    r0, r1 = x0.sum(1), x1.sum(1)

    def sse(a, k):  # ||a x0 + k x1 - 1||^2 per row, from the Gram matrix (a, k: one column per candidate)
        G00, G01, G11, R0, R1 = (v[:, None] for v in (g00, g01, g11, r0, r1))
        return a * a * G00 + 2 * a * k * G01 + k * k * G11 - 2 * (a * R0 + k * R1) + n

    with np.errstate(divide="ignore", invalid="ignore"):
        det = g00 * g11 - g01 * g01
        free_ok = det > 1e-12 * np.maximum(g00 * g11, 1e-300)  # columns not (nearly) collinear
        fa = np.where(free_ok, (g11 * r0 - g01 * r1) / det, 0.0)
        fk = np.where(free_ok, (g00 * r1 - g01 * r0) / det, 0.0)
        # Collinear columns (every cell at one batch size: x1 = b x0) leave a line of equal fits; the a-only end
        # is taken (one batch size cannot tell a fixed from a per-item cost).
        free_ok &= (fa >= 0) & (fk >= 0)
        a_only = np.where(g00 > 0, np.maximum(r0 / g00, 0.0), 0.0)
        k_only = np.where(g11 > 0, np.maximum(r1 / g11, 0.0), 0.0)
    cand_a = np.stack([np.where(free_ok, fa, 0.0), a_only, np.zeros_like(a_only)], 1)
    cand_k = np.stack([np.where(free_ok, fk, 0.0), np.zeros_like(k_only), k_only], 1)
    err = sse(cand_a, cand_k)
    err[:, 0] = np.where(free_ok, err[:, 0], np.inf)
    j = np.argmin(err, axis=1)
    rows = np.arange(x0.shape[0])
    coef = np.stack([cand_a[rows, j], cand_k[rows, j]], 1)
    return coef, err[rows, j]


def _cell_tuple(r: ProfileRow) -> tuple[float, float, float, float]:
    return r.latency_mean_s, r.latency_p50_s, r.latency_p99_s, r.throughput_rps


class VariantProfile:
    """All cells of one variant: measured rows as given, the rest from the fitted scaling law."""

    def __init__(self, variant: str, rows: list[ProfileRow]):
        self.variant = variant
        self.measured = {(r.batch, r.cores): r for r in rows}
        base = [r for r in rows if r.source == "measured"] or rows
        self.law = ScalingLaw.fit(base)
        self.assumptions = law_assumptions(base)
        self.p99_ratio = max(1.0, float(np.median([r.latency_p99_s / r.latency_mean_s for r in base])))
        self.p50_ratio = float(np.median([r.latency_p50_s / r.latency_mean_s for r in base]))
        self.load_time_s = float(np.median([r.load_time_s for r in rows]))
        self.memory_mb = float(np.max([r.memory_mb for r in rows]))
        self.batch_ceiling = batch_ceilings(base)
        self._cache: dict[tuple[int, int], ProfileRow] = {}
        self._cell_index = {cell: i for i, cell in enumerate(self.measured)}
        self._cell_values = np.array([_cell_tuple(r) for r in self.measured.values()], float).reshape(-1, 4)

    def cells(self, grid: list[tuple[int, int]]) -> np.ndarray:
        """(mean, p50, p99, throughput) of each (batch, cores) cell of `grid`, shape (len(grid), 4): the numbers
        of `row()`. The optimizer reads every cell of every variant on each new pipeline; this is its fast path
        (one gather from the measured table: per-cell ProfileRow lookups cost more than the rest of building
        its options)."""
        idx = [self._cell_index.get(cell, -1) for cell in grid]
        if -1 not in idx:
            return self._cell_values[idx]
        return np.array([_cell_tuple(self.row(*cell)) for cell in grid], float).reshape(-1, 4)

    def fitted(self, grid: list[tuple[int, int]]) -> np.ndarray:
        """Per (batch, cores) cell of `grid`: True where its numbers come from the fitted law (not measured, or
        marked `fitted` in the file)."""
        return np.array([c not in self.measured or self.measured[c].source == "fitted" for c in grid], bool)

    def row(self, batch: int, cores: int) -> ProfileRow:
        key = (batch, cores)
        if key in self.measured:
            return self.measured[key]
        if key not in self._cache:
            mean = self.law.mean(batch, cores)
            below = [c for c in self.batch_ceiling if c <= cores and batch > self.batch_ceiling[c][0]]
            if below:  # the measurements show the batching gain has ended: no more items/s than measured there
                c0 = max(below)
                b0, item_s = self.batch_ceiling[c0]
                core_factor = self.law.mean(b0, cores) / self.law.mean(b0, c0)
                mean = max(mean, batch * item_s * core_factor)
            self._cache[key] = ProfileRow(
                variant=self.variant,
                batch=batch,
                cores=cores,
                latency_mean_s=mean,
                latency_p50_s=min(mean * self.p50_ratio, mean * self.p99_ratio),
                latency_p99_s=mean * self.p99_ratio,
                throughput_rps=batch / mean,
                load_time_s=self.load_time_s,
                memory_mb=self.memory_mb,
                source="fitted",
            )
        return self._cache[key]


def stack_cells(variants: list[VariantProfile], grid: list[tuple[int, int]]) -> np.ndarray:
    """`cells(grid)` of several variants, concatenated. Variants profiled on the same cells (the usual case)
    are gathered at once: per-variant lookups were most of the time of building a pipeline's options."""
    if not variants:
        return np.empty((0, 4))
    layout = variants[0]._cell_index
    if all(vp._cell_index == layout for vp in variants[1:]):
        idx = [layout.get(cell, -1) for cell in grid]
        if -1 not in idx:
            return np.stack([vp._cell_values for vp in variants])[:, idx].reshape(-1, 4)
    return np.concatenate([vp.cells(grid) for vp in variants])


@dataclass
class PipelineProfiles:
    """Profiles for every (stage, variant) of one pipeline."""

    by_variant: dict[tuple[str, str], VariantProfile]

    def get(self, stage: str, variant: str) -> VariantProfile:
        return self.by_variant[(stage, variant)]

    def row(self, stage: str, variant: str, batch: int, cores: int) -> ProfileRow:
        return self.by_variant[(stage, variant)].row(batch, cores)


def load_profiles(pipeline) -> PipelineProfiles:  # noqa: ANN001 - a spec.Pipeline; spec imports this module
    """Load every variant's profile for a pipeline; errors name the stage, variant and file."""
    tables: dict[Path, ProfileTable] = {}
    out: dict[tuple[str, str], VariantProfile] = {}
    for st in pipeline.stages:
        for v in st.variants:
            path = pipeline.profile_path(st.name, v.name)
            if path is None:
                raise ProfileError(
                    f"stages[{st.name}].variants[{v.name}].profile: no profile given; set `profile:` on the "
                    "variant, the stage or the pipeline"
                )
            if path not in tables:
                tables[path] = ProfileTable.read_csv(path)
            rows = tables[path].rows_for(v.name)
            if not rows:
                raise ProfileError(
                    f"stages[{st.name}].variants[{v.name}]: {path} has no rows for this variant; profile it "
                    f"(`pipetune profile`) or fix the name (the file has {tables[path].variants()})"
                )
            out[(st.name, v.name)] = VariantProfile(v.name, rows)
    profiles = PipelineProfiles(out)
    check_sla_reachable(pipeline, profiles)
    return profiles


def min_service_latency(pipeline, profiles: PipelineProfiles, stage: str) -> tuple[float, str]:
    """The smallest SLA-percentile service time any option of `stage` has (no queueing, no batching wait)."""
    pct = pipeline.sla.percentile
    best = (math.inf, "")
    for v in pipeline.stage(stage).variants:
        for b in pipeline.batch_sizes_for(stage)[:1]:
            for c in pipeline.cores_for(stage):
                q = profiles.row(stage, v.name, b, c).quantile(pct)
                if q < best[0]:
                    best = (q, f"{v.name} batch {b} on {c} core(s)")
    return best


def check_sla_reachable(pipeline, profiles: PipelineProfiles) -> None:
    floor = {s: min_service_latency(pipeline, profiles, s) for s in pipeline.stage_names}
    for path in pipeline.paths():
        total = sum(floor[s][0] for s in path)
        if total > pipeline.sla.seconds:
            worst = max(path, key=lambda s: floor[s][0])
            raise SpecError(
                f"sla.seconds: {pipeline.sla.seconds:g} s can never be met: the path {' -> '.join(path)} needs at "
                f"least {total:.3g} s at p{pipeline.sla.percentile:g} even unloaded; stage {worst!r} alone needs "
                f"{floor[worst][0]:.3g} s ({floor[worst][1]}). Raise the SLA, add a faster variant of {worst!r}, "
                "or allow more cores."
            )


def with_source(rows: Iterable[ProfileRow], source: str) -> list[ProfileRow]:
    return [replace(r, source=source) for r in rows]  # type: ignore[arg-type]
