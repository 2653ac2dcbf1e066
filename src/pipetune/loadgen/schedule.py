"""What to send and when: the arrival plan (from `pipetune.workloads`) and the request bodies (V2 JSON, or the V2
binary tensor extension with `binary`).

The plan is a sorted array of send times (seconds from the start). Its per-second counts come from a trace file
or a built-in pattern, are multiplied by `scale` and cut to `duration` seconds; within each second the requests
fall where the arrival process puts them (`poisson` by default). A plan holding more than `max_requests` is
cut to its first `max_requests` requests (and says so), so a run is bounded in count as well as in time.

Bodies are encoded once, before the run (a pool cycled over the requests), so the generator spends its time
sending, not encoding: from the pipeline's own example data (the source stage's first variant's
`sample_inputs`), or, without a pipeline, generated from the server's metadata (datatype and shape of its
first input; random words for BYTES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.errors import PipetuneError
from pipetune.protocol import DATATYPES, TensorSpec, encode_request_bytes, spec_for_sample
from pipetune.workloads import PATTERNS, PROCESSES, arrival_times, load_trace, synthetic_pattern

PATTERN_PEAK_RPS = 30.0  # a pattern's busiest second before --scale (synthetic_pattern's default)
PATTERN_MIN_S = 120  # synthetic patterns are drawn over at least this many seconds, then cut
DEFAULT_PATTERN_S = 120
HARD_MAX_REQUESTS = 5_000_000  # per-request records are kept in memory: a bound whatever --max-requests says
POOL = 64  # distinct bodies cycled over the requests


class LoadgenError(PipetuneError):
    """A load test that cannot run as asked; the message names the option and the fix."""


@dataclass(frozen=True)
class Plan:
    times: np.ndarray  # planned send times, seconds from the start, sorted
    counts: np.ndarray  # per-second counts the times were drawn from (after scale and cut)
    source: str  # "trace:PATH" or "pattern:NAME"
    truncated: int  # requests the plan held beyond max_requests (cut off, never sent)

    @property
    def duration_s(self) -> int:
        return int(self.counts.size)


def workload_counts(
    trace: str | Path | None = None,
    pattern: str | None = None,
    scale: float = 1.0,
    duration: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Per-second counts of a trace file or a pattern, scaled by `scale`, cut to `duration` seconds."""
    if (trace is None) == (pattern is None):
        raise LoadgenError("give exactly one of --trace FILE (per-second counts) or --pattern NAME")
    if not (math.isfinite(scale) and scale > 0):
        raise LoadgenError(f"--scale {scale}: must be a finite number > 0 (it multiplies every per-second count)")
    if duration is not None and duration < 1:
        raise LoadgenError(f"--duration {duration}: must be >= 1 second")
    if trace is not None:
        counts = load_trace(trace)
        source = f"trace:{trace}"
        if duration is not None:
            if duration > counts.size:
                raise LoadgenError(
                    f"--duration {duration}: the trace {trace} holds only {counts.size} s; give --duration <= "
                    f"{counts.size} or leave it out to replay the whole trace"
                )
            counts = counts[:duration]
        counts = counts * scale
    else:
        if pattern not in PATTERNS:
            raise LoadgenError(f"--pattern {pattern!r} is unknown; use one of {', '.join(PATTERNS)}")
        seconds = DEFAULT_PATTERN_S if duration is None else duration
        # The pattern's whole shape (its surge included) is drawn over the run's duration; a run shorter than
        # the shortest pattern takes its first seconds. Scaling the rate (not the drawn counts) keeps them Poisson.
        counts = synthetic_pattern(pattern, max(seconds, PATTERN_MIN_S), seed, PATTERN_PEAK_RPS * scale)[:seconds]
        source = f"pattern:{pattern}"
    return counts, source


def make_plan(
    counts: np.ndarray, source: str, process: str = "poisson", seed: int = 0, max_requests: int = 100_000
) -> Plan:
    if process not in PROCESSES:
        raise LoadgenError(f"--process {process!r} is unknown; use one of {', '.join(PROCESSES)}")
    if not 1 <= max_requests <= HARD_MAX_REQUESTS:
        raise LoadgenError(f"--max-requests {max_requests}: must be between 1 and {HARD_MAX_REQUESTS:,}")
    total = float(np.sum(counts))
    if total > 4 * HARD_MAX_REQUESTS:
        raise LoadgenError(
            f"the workload holds {total:.4g} requests; lower --scale or --duration (at most "
            f"{HARD_MAX_REQUESTS:,} requests are ever sent in one run)"
        )
    times = arrival_times(counts, process, seed)
    if times.size == 0:
        raise LoadgenError(f"{source}: the workload holds no request over {counts.size} s; raise --scale")
    cut = max(0, times.size - max_requests)
    return Plan(times[:max_requests], counts, source, cut)


# ---- bodies ---------------------------------------------------------------------------------------------
def spec_from_metadata(meta: Any, where: str) -> TensorSpec:
    """inputs[0] of a V2 model metadata object, checked."""
    try:
        t = meta["inputs"][0]
        spec = TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t["shape"]))
    except (KeyError, IndexError, TypeError, ValueError):
        raise LoadgenError(f"{where}: not V2 model metadata with inputs[0] {{name, datatype, shape}}") from None
    if spec.datatype not in DATATYPES:
        raise LoadgenError(f"{where}: input datatype {spec.datatype!r} is not a V2 datatype")
    if not spec.shape:
        raise LoadgenError(f"{where}: input shape is empty; a V2 input has at least the item dimension")
    return spec


def pipeline_items(pipeline_path: str | Path, n: int = POOL) -> tuple[list[Any], str]:
    """n example inputs of the pipeline's source stage (its first variant's adapter, not loaded); and its name."""
    from pipetune.models.registry import variant_model_ref
    from pipetune.spec import load_pipeline

    pipeline = load_pipeline(pipeline_path, check_profiles=False)
    src = next(iter(pipeline.source_shares()))
    variant = pipeline.stage(src).variants[0].name
    adapter = variant_model_ref(pipeline, src, variant)()
    try:
        items = list(adapter.sample_inputs(n))
    except Exception as e:  # an adapter without example data, or one whose data needs a download
        raise LoadgenError(
            f"--pipeline {pipeline_path}: stage {src!r} variant {variant!r} gave no sample inputs ({e}); "
            "leave --pipeline out to send inputs generated from the server's metadata"
        ) from None
    if not items:
        raise LoadgenError(f"--pipeline {pipeline_path}: stage {src!r} returned no sample inputs")
    return items, pipeline.name


def check_items(items: list[Any], spec: TensorSpec, where: str) -> None:
    """The example data must be what the server's input takes (datatype, per-item shape, finite numbers)."""
    mine = spec_for_sample(spec.name, items[0])
    if mine.datatype != spec.datatype and not (mine.datatype != "BYTES" and spec.datatype != "BYTES"):
        raise LoadgenError(
            f"{where}: the pipeline's example inputs are {mine.datatype} but the server's input {spec.name!r} "
            f"takes {spec.datatype}; check --pipeline matches the served model, or leave it out"
        )
    if spec.datatype != "BYTES":
        want, got = spec.shape[1:], mine.shape[1:]
        if len(want) != len(got) or any(w not in (-1, g) for w, g in zip(want, got)):
            raise LoadgenError(
                f"{where}: example inputs have item shape {list(got)}; the server's input takes {list(want)}"
            )
        # strict JSON would carry a NaN or an infinity as null, which a V2 server refuses: say so before the run
        for i, x in enumerate(items):
            arr = np.asarray(x)
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise LoadgenError(
                    f"{where}: example input {i} holds NaN or infinite values; V2 JSON carries finite numbers "
                    "only: fix the adapter's sample_inputs, or leave --pipeline out"
                )


def generated_items(spec: TensorSpec, n: int = POOL, seed: int = 0) -> list[Any]:
    """n random items fitting `spec` (per item: shape[1:], any-size dims as 8; BYTES: a few random words)."""
    rng = np.random.default_rng(seed)
    shape = tuple(8 if d < 0 else d for d in spec.shape[1:])
    if spec.datatype == "BYTES":
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        count = int(np.prod(shape)) if shape else 1

        def words() -> str:
            return " ".join("".join(rng.choice(letters, rng.integers(3, 9))) for _ in range(rng.integers(3, 12)))

        if not shape:
            return [words() for _ in range(n)]
        return [[words() for _ in range(count)] for _ in range(n)]
    dt = spec.datatype
    if dt.startswith("FP"):
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]
    if dt == "BOOL":
        return [rng.integers(0, 2, shape).astype(bool) for _ in range(n)]
    return [rng.integers(0, 10, shape).astype(DATATYPES[dt]) for _ in range(n)]


def encode_bodies(items: list[Any], spec: TensorSpec, *, binary: bool = False) -> tuple[list[bytes], list[dict]]:
    """One V2 request body (bytes) and its HTTP headers per item: one item per request, the way a client sends a
    user's request. `binary`: the binary tensor extension with binary outputs asked for (tritonclient's default)."""
    encoded = [encode_request_bytes([x], spec, binary=binary) for x in items]
    return [body for body, _ in encoded], [headers for _, headers in encoded]
