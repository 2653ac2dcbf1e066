"""Experiment files (YAML): a pipeline, workload windows, systems (policy + predictor), seeds and settings.

    name: synthetic-grid
    pipeline: example:synthetic            # a bundled example, or a path relative to this file
    workloads:                             # each becomes one panel of the Figure-8 grid
      - {name: bursty, synthetic: bursty, peak: 30, seconds: 1200}
      - {name: steady-high, paper: steady-high}          # IPA's window from ../shared, divided by 8
      - {name: mine, trace: traces/mine.txt, start: 0, duration: 1200, damping: 1}
    systems:
      - {name: IPA, policy: ipa, predictor: reactive}
      - {name: RIM, policy: rim, predictor: reactive, params: {replicas: 3}}
    seeds: [0]
    settings: {interval_s: 10, arrival_process: poisson, drop_limit_s: null, batch_wait_s: null}
    ablation: {policy: ipa, predictors: [oracle, reactive, max]}          # optional
    sweep: {workload: bursty, predictor: oracle, alpha: [1, 10], beta: [0.01, 0.1]}   # optional
    calibration: {samples: 40, seconds: 300}                              # optional

Everything is checked when the file is read, before anything runs: policies and their parameters (a typo such
as `replica: 3` is refused with the parameter it means), predictors and theirs, arrival processes, service modes,
load patterns. Errors name the field and the fix (ExperimentError, a PipetuneError).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from pipetune.errors import PipetuneError
from pipetune.spec import format_validation_error, read_yaml_mapping

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class ExperimentError(PipetuneError):
    """An experiment file is invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(what: str, value: Any, known: list[str] | tuple[str, ...]) -> None:
    if value not in known:
        raise ValueError(f"{what} {value!r} is unknown{_hint(str(value), list(known))}; use one of {', '.join(known)}")


# ---- policies and their parameters (what pipetune.optimizer.plan_pipeline reads from **params) ---------------
class _PolicyParams(_Strict):
    measured_only: bool = Field(default=False, description="true or false: plan on measured profile cells alone")


class _FA2HighParams(_PolicyParams):
    heavy: dict[str, str] = Field(default_factory=dict, description="{stage: the variant held fixed}")


class _RimParams(_PolicyParams):
    replicas: PositiveInt | dict[str, PositiveInt] | None = Field(
        default=None, description="a whole number >= 1, or {stage: whole number >= 1}"
    )


class _StaticPeakParams(_PolicyParams):
    peak_rps: PositiveFloat | None = Field(default=None, description="a rate > 0 (default: the workload's peak)")


class _RayAutoscaleParams(_Strict):
    """Ray Serve's autoscaling_config fields, checked here; an omitted one takes Ray's default, whose one home is
    pipetune.backends.simulator.autoscaler.AutoscalingConfig. `start`: the planner policy whose first plan fixes
    the variants, batch sizes and cores (default ipa)."""

    start: Literal["ipa", "fa2-low", "fa2-high"] | None = Field(default=None, description="ipa, fa2-low or fa2-high")
    target_ongoing_requests: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="a number > 0")
    min_replicas: PositiveInt | None = Field(default=None, description="a whole number >= 1")
    max_replicas: PositiveInt | None = Field(
        default=None, description="a whole number >= 1 (default caps.max_replicas)"
    )
    upscale_delay_s: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="seconds >= 0")
    downscale_delay_s: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="seconds >= 0")
    look_back_period_s: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="seconds > 0")
    metrics_interval_s: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="seconds > 0")
    smoothing_factor: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="a number > 0")
    upscale_smoothing_factor: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="> 0")
    downscale_smoothing_factor: PositiveFloat | None = Field(default=None, allow_inf_nan=False, description="> 0")


POLICY_PARAMS: dict[str, type[_Strict]] = {
    "ipa": _PolicyParams,
    "fa2-low": _PolicyParams,
    "fa2-high": _FA2HighParams,
    "rim": _RimParams,
    "static-peak": _StaticPeakParams,
    "ray-autoscale": _RayAutoscaleParams,  # not a planner: Ray Serve's reactive autoscaler on fixed variants
}
POLICIES = tuple(POLICY_PARAMS)


def check_policy(policy: str) -> str:
    _one_of("policy", policy, POLICIES)
    return policy


def check_planner_policy(policy: str) -> str:
    """A policy the adapter plans with (an ablation's or sweep's: they vary the predictor or the objective)."""
    _one_of("policy", policy, [p for p in POLICIES if p != "ray-autoscale"])
    return policy


def check_policy_params(policy: str, params: dict[str, Any]) -> None:
    """Refuse a parameter `policy` does not read (naming the one meant) or a value of the wrong type."""
    model = POLICY_PARAMS[policy]
    valid = list(model.model_fields)
    for k in params:
        if k not in valid:
            owners = [p for p, m in POLICY_PARAMS.items() if k in m.model_fields]
            where = f" (a parameter of {', '.join(owners)})" if owners else _hint(k, valid)
            raise ValueError(f"params.{k}: policy {policy!r} has no parameter {k!r}{where}; valid: {', '.join(valid)}")
    try:
        model.model_validate(params)
    except ValidationError as e:
        k = str(e.errors()[0]["loc"][0])
        raise ValueError(
            f"params.{k}: {params[k]!r} is not valid for policy {policy!r}; give {model.model_fields[k].description}"
        ) from None


# ---- predictors ------------------------------------------------------------------------------------------------
ORACLE_PARAMS = ("horizon", "stat")


def check_predictor(spec: str | dict[str, Any]) -> str | dict[str, Any]:
    """A predictor name, or {name: ..., parameters...}: the name known, every parameter one it takes, and (for the
    predictors that need no trained file) the values accepted by its constructor."""
    from pipetune.errors import PipetuneError as _Err
    from pipetune.predictors import DEFAULT_PREDICTOR, PREDICTORS
    from pipetune.predictors.lstm import IPALSTM

    params: dict[str, Any] = {}
    name: Any = spec
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError("predictor: a mapping needs a name, e.g. {name: ewma, alpha: 0.2}")
        name = spec["name"]
        params = {k: v for k, v in spec.items() if k != "name"}
    known = ["oracle", "default", *PREDICTORS]
    if not isinstance(name, str):
        raise ValueError(f"predictor name {name!r} must be a string; use one of {', '.join(known)}")
    _one_of("predictor", name, known)
    if name == "oracle":
        valid: list[str] = list(ORACLE_PARAMS)
    else:
        cls = PREDICTORS[DEFAULT_PREDICTOR if name == "default" else name]
        trained = issubclass(cls, IPALSTM)
        valid = cls._param_names() + (["model", "pretrained"] if trained else [])
    for k in params:
        if k not in valid:
            raise ValueError(f"predictor {name!r} has no parameter {k!r}{_hint(k, valid)}; valid: {', '.join(valid)}")
    if name == "oracle":
        if params.get("stat", "max") not in ("max", "mean"):
            raise ValueError(f"predictor 'oracle': stat {params['stat']!r} is unknown; use max or mean")
        h = params.get("horizon", 1)
        if not (isinstance(h, int) and not isinstance(h, bool) and h >= 1):
            raise ValueError(f"predictor 'oracle': horizon {h!r} must be a whole number of seconds >= 1")
    elif not trained:
        try:
            cls(**params)  # cheap: no model file, no torch
        except (_Err, TypeError, ValueError) as e:
            raise ValueError(f"predictor {name!r}: {e}") from None
    return spec


class Workload(_Strict):
    name: str = Field(min_length=1)
    synthetic: str | None = Field(default=None, description="a pattern of pipetune.workloads.synthetic_pattern")
    paper: str | None = Field(default=None, description="one of IPA's windows (needs ../shared)")
    trace: str | None = Field(default=None, description="a per-second count file")
    peak: float = Field(default=30.0, gt=0, description="synthetic: peak rps")
    seconds: int = Field(default=1200, ge=120, description="synthetic: length")
    start: int = Field(default=0, ge=0, description="trace: first second")
    duration: int | None = Field(default=None, ge=1, description="trace / paper: seconds to keep")
    damping: float = Field(default=1.0, gt=0, description="trace: divide counts by this (paper: IPA's 8)")
    scale: float = Field(default=1.0, gt=0, description="multiply the counts (to fit a pipeline's capacity)")
    seed: int = 0

    @field_validator("synthetic", "paper")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        from pipetune.workloads import PATTERNS

        if v is not None:
            _one_of("pattern", v, PATTERNS)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Workload:
        given = [k for k in ("synthetic", "paper", "trace") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"workload {self.name!r}: give exactly one of synthetic, paper or trace (got {given or 'none'})"
            )
        return self


class System(_Strict):
    name: str = Field(min_length=1)
    policy: str = "ipa"
    predictor: str | dict[str, Any] = "reactive"
    params: dict[str, Any] = Field(default_factory=dict, description="policy parameters (e.g. rim replicas)")

    _policy = field_validator("policy")(classmethod(lambda cls, v: check_policy(v)))
    _predictor = field_validator("predictor")(classmethod(lambda cls, v: check_predictor(v)))

    @model_validator(mode="after")
    def _params(self) -> System:
        check_policy_params(self.policy, self.params)
        return self


def _host_cpu(what: str) -> Any:
    """A shared-host CPU knob of the simulator (engine.HOST_CPU_KNOBS): >= 0, finite, 0 by default."""
    return Field(default=0.0, ge=0, allow_inf_nan=False, description=f"{what} (needs host_cores)")


class Settings(_Strict):
    interval_s: float = Field(default=10.0, gt=0, description="adaptation interval (IPA: 10)")
    arrival_process: str = Field(default="poisson", description="poisson | uniform | step")
    drop_limit_s: float | None = Field(default=None, gt=0, description="default: the SLA")
    batch_wait_s: float | None = Field(default=None, ge=0)
    service: Literal["profile", "deterministic", "exponential"] = Field(
        default="profile", description="service times: drawn from the profile, fixed at its mean, or exponential"
    )
    load_time_s: float | None = Field(default=None, ge=0)
    rps_quantum: float = Field(default=0.0, ge=0, description="plan for the prediction rounded up to this grid")
    shared_dir: str | None = Field(default=None, description="folder with traces/paper-windows (default ../shared)")
    host_cores: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="physical cores every replica shares (simulator processor sharing; default: none shared)",
    )  # fmt: skip
    host_overhead_s: float = _host_cpu("CPU-seconds each request costs on the shared host outside the models")
    host_hop_s: float = _host_cpu("CPU-seconds each item costs its stage's replica outside the model")
    host_call_s: float = _host_cpu("CPU-seconds each stage call (one batch) costs outside the model")
    host_side_s: float = _host_cpu("CPU-seconds per request the shared host spends beside its path")
    host_load_cores: float = _host_cpu("cores a loading replica keeps busy on the shared host (0: a delay only)")

    @model_validator(mode="after")
    def _host(self) -> Settings:
        from pipetune.backends.simulator.engine import HOST_CPU_KNOBS

        for name in HOST_CPU_KNOBS:
            v = getattr(self, name)
            if v > 0 and self.host_cores is None:
                raise ValueError(f"{name}={v} is CPU on the shared host: set host_cores too (or {name}: 0)")
        return self

    @field_validator("arrival_process")
    @classmethod
    def _process(cls, v: str) -> str:
        from pipetune.workloads.arrivals import PROCESSES

        _one_of("arrival process", v, PROCESSES)
        return v


class Ablation(_Strict):
    policy: str = "ipa"
    predictors: list[str | dict[str, Any]] = Field(min_length=1)
    workloads: list[str] | None = None

    _policy = field_validator("policy")(classmethod(lambda cls, v: check_planner_policy(v)))

    @field_validator("predictors")
    @classmethod
    def _predictors(cls, v: list) -> list:
        for i, p in enumerate(v):
            try:
                check_predictor(p)
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
        return v


class Sweep(_Strict):
    workload: str | None = None
    predictor: str | dict[str, Any] = "oracle"
    policy: str = "ipa"
    alpha: list[float] = Field(min_length=1, description="objective.alpha values (each checked by the pipeline)")
    beta: list[float] = Field(min_length=1, description="objective.beta values (each checked by the pipeline)")

    _policy = field_validator("policy")(classmethod(lambda cls, v: check_planner_policy(v)))
    _predictor = field_validator("predictor")(classmethod(lambda cls, v: check_predictor(v)))


class Calibration(_Strict):
    samples: int = Field(default=40, ge=1, description="distinct ipa plans to re-simulate at steady load")
    seconds: float = Field(default=300.0, gt=10)
    system: str | None = Field(default=None, description="system whose plans are checked (default: first ipa one)")


class Experiment(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    pipeline: str | list[str] = Field(
        description="example:NAME or a path to a pipeline YAML relative to this file; a list runs the grid on each"
    )
    workloads: list[Workload] = Field(min_length=1)
    systems: list[System] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    settings: Settings = Field(default_factory=Settings)
    ablation: Ablation | None = None
    sweep: Sweep | None = None
    calibration: Calibration | None = Field(default_factory=Calibration)
    notes: list[str] = Field(default_factory=list, description="the author's remarks, printed in the report")
    load_scale: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="{pipeline label: factor > 0} multiplying every workload's counts on that pipeline (extra damping)",
    )
    base_dir: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _names(self) -> Experiment:
        if isinstance(self.pipeline, list) and not self.pipeline:
            raise ValueError("pipeline: the list is empty; name at least one pipeline")
        for what, items in (("workloads", self.workloads), ("systems", self.systems)):
            names = [x.name for x in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{what}: names must be unique; repeated: {dup}")
        known = {w.name for w in self.workloads}
        if self.sweep and self.sweep.workload and self.sweep.workload not in known:
            raise ValueError(f"sweep.workload {self.sweep.workload!r} is not a workload; known: {sorted(known)}")
        systems = [s.name for s in self.systems]
        if self.calibration and self.calibration.system and self.calibration.system not in systems:
            raise ValueError(
                f"calibration.system {self.calibration.system!r} is not a system{_hint(self.calibration.system, systems)}"
                f"; known: {systems}"
            )
        if self.ablation and self.ablation.workloads:
            bad = [w for w in self.ablation.workloads if w not in known]
            if bad:
                raise ValueError(f"ablation.workloads {bad} are not workloads; known: {sorted(known)}")
        return self

    @property
    def pipeline_refs(self) -> list[str]:
        return [self.pipeline] if isinstance(self.pipeline, str) else list(self.pipeline)

    def pipeline_paths(self) -> dict[str, Path]:
        """label -> pipeline YAML; the label is the pipeline's folder name (e.g. video, synthetic)."""
        out: dict[str, Path] = {}
        for ref in self.pipeline_refs:
            path = self._resolve_pipeline(ref)
            label = path.parent.name
            if label in out:
                label = f"{label}-{len(out)}"
            out[label] = path
        return out

    def check_load_scale(self) -> None:
        """Every key of load_scale names a pipeline of this experiment (a typo would silently scale nothing)."""
        labels = list(self.pipeline_paths())
        bad = [k for k in self.load_scale if k not in labels]
        if bad:
            raise ExperimentError(
                f"load_scale: {bad} {'is not a pipeline' if len(bad) == 1 else 'are not pipelines'}"
                f"{_hint(bad[0], labels)}; the pipelines are {labels}"
            )

    def pipeline_path(self) -> Path:
        """The first (or only) pipeline's YAML."""
        return next(iter(self.pipeline_paths().values()))

    def _resolve_pipeline(self, ref: str) -> Path:
        if ref.startswith("example:"):
            name = ref.split(":", 1)[1]
            path = EXAMPLES_DIR / name / "pipeline.yaml"
            if not path.exists():
                have = sorted(
                    p.parent.relative_to(EXAMPLES_DIR).as_posix() for p in EXAMPLES_DIR.rglob("pipeline.yaml")
                )
                raise ExperimentError(f"pipeline: no bundled example {name!r}; bundled: {have}")
            return path
        p = Path(ref)
        if not p.is_absolute() and self.base_dir:
            p = Path(self.base_dir) / p
        if not p.exists():
            raise ExperimentError(f"pipeline: {p} does not exist; give example:NAME or a path to a pipeline YAML")
        return p

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


def parse_experiment(data: Any, base_dir: str | Path | None = None, where: str = "(dict)") -> Experiment:
    if not isinstance(data, dict):
        raise ExperimentError(f"invalid experiment file {where}: the top level must be a mapping")
    try:
        return Experiment.model_validate({**data, "base_dir": str(base_dir) if base_dir else None})
    except ValidationError as e:
        raise ExperimentError(format_validation_error(e, where, "experiment file", "docs/experiments.md")) from None


def load_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    data = read_yaml_mapping(path, "experiment file", ExperimentError)
    return parse_experiment(data, base_dir=path.parent, where=str(path))
