"""Strict JSON, one home: every file and stdout pipetune writes as JSON goes through `dumps`/`dump`.

A non-finite float (an infeasible plan's latency, an empty window's mean) is written as null, never as the
`Infinity`/`NaN` tokens that strict parsers (JavaScript, jq, Go) reject; numpy scalars become plain numbers.
"""

from __future__ import annotations

import json
import math
from typing import IO, Any

import numpy as np

__all__ = ["dump", "dumps", "finite"]


def finite(x: Any) -> Any:
    """`x` with every non-finite float (also inside dicts, lists, tuples) turned into None, numpy scalars into Python."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def dumps(obj: Any, **kw: Any) -> str:
    """`json.dumps` that always writes strict JSON (non-finite numbers as null)."""
    kw.pop("allow_nan", None)
    return json.dumps(finite(obj), allow_nan=False, **kw)


def dump(obj: Any, fp: IO[str], **kw: Any) -> None:
    """`json.dump` that always writes strict JSON (non-finite numbers as null)."""
    kw.pop("allow_nan", None)
    json.dump(finite(obj), fp, allow_nan=False, **kw)
