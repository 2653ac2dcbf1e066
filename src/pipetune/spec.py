"""Pipeline specification: stages, variants, edges (a DAG), SLA, objective and caps.

A spec is written in YAML and validated with pydantic v2. Every validation error names the field that is
wrong and says how to fix it; `load_pipeline()` turns them into a `SpecError` (one message, no traceback).

The graph model
---------------
* A *request* enters the pipeline at every **source** stage (stages without incoming edges, unless
  `sources` says otherwise). `sources` may give each source a *share*: the fraction of requests that carry
  an input for that source (default 1.0 = every request).
* An **edge** `a -> b` carries `multiplicity` items into `b` for each item that leaves `a` (e.g. a detector
  that emits 3 crops per frame has multiplicity 3).
* A stage with several incoming edges is a **fan-in**. `fan_in: join` (default, an ensemble) waits for all
  items of the same request from every parent and processes them as ONE item, so its item rate is the rate
  of requests that reach it; `fan_in: merge` processes each parent's items independently (rates add up).
* End-to-end latency is the longest path through the DAG from any source to any sink.
* A spec with several stages must say how they connect: `edges:` missing is an error (`edges: []` states
  that every stage is an independent source); a single stage needs none.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipetune.errors import PipetuneError, SpecError

AccuracyMethod = Literal["pas", "sum", "mean", "rank_sum"]


WARM_GROUP = "warm"  # the generation name of a stage's warm variants (no variant may take it: see Stage)


def warm_group_of(warm_variants: Sequence[str], variant: str) -> str | None:
    """`Stage.warm_group` from the stage's warm variants alone (for those that hold only these, not the spec)."""
    return WARM_GROUP if len(warm_variants) > 1 and variant in warm_variants else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(_Strict):
    """One model that can serve a stage."""

    name: str = Field(min_length=1)
    accuracy: float = Field(description="task accuracy in [0, 1] (a WER becomes 1 - WER)")
    profile: str | None = Field(
        default=None, description="CSV ProfileTable with this variant's rows (defaults to the stage's/pipeline's)"
    )
    model: dict | None = Field(default=None, description="how to load the real model (profiler/serving)")

    @field_validator("accuracy")
    @classmethod
    def _accuracy_in_unit_interval(cls, v: float) -> float:
        if not (0.0 <= v <= 1.0) or math.isnan(v):
            raise ValueError(f"accuracy {v} is outside [0, 1]; write it as a fraction (76.1% -> 0.761, WER 0.3 -> 0.7)")
        return float(v)


class Stage(_Strict):
    name: str = Field(min_length=1)
    variants: list[Variant] = Field(min_length=1)
    profile: str | None = None
    fan_in: Literal["join", "merge"] = "join"
    batch_sizes: list[int] | None = Field(default=None, description="overrides caps.batch_sizes for this stage")
    cores: list[int] | None = Field(default=None, description="overrides caps.cores for this stage")
    warm_variants: list[str] = Field(
        default_factory=list,
        description="variants every replica of this stage keeps loaded: a switch among them on the same cores "
        "changes the route, starts no replica (costs each replica their memory and load time)",
    )

    @model_validator(mode="after")
    def _unique_variants(self) -> Stage:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variant names must be unique within a stage; repeated: {dup}")
        unknown = [w for w in self.warm_variants if w not in names]
        if unknown:
            raise ValueError(f"warm_variants names {unknown}, not variants of stage {self.name!r}; use some of {names}")
        if self.warm_variants and WARM_GROUP in names:
            raise ValueError(
                f"stage {self.name!r} has a variant named {WARM_GROUP!r}, the name its warm_variants are served "
                "under: rename that variant"
            )
        if len(set(self.warm_variants)) != len(self.warm_variants):
            raise ValueError(f"warm_variants of stage {self.name!r} repeats a variant: {self.warm_variants}")
        return self

    def warm_group(self, variant: str) -> str | None:
        """The name of the group of warm variants `variant` belongs to (one generation of replicas serves them
        all, switching among them in place), or None: a generation of its own."""
        return warm_group_of(self.warm_variants, variant)


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    src: str = Field(alias="from")
    dst: str = Field(alias="to")
    multiplicity: float = Field(default=1.0, gt=0, description="items sent to `to` per item leaving `from`")


class SLA(_Strict):
    seconds: float = Field(gt=0, description="end-to-end latency bound")
    percentile: float = Field(default=99.0, description="latency percentile the SLA binds")

    @field_validator("percentile")
    @classmethod
    def _pct(cls, v: float) -> float:
        if not (50.0 <= v < 100.0):
            raise ValueError(f"percentile {v} must be in [50, 100), e.g. 99 for p99")
        return v


class Objective(_Strict):
    accuracy: AccuracyMethod = Field(default="pas", description="pas | sum | mean | rank_sum")
    alpha: float = Field(default=1.0, ge=0, description="weight of accuracy")
    beta: float = Field(default=0.01, ge=0, description="weight of cost (cores held)")
    gamma: float = Field(default=1e-6, ge=0, description="weight of the sum of batch sizes")

    # The one home of the objective's formula: the planner's options (arrays), its MILP and local search, and the
    # plan it reports all read it. (optimizer/oracle.py keeps its own copy on purpose: it is the independent check.)
    def terms(self, accuracy, cost, batch) -> dict:
        """The signed terms alpha*accuracy, -beta*cost, -gamma*batch (scalars or arrays alike)."""
        return {"accuracy": self.alpha * accuracy, "cost": -self.beta * cost, "batch": -self.gamma * batch}

    def value(self, accuracy, cost, batch):
        """alpha*accuracy - beta*cost - gamma*batch: what the planner maximises."""
        return self.alpha * accuracy - self.beta * cost - self.gamma * batch


class Caps(_Strict):
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    cores: list[int] = Field(default_factory=lambda: [1], description="cores-per-replica options")
    max_replicas: int = Field(default=100, ge=1)
    max_total_cores: float | None = Field(default=None, gt=0)
    headroom: float = Field(default=0.0, ge=0, description="capacity must exceed load by this fraction")
    max_batch_wait_s: float | None = Field(
        default=None, gt=0, description="batch timeout; default: no timeout beyond the SLA"
    )
    mix_variants: int = Field(
        default=1,
        ge=1,
        le=2,
        description="variants a stage may split its load over (1: one variant per stage; 2: a share of the load "
        "on a second variant, decided by the optimizer)",
    )


class Availability(_Strict):
    spare_replica: bool = Field(
        default=False,
        description="keep at least 2 replicas of every stage that runs as replicas, so that one replica dying "
        "leaves the stage serving (at reduced capacity) while Ray replaces it; when no plan with the spares fits "
        "the budget, the planner plans without them and says so in the plan's note",
    )


def _check_positive_sorted(name: str, values: list[int]) -> list[int]:
    if not values:
        raise ValueError(f"{name} is empty; give at least one value, e.g. [1]")
    bad = [v for v in values if v < 1]
    if bad:
        raise ValueError(f"{name} must be positive integers; got {bad}")
    return sorted(set(values))


class Pipeline(_Strict):
    """A validated pipeline. Build it with `load_pipeline(path)` or `Pipeline.model_validate(dict)`."""

    name: str = Field(min_length=1)
    description: str = ""
    sla: SLA
    objective: Objective = Field(default_factory=Objective)
    caps: Caps = Field(default_factory=Caps)
    availability: Availability = Field(default_factory=Availability)
    profile: str | None = Field(default=None, description="default ProfileTable CSV for all stages")
    stages: list[Stage] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    sources: dict[str, float] | None = Field(default=None, description="source stage -> share of requests")
    base_dir: str | None = Field(default=None, exclude=True, description="folder relative paths start from")

    @field_validator("caps")
    @classmethod
    def _caps_sorted(cls, caps: Caps) -> Caps:
        return caps.model_copy(
            update={
                "batch_sizes": _check_positive_sorted("caps.batch_sizes", caps.batch_sizes),
                "cores": _check_positive_sorted("caps.cores", caps.cores),
            }
        )

    @model_validator(mode="after")
    def _graph(self) -> Pipeline:
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stages: stage names must be unique; repeated: {dup}")
        known = set(names)
        if len(names) > 1 and "edges" not in self.model_fields_set:
            # Several stages read as parallel sources only when the spec says so: a forgotten `edges:` would
            # otherwise plan and serve a chain as independent stages, silently.
            raise ValueError(
                f"edges: missing; a pipeline with {len(names)} stages needs `edges:` to say how they connect, "
                f"e.g. edges: [{{from: {names[0]}, to: {names[1]}}}] (write `edges: []` if every stage is an "
                "independent source)"
            )
        for i, e in enumerate(self.edges):
            for end, n in (("from", e.src), ("to", e.dst)):
                if n not in known:
                    raise ValueError(f"edges[{i}].{end}: unknown stage {n!r}; known stages: {sorted(known)}")
            if e.src == e.dst:
                raise ValueError(f"edges[{i}]: self-loop on {e.src!r}; a pipeline must be acyclic")
        pairs = [(e.src, e.dst) for e in self.edges]
        if len(set(pairs)) != len(pairs):
            raise ValueError("edges: the same edge is listed twice; give each from/to pair once")
        for s in self.stages:
            for fld in ("batch_sizes", "cores"):
                if getattr(s, fld) is not None:
                    _check_positive_sorted(f"stages[{s.name}].{fld}", getattr(s, fld))
        cycle = _find_cycle(names, pairs)
        if cycle:
            raise ValueError(f"edges: the graph has a cycle {' -> '.join(cycle)}; remove one of these edges")
        if self.sources is not None:
            if not self.sources:
                raise ValueError("sources is empty; omit it to use every stage without incoming edges")
            for n, share in self.sources.items():
                if n not in known:
                    raise ValueError(f"sources: unknown stage {n!r}; known stages: {sorted(known)}")
                if not (0 < share <= 1):
                    raise ValueError(f"sources.{n}: share {share} must be in (0, 1]")
            has_in = {d for _, d in pairs}
            for n in self.sources:
                if n in has_in:
                    raise ValueError(f"sources: {n!r} has incoming edges; a source must be a stage with none")
            orphans = [n for n in names if n not in has_in and n not in self.sources]
            if orphans:
                raise ValueError(f"sources: stages {orphans} have no incoming edge and are not listed as sources")
        return self

    # ---- derived graph facts -------------------------------------------------------------------------
    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def parents(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == name]

    def children(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.src == name]

    def source_shares(self) -> dict[str, float]:
        if self.sources is not None:
            return dict(self.sources)
        has_in = {e.dst for e in self.edges}
        return {n: 1.0 for n in self.stage_names if n not in has_in}

    def sinks(self) -> list[str]:
        has_out = {e.src for e in self.edges}
        return [n for n in self.stage_names if n not in has_out]

    def topological_order(self) -> list[str]:
        order = _topo(self.stage_names, [(e.src, e.dst) for e in self.edges])
        assert order is not None  # validated acyclic
        return order

    def load_factors(self) -> dict[str, float]:
        """Items per second arriving at each stage per request per second (λ_stage = λ × factor)."""
        shares = self.source_shares()
        factor: dict[str, float] = {}
        reach: dict[str, float] = {}  # share of requests that pass through the stage
        for n in self.topological_order():
            ins = self.parents(n)
            if not ins:
                factor[n] = reach[n] = shares.get(n, 0.0)
                continue
            if len(ins) > 1 and self.stage(n).fan_in == "join":
                # An ensemble join gathers everything of one request into one item.
                reach[n] = max(reach[e.src] for e in ins)
                factor[n] = reach[n]
            else:
                reach[n] = min(1.0, sum(reach[e.src] for e in ins))
                factor[n] = sum(factor[e.src] * e.multiplicity for e in ins)
        return factor

    def paths(self) -> list[list[str]]:
        """Every source-to-sink path (used by the oracle and for reporting the critical path)."""
        shares = self.source_shares()
        out: list[list[str]] = []

        def walk(n: str, acc: list[str]) -> None:
            kids = self.children(n)
            if not kids:
                out.append(acc + [n])
            for e in kids:
                walk(e.dst, acc + [n])

        for s in shares:
            walk(s, [])
        return out

    def batch_sizes_for(self, stage: str) -> list[int]:
        s = self.stage(stage)
        return sorted(set(s.batch_sizes)) if s.batch_sizes else list(self.caps.batch_sizes)

    def cores_for(self, stage: str) -> list[int]:
        s = self.stage(stage)
        return sorted(set(s.cores)) if s.cores else list(self.caps.cores)

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        return p

    def profile_path(self, stage: str, variant: str) -> Path | None:
        s = self.stage(stage)
        v = next(x for x in s.variants if x.name == variant)
        rel = v.profile or s.profile or self.profile
        return self.resolve(rel) if rel else None


def _topo(nodes: list[str], pairs: list[tuple[str, str]]) -> list[str] | None:
    indeg = dict.fromkeys(nodes, 0)
    kids: dict[str, list[str]] = defaultdict(list)
    for a, b in pairs:
        indeg[b] += 1
        kids[a].append(b)
    q = deque(n for n in nodes if indeg[n] == 0)
    order = []
    while q:
        n = q.popleft()
        order.append(n)
        for k in kids[n]:
            indeg[k] -= 1
            if indeg[k] == 0:
                q.append(k)
    return order if len(order) == len(nodes) else None


def _find_cycle(nodes: list[str], pairs: list[tuple[str, str]]) -> list[str] | None:
    kids: dict[str, list[str]] = defaultdict(list)
    for a, b in pairs:
        kids[a].append(b)
    color = dict.fromkeys(nodes, 0)
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for k in kids[n]:
            if color[k] == 1:
                return stack[stack.index(k) :] + [k]
            if color[k] == 0:
                found = dfs(k)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in nodes:
        if color[n] == 0:
            c = dfs(n)
            if c:
                return c
    return None


def format_validation_error(
    err: ValidationError, where: str = "", what: str = "pipeline spec", docs: str = "docs/spec.md"
) -> str:
    """One line per problem: the field's dotted path, what is wrong and how to fix it."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if x != "__root__") or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "is required but missing; add it"
        elif e["type"] == "extra_forbidden":
            msg = f"is not a known field; check its spelling (see {docs})"
        lines.append(f"  {loc}: {msg}")
    head = f"invalid {what}{(' ' + where) if where else ''}:"
    return "\n".join([head, *lines])


def read_yaml_mapping(path: str | Path, what: str, error: type[PipetuneError]) -> dict:
    """Read a YAML file that must hold a mapping; every failure is an `error` naming the file."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {path} does not exist; give the path to a YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise error(f"invalid {what} {path}: the top level must be a mapping")
    return data


def parse_pipeline(data: dict, base_dir: str | Path | None = None, where: str = "") -> Pipeline:
    """Validate a spec given as a dict; raise SpecError with field-named messages."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid pipeline spec{(' ' + where) if where else ''}: the top level must be a mapping")
    try:
        p = Pipeline.model_validate({**data, "base_dir": str(base_dir) if base_dir else None})
    except ValidationError as e:
        raise SpecError(format_validation_error(e, where)) from None
    return p


def example_path(name: str = "synthetic") -> str:
    """Path of a bundled example pipeline YAML (synthetic, digits, text, paper/<name>)."""
    p = Path(__file__).parent / "examples" / name / "pipeline.yaml"
    if not p.exists():
        raise PipetuneError(f"no bundled example {name!r} (looked for {p})")
    return str(p)


def load_pipeline(path: str | Path, check_profiles: bool = True) -> Pipeline:
    """Read and validate a pipeline YAML. With `check_profiles`, also load every profile and check that each
    variant has rows and that the SLA can be met by at least one configuration."""
    path = Path(path)
    data = read_yaml_mapping(path, "pipeline spec", SpecError)
    p = parse_pipeline(data, base_dir=path.parent, where=str(path))
    if check_profiles:
        # here, not at the top: profiles imports numpy, and `import pipetune` (which imports this module) must
        # not, so that the profiler's worker can pin numpy's thread pools before numpy loads
        from pipetune.profiles import load_profiles

        load_profiles(p)
    return p
