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

Errors name the field and the fix (ExperimentError, a PipetuneError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipetune.errors import PipetuneError
from pipetune.spec import format_validation_error, read_yaml_mapping

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"


class ExperimentError(PipetuneError):
    """An experiment file is invalid; the message names the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @field_validator("policy")
    @classmethod
    def _policy(cls, v: str) -> str:
        known = ("ipa", "fa2-low", "fa2-high", "rim", "static-peak")
        if v not in known:
            raise ValueError(f"policy {v!r} is unknown; use one of {', '.join(known)}")
        return v


class Settings(_Strict):
    interval_s: float = Field(default=10.0, gt=0, description="adaptation interval (IPA: 10)")
    arrival_process: str = Field(default="poisson", description="poisson | uniform | step")
    drop_limit_s: float | None = Field(default=None, gt=0, description="default: the SLA")
    batch_wait_s: float | None = Field(default=None, ge=0)
    service: str = Field(default="profile", description="profile | deterministic | exponential")
    load_time_s: float | None = Field(default=None, ge=0)
    rps_quantum: float = Field(default=0.0, ge=0, description="plan for the prediction rounded up to this grid")
    shared_dir: str | None = Field(default=None, description="folder with traces/paper-windows (default ../shared)")


class Ablation(_Strict):
    policy: str = "ipa"
    predictors: list[str | dict[str, Any]] = Field(min_length=1)
    workloads: list[str] | None = None


class Sweep(_Strict):
    workload: str | None = None
    predictor: str | dict[str, Any] = "oracle"
    policy: str = "ipa"
    alpha: list[float] = Field(min_length=1)
    beta: list[float] = Field(min_length=1)


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
