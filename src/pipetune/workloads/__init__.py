"""Workloads: per-second request-count traces, IPA's pattern windows, synthetic patterns, arrival processes."""

from pipetune.workloads.arrivals import PROCESSES, arrival_times, integer_counts
from pipetune.workloads.patterns import (
    IPA_DAMPING,
    IPA_WINDOWS,
    PATTERNS,
    WindowStats,
    classify_window,
    find_patterns,
    ipa_windows_from_trace,
    paper_window,
    synthetic_pattern,
    synthetic_rate,
    window_stats,
)
from pipetune.workloads.trace import (
    TraceError,
    concat,
    damp,
    load_trace,
    parse_range,
    rescale,
    save_trace,
    slice_trace,
    validate_counts,
)
from pipetune.workloads.twitter import BuildReport, FileReport, build_counts

__all__ = [
    "PATTERNS",
    "PROCESSES",
    "IPA_DAMPING",
    "IPA_WINDOWS",
    "TraceError",
    "WindowStats",
    "BuildReport",
    "FileReport",
    "load_trace",
    "save_trace",
    "validate_counts",
    "slice_trace",
    "damp",
    "concat",
    "rescale",
    "parse_range",
    "synthetic_pattern",
    "synthetic_rate",
    "paper_window",
    "ipa_windows_from_trace",
    "find_patterns",
    "classify_window",
    "window_stats",
    "arrival_times",
    "integer_counts",
    "build_counts",
]
