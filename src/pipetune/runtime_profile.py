"""What the serving runtime itself costs on the host, beside the models: the `RuntimeProfile`.

A model profile (profiles.py) says what a variant costs inside `predict`. The runtime spends CPU outside it too:
the HTTP front end and ingress parse, decode, walk the DAG and encode each request; each remote stage call costs
its caller and its callee CPU outside `predict`; the engine's control plane (Ray's controller, GCS, agents,
metrics) burns CPU beside the requests. On a small host that is most of the bill, so a planner that counts only
the models plans for a machine it does not have. The planner (latency.py, optimizer/options.py) and the twin
(backends/simulator/host.py `host_settings`) read the same profile: one host model, the same inputs with the
same meaning.

Fields (all CPU in seconds of one core; "outside predict" means not in the model profile):
  host_cores       physical cores serving may use (a local Ray: the machine's physical or affinity cores; a
                   cluster: its CPUs). Not Ray's logical CPUs, which the plan's core budget counts separately.
  request_cpu_s    per request, on its path, outside the stages (front end + ingress: parse, decode, walk,
                   encode). It delays the request and loads the host.
  call_cpu_s       per remote stage call (one call may carry a batch of items), caller + callee, outside predict.
  item_cpu_s       per item per remote stage hop, outside predict.
  side_cpu_s       per request, beside its path (controller, GCS, agents, metrics): loads the host, delays nothing.
  replica_start_s  seconds a new replica takes before its model starts loading (the engine starts a worker
                   process, which imports its libraries), at full speed on one core: a switch or an added replica
                   waits for it on top of the model's load time, and it loads the host like a loading model.
  utilisation_cap  the share of host_cores a configuration may keep busy on average (HOST_UTILISATION_CAP by
                   default): what it holds at the SLA (`holds_cores`; admission, capacity reports).
  switch_reserve_cores  cores the planner leaves free beside that for replicas starting (make-before-break: a
                   new generation starts while the old one serves, and a starting replica is a Python process
                   importing and loading on LOADING_CORES core): the planner's budget is `cpu_budget_cores` =
                   min(utilisation_cap x host_cores, host_cores - switch_reserve_cores), none kept on a host with
                   no more cores than the reserve. 0: none (plans as before it existed).
  fusion           the runtime runs a light stage in the ingress process (`runs_inline`) instead of calling a
                   replica; such a stage pays no call or item hop (its model CPU is still spent, in the ingress).
  inline_stages    stages the runtime always runs in the ingress process, whatever their variant.
  conditions       how and where it was measured (cpu model, cores, when, rps, seconds, how): kept for the record.

Stored as strict JSON (`RUNTIME_FILE`, beside the pipeline's model profile: `runtime_path`); `load_runtime_for`
returns None when there is none. None everywhere means "no runtime cost counted": plans are then exactly what
they were before runtime profiles existed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune import jsonio
from pipetune.errors import PipetuneError

RUNTIME_FILE = "runtime.json"
# The share of the host's cores a plan may keep busy on average: the planner's margin below what the host carries.
# Its stretch (latency.host_slowdown) takes the others' jobs as independent of the job's own replica; they are not
# (a burst of arrivals keeps the ingress and the replicas busy at once), so near a full host it is optimistic: in
# the twin the shipped text pipeline's middle configuration keeps its SLA at the rate planned under 0.7 and breaks
# it (1-25% late) under 0.75-0.8 (tests/test_runtime_profile.py). A profile may set its own (`utilisation_cap`).
HOST_UTILISATION_CAP = 0.7

# A replica starting (importing, loading, warming up) runs LOADING_NICENESS below the serving ones' priority, so
# that on a full host it takes the CPU they leave (serving/app.py `starting_priority`); LOADING_CPU_WEIGHT is its
# CPU weight beside a serving process's under Linux's scheduler (CFS weights: 110 at nice 10, 1024 at nice 0), what
# the twin gives a loading replica (SimSettings.host_load_weight).
LOADING_NICENESS = 10
LOADING_CPU_WEIGHT = 110 / 1024
# A starting replica is one Python process importing its libraries and loading its model: one core busy.
LOADING_CORES = 1.0

_CPU_FIELDS = ("request_cpu_s", "call_cpu_s", "item_cpu_s", "side_cpu_s")
_FIELDS = (
    "host_cores", *_CPU_FIELDS, "replica_start_s", "utilisation_cap", "switch_reserve_cores", "fusion",
    "inline_stages", "conditions",
)  # fmt: skip
_REQUIRED = ("host_cores", "request_cpu_s", "call_cpu_s", "item_cpu_s")


class RuntimeProfileError(PipetuneError):
    """A runtime profile is missing a field or holds a bad value; the message names the field and the fix."""


@dataclass(frozen=True)
class RuntimeProfile:
    """The host the runtime serves on and the CPU the runtime spends outside the models (module docstring)."""

    host_cores: float
    request_cpu_s: float
    call_cpu_s: float
    item_cpu_s: float
    side_cpu_s: float = 0.0
    replica_start_s: float = 0.0
    utilisation_cap: float = HOST_UTILISATION_CAP
    switch_reserve_cores: float = 0.0
    fusion: bool = False
    inline_stages: frozenset[str] = frozenset()
    conditions: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = "runtime profile"
        h = self.host_cores
        if isinstance(h, bool) or not isinstance(h, numbers.Real) or not (math.isfinite(h) and h > 0):
            raise RuntimeProfileError(
                f"{where}: host_cores={h!r} must be a finite number of physical cores > 0 (a local Ray: the "
                "machine's physical cores; a cluster: its CPUs)"
            )
        for name in _CPU_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
                raise RuntimeProfileError(
                    f"{where}: {name}={v!r} must be a finite number of CPU-seconds >= 0 (0: none); measure it "
                    "with `pipetune profile --runtime`"
                )
        st = self.replica_start_s
        if isinstance(st, bool) or not isinstance(st, numbers.Real) or not (math.isfinite(st) and st >= 0):
            raise RuntimeProfileError(
                f"{where}: replica_start_s={st!r} must be a finite number of seconds >= 0 (0: a replica starts as "
                "its model loads); measure it with `pipetune profile --runtime`"
            )
        rv = self.switch_reserve_cores
        if isinstance(rv, bool) or not isinstance(rv, numbers.Real) or not (math.isfinite(rv) and rv >= 0):
            raise RuntimeProfileError(
                f"{where}: switch_reserve_cores={rv!r} must be a finite number of cores >= 0 (0: none kept for "
                f"replicas starting; {LOADING_CORES:g}: one starting replica)"
            )
        cap = self.utilisation_cap
        if isinstance(cap, bool) or not isinstance(cap, numbers.Real) or not (0 < cap <= 1):
            raise RuntimeProfileError(
                f"{where}: utilisation_cap={cap!r} must be in (0, 1], the share of host_cores a plan may keep busy "
                f"(default {HOST_UTILISATION_CAP})"
            )
        if not isinstance(self.fusion, bool):
            raise RuntimeProfileError(f"{where}: fusion={self.fusion!r} must be true or false")
        stages = self.inline_stages
        if isinstance(stages, str) or not all(isinstance(s, str) and s for s in stages):
            raise RuntimeProfileError(
                f"{where}: inline_stages={stages!r} must be a list of stage names (the stages the runtime runs in "
                "its ingress process)"
            )
        if not isinstance(self.conditions, Mapping):
            raise RuntimeProfileError(
                f"{where}: conditions={self.conditions!r} must be a mapping (cpu model, cores, when, rps, how)"
            )
        object.__setattr__(self, "host_cores", float(h))
        for name in _CPU_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "replica_start_s", float(st))
        object.__setattr__(self, "utilisation_cap", float(cap))
        object.__setattr__(self, "switch_reserve_cores", float(rv))
        object.__setattr__(self, "inline_stages", frozenset(stages))
        object.__setattr__(self, "conditions", dict(self.conditions))

    @classmethod
    def zero(cls, host_cores: float) -> RuntimeProfile:
        """A runtime that costs nothing beside the models, on `host_cores` cores: only the models' CPU is counted."""
        return cls(host_cores=host_cores, request_cpu_s=0.0, call_cpu_s=0.0, item_cpu_s=0.0)

    @property
    def per_request_cpu_s(self) -> float:
        """CPU per request that no stage choice changes: the path outside the stages plus the work beside it."""
        return self.request_cpu_s + self.side_cpu_s

    @property
    def holds_cores(self) -> float:
        """The cores of CPU a configuration may keep busy on average and hold its SLA: utilisation_cap x
        host_cores (what it holds: admission, capacity reports)."""
        return self.utilisation_cap * self.host_cores

    @property
    def cpu_budget_cores(self) -> float:
        """The cores of CPU a plan may keep busy on average: what a configuration holds, less the reserve for
        replicas starting where the host has more cores than the reserve."""
        if self.host_cores <= self.switch_reserve_cores:
            return self.holds_cores
        return min(self.holds_cores, self.host_cores - self.switch_reserve_cores)

    def without_reserve(self) -> RuntimeProfile:
        """This profile with no switch reserve: what a configuration holds once it serves (admission, capacity
        reports, a static configuration that never starts a replica)."""
        return dataclasses.replace(self, switch_reserve_cores=0.0)

    def hop_cpu_s(self, batch: int) -> float:
        """CPU of one remote call carrying `batch` items, outside predict."""
        return self.call_cpu_s + batch * self.item_cpu_s

    def is_inline(self, stage: str, batch1_service_s: float) -> bool:
        """Whether the runtime runs `stage` in its ingress process: named in inline_stages, or (with fusion) light
        by `runs_inline`."""
        return stage in self.inline_stages or (self.fusion and runs_inline(batch1_service_s, self))

    def to_dict(self) -> dict[str, Any]:
        return {
            "host_cores": self.host_cores,
            "request_cpu_s": self.request_cpu_s,
            "call_cpu_s": self.call_cpu_s,
            "item_cpu_s": self.item_cpu_s,
            "side_cpu_s": self.side_cpu_s,
            "replica_start_s": self.replica_start_s,
            "utilisation_cap": self.utilisation_cap,
            "switch_reserve_cores": self.switch_reserve_cores,
            "fusion": self.fusion,
            "inline_stages": sorted(self.inline_stages),
            "conditions": dict(self.conditions),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "runtime profile") -> RuntimeProfile:
        if not isinstance(d, Mapping):
            raise RuntimeProfileError(f"{where}: expected a JSON object with {', '.join(_REQUIRED)}; got {d!r}")
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise RuntimeProfileError(
                f"{where}: unknown field(s) {', '.join(unknown)}; the fields are {', '.join(_FIELDS)}"
            )
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise RuntimeProfileError(
                f"{where}: missing field(s) {', '.join(missing)}; measure them with `pipetune profile --runtime`"
            )
        kw = dict(d)
        if "inline_stages" in kw:
            if not isinstance(kw["inline_stages"], list):
                raise RuntimeProfileError(
                    f"{where}: inline_stages={kw['inline_stages']!r} must be a list of stage names"
                )
            kw["inline_stages"] = frozenset(kw["inline_stages"])
        try:
            return cls(**kw)
        except RuntimeProfileError as e:
            raise RuntimeProfileError(str(e).replace("runtime profile", where, 1)) from None

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(jsonio.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RuntimeProfile:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise RuntimeProfileError(f"runtime profile {p}: cannot read it ({e.strerror or e})") from None

        def no_constant(name: str) -> Any:
            raise ValueError(f"{name} is not strict JSON; write a finite number")

        try:
            d = json.loads(text, parse_constant=no_constant)
        except ValueError as e:
            raise RuntimeProfileError(f"runtime profile {p}: not strict JSON ({e}); fix or re-measure it") from None
        return cls.from_dict(d, where=f"runtime profile {p}")


# An inline stage's every variant is loaded in the ingress before it serves: only models that load within this
INLINE_LOAD_S = 5.0
# A remote stage call's CPU (caller and callee, outside predict) assumed where none was measured: Ray's order of it.
ASSUMED_CALL_CPU_S = 1e-3


def assumed_runtime(host_cores: float) -> RuntimeProfile:
    """What the runtime goes by where no runtime profile was measured: no cost counted per request, a stage call
    assumed to cost ASSUMED_CALL_CPU_S, fusion on. It decides which stages run in the ingress (a stage lighter than
    a call), and nothing else: the planner counts no runtime cost without a measured profile."""
    return RuntimeProfile(
        host_cores=host_cores,
        request_cpu_s=0.0,
        call_cpu_s=ASSUMED_CALL_CPU_S,
        item_cpu_s=0.0,
        fusion=True,
        conditions={"how": "assumed: no runtime profile measured (pipetune profile --runtime)"},
    )


def runs_inline(batch1_service_s: float, runtime: RuntimeProfile) -> bool:
    """The fusion rule, one home for the planner and the runtime: a stage whose variant serves one item in less
    CPU than a remote call of it costs (call + one item) is cheaper run in the ingress process than called."""
    return batch1_service_s < runtime.call_cpu_s + runtime.item_cpu_s


def runtime_path(pipeline: Any) -> Path | None:
    """Where the pipeline's runtime profile lives: `RUNTIME_FILE` in the directory of its model profile (the
    pipeline-level `profile:`, else the first stage's first variant's). None when no profile path is set."""
    rel = getattr(pipeline, "profile", None)
    if rel:
        p = pipeline.resolve(rel)
    else:
        st = pipeline.stages[0]
        p = pipeline.profile_path(st.name, st.variants[0].name)
    return None if p is None else Path(p).parent / RUNTIME_FILE


def load_runtime_for(pipeline: Any) -> RuntimeProfile | None:
    """The runtime profile beside the pipeline's model profile, or None when there is none."""
    p = runtime_path(pipeline)
    if p is None or not p.is_file():
        return None
    return RuntimeProfile.load(p)
