"""`loadtest(...)`: resolve the endpoint, build the plan and the bodies, send open loop, write the outputs.

The endpoint is found the V2 way: `GET /v2/models/{name}` (its inputs[0] is the tensor sent), so any V2
server (pipetune's, Triton, KServe, MLServer) can be loaded. `url` is the server's base URL
(http://host:port) or a model URL (http://host:port/v2/models/NAME[/infer]), which also names the model.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.loadgen.report import summarise, write_outputs
from pipetune.loadgen.runner import Records, RunOptions, run
from pipetune.loadgen.schedule import (
    LoadgenError,
    Plan,
    check_items,
    encode_bodies,
    generated_items,
    make_plan,
    pipeline_items,
    spec_from_metadata,
    workload_counts,
)

MAX_CONCURRENCY = 10_000


@dataclass(frozen=True)
class Endpoint:
    base: str  # http://host:port
    model: str

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/v2/models/{self.model}"

    @property
    def infer_url(self) -> str:
        return f"{self.metadata_url}/infer"


def parse_url(url: str, model: str | None) -> Endpoint:
    m = re.fullmatch(r"(https?://[^/?#]+)(/v2/models/([^/?#]+)(/versions/[^/?#]+)?(/infer)?)?/?", url.strip())
    if m is None:
        raise LoadgenError(
            f"--url {url!r}: give the server's base URL (http://127.0.0.1:8000) or a V2 model URL "
            "(http://127.0.0.1:8000/v2/models/NAME)"
        )
    base, in_url = m.group(1), m.group(3)
    if model and in_url and model != in_url:
        raise LoadgenError(f"--model {model!r} and the model in --url ({in_url!r}) differ; give one")
    name = model or in_url
    if not name:
        raise LoadgenError("no model named: pass --model NAME (or --pipeline, whose name is the model's)")
    return Endpoint(base, name)


def fetch_metadata(ep: Endpoint, timeout_s: float = 10.0) -> dict:
    try:
        with urllib.request.urlopen(ep.metadata_url, timeout=timeout_s) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise LoadgenError(
            f"GET {ep.metadata_url} answered {e.code}: {e.read()[:200].decode('utf-8', 'replace')}; check --url "
            "and --model (the model's name as the server knows it)"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise LoadgenError(f"cannot reach {ep.metadata_url} ({reason}); is the server running at --url?") from None
    except ValueError:
        raise LoadgenError(f"GET {ep.metadata_url}: the answer is not JSON; is --url a V2 server?") from None


def check_bounds(concurrency: int, timeout_s: float, sla_s: float | None) -> None:
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise LoadgenError(f"--concurrency {concurrency}: must be between 1 and {MAX_CONCURRENCY} open requests")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise LoadgenError(f"--timeout {timeout_s}: must be a number of seconds > 0")
    if sla_s is not None and not (math.isfinite(sla_s) and sla_s > 0):
        raise LoadgenError(f"--sla {sla_s}: must be a number of seconds > 0")


def build_bodies(
    ep: Endpoint, meta: dict, pipeline: str | Path | None, seed: int, binary: bool = False
) -> tuple[list[bytes], list[dict], str]:
    """The request bodies, their HTTP headers, and where their inputs came from."""
    spec = spec_from_metadata(meta, f"GET {ep.metadata_url}")
    if pipeline is not None:
        items, _ = pipeline_items(pipeline)
        check_items(items, spec, f"--pipeline {pipeline}")
        source = f"pipeline:{pipeline}"
    else:
        items = generated_items(spec, seed=seed)
        source = f"generated:{spec.datatype}{list(spec.shape)}"
    bodies, headers = encode_bodies(items, spec, binary=binary)
    return bodies, headers, source


def loadtest(
    url: str,
    *,
    trace: str | Path | None = None,
    pattern: str | None = None,
    scale: float = 1.0,
    duration: int | None = None,
    seed: int = 0,
    model: str | None = None,
    pipeline: str | Path | None = None,
    out: str | Path | None = None,
    sla_s: float | None = None,
    max_requests: int = 100_000,
    concurrency: int = 512,
    timeout_s: float = 10.0,
    process: str = "poisson",
    progress: Any = None,
    plot: bool = True,
    binary: bool = False,
) -> tuple[dict, Records, dict[str, Path]]:
    """Run one load test; returns (summary, records, paths written). Every user error is a LoadgenError."""
    check_bounds(concurrency, timeout_s, sla_s)
    counts, source = workload_counts(trace, pattern, scale, duration, seed)
    plan: Plan = make_plan(counts, source, process, seed, max_requests)
    try:
        ep = parse_url(url, model)
    except LoadgenError:
        if model is not None or pipeline is None:
            raise
        ep = parse_url(url, pipeline_items(pipeline, 1)[1])  # the pipeline's name is the model's
    meta = fetch_metadata(ep, timeout_s)
    bodies, headers, inputs = build_bodies(ep, meta, pipeline, seed, binary)
    if progress is not None:
        progress.start(plan)
    try:
        opts = RunOptions(
            ep.infer_url, bodies, concurrency, timeout_s, progress and progress.update, body_headers=headers
        )
        rec = run(plan.times, opts)
    finally:
        if progress is not None:
            progress.stop()
    info = {
        "url": ep.infer_url,
        "model": ep.model,
        "workload": {
            "source": plan.source,
            "scale": scale,
            "duration_s": plan.duration_s,
            "process": process,
            "seed": seed,
            "truncated_by_max_requests": plan.truncated,
        },
        "inputs": inputs,
        "encoding": "binary" if binary else "json",
        "concurrency": concurrency,
        "timeout_s": timeout_s,
    }
    summary = summarise(rec, info, sla_s)
    paths = write_outputs(rec, summary, out, plot=plot) if out is not None else {}
    return summary, rec, paths
