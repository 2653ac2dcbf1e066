"""Measure every variant's accuracy on its labelled data, and write the figures back into the spec.

Each adapter brings its own held-out data (`labelled_data(limit)`) and scoring rule (`score`, exact match by
default), so `pipetune accuracy PIPELINE.yaml` reproduces every accuracy in the spec. `write_accuracies`
edits only the numbers after `accuracy:` in the YAML text, so comments and layout survive.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipetune.errors import PipetuneError
from pipetune.models.registry import ModelSpecError, variant_model_ref


@dataclass(frozen=True)
class AccuracyResult:
    stage: str
    variant: str
    accuracy: float | None  # None when it could not be measured (see `error`)
    n: int
    seconds: float
    error: str = ""


def measure_accuracy(
    pipeline: Any,
    *,
    stages: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    limit: int | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> list[AccuracyResult]:
    """Load each variant in this process, run its labelled inputs through it in batches, score the outputs."""
    console = console or Console(stderr=True)
    names = list(stages) if stages else pipeline.topological_order()
    for s in names:
        if s not in pipeline.stage_names:
            raise PipetuneError(f"--stages: unknown stage {s!r}; the pipeline has {pipeline.stage_names}")
    todo = [(s, v.name) for s in names for v in pipeline.stage(s).variants if not variants or v.name in variants]
    out: list[AccuracyResult] = []
    with Progress(
        TextColumn("[bold]accuracy[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    ) as prog:
        task = prog.add_task("", total=len(todo))
        for s, v in todo:
            prog.update(task, description=f"{s}/{v}")
            t = time.perf_counter()
            try:
                adapter = variant_model_ref(pipeline, s, v)()
                adapter.load()
                xs, ys = adapter.labelled_data(limit)
                preds: list[Any] = []
                for i in range(0, len(xs), 64):
                    preds.extend(adapter.predict(xs[i : i + 64]))
                acc = float(adapter.score(preds, ys))
                if not (0.0 <= acc <= 1.0):
                    raise ValueError(f"score() returned {acc}, outside [0, 1]")
                out.append(AccuracyResult(s, v, acc, len(ys), time.perf_counter() - t))
            except ModelSpecError as e:
                out.append(AccuracyResult(s, v, None, 0, 0.0, str(e)))
            except Exception as e:  # noqa: BLE001 - one broken variant must not stop the rest
                out.append(AccuracyResult(s, v, None, 0, time.perf_counter() - t, f"{type(e).__name__}: {e}"))
            prog.advance(task)
    return out


_ITEM_NAME = re.compile(r"^(\s*)-\s+(?:\{\s*)?name:\s*['\"]?([^'\"\s#,}]+)")
_ACC = re.compile(r"(accuracy:\s*)([-+0-9.eE]+)")


def _set_accuracy(line: str, val: str) -> str:
    """`line` with the number of its (first) `accuracy:` replaced by `val`."""
    return _ACC.sub(lambda m: m.group(1) + val, line, count=1)


def write_accuracies(spec_path: str | Path, accuracies: dict[tuple[str, str], float], digits: int = 4) -> None:
    """Replace the `accuracy:` numbers of the given (stage, variant)s in a spec file, keeping everything else.

    Stages and variants must be list items that start with their name (`- name: x` or `- {name: x, ...}`),
    as in every bundled example. Raises PipetuneError if a variant or its accuracy is not found.
    """
    path = Path(spec_path)
    lines = path.read_text().splitlines(keepends=True)
    stage: str | None = None
    current: tuple[str, str] | None = None
    done: set[tuple[str, str]] = set()
    for i, line in enumerate(lines):
        m = _ITEM_NAME.match(line)
        if m:
            parent = _enclosing_key(lines, i, len(m.group(1)))
            if parent == "stages":
                stage, current = m.group(2), None
            elif parent == "variants" and stage is not None:
                current = (stage, m.group(2))
            else:
                current = None
        if current is not None and current in accuracies and current not in done and _ACC.search(line):
            val = f"{accuracies[current]:.{digits}f}"
            lines[i] = _set_accuracy(line, val)
            done.add(current)
    missing = sorted(set(accuracies) - done)
    if missing:
        raise PipetuneError(
            f"{path}: could not find the `accuracy:` of {missing}; each variant needs `- name: ...` and "
            "`accuracy: ...` in the spec"
        )
    text = "".join(lines)
    check = yaml.safe_load(text)
    for st in check["stages"]:
        for v in st["variants"]:
            key = (st["name"], v["name"])
            if key in accuracies and abs(float(v["accuracy"]) - accuracies[key]) > 10 ** (-digits):
                raise PipetuneError(f"{path}: rewriting the accuracy of {key} went wrong; the file was not changed")
    path.write_text(text)


def _enclosing_key(lines: list[str], i: int, indent: int) -> str | None:
    """The mapping key a list item at line i (dash at column `indent`) belongs to."""
    for j in range(i - 1, -1, -1):
        s = lines[j]
        body = s.strip()
        if not body or body.startswith("#"):
            continue
        ind = len(s) - len(s.lstrip())
        if ind < indent or (ind == indent and not body.startswith("-")):
            key = re.match(r"([A-Za-z_][\w-]*)\s*:", body.lstrip("- "))
            return key.group(1) if key else None
    return None
