"""What the optimizer returns: a `Plan` (one `StageConfig` per stage plus predictions) or `Infeasible`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipetune.configs import SplitConfig, StageConfig


@dataclass(frozen=True)
class StageChoice:
    """A stage's configuration with the planner's predictions for it at the planned load."""

    config: StageConfig
    accuracy: float
    load_rps: float  # items/s arriving at the stage
    capacity_rps: float  # items/s the replicas sustain
    latency_mean_s: float  # predicted mean sojourn (batch wait + queueing + service)
    latency_slo_s: float  # predicted sojourn at the SLA percentile
    fitted: bool = False  # its profile cell comes from the fitted law, not a measurement


@dataclass
class Plan:
    pipeline: str
    policy: str
    rps: float
    stages: dict[str, StageChoice]
    accuracy: float  # by the pipeline's accuracy method
    pas: float  # product of stage accuracies, always reported
    cost_cores: int
    batch_sum: int
    objective: float
    objective_terms: dict[str, float]  # alpha*accuracy, -beta*cost, -gamma*batch
    latency_e2e_mean_s: float
    latency_e2e_slo_s: float  # longest path of stage SLA-percentile latencies (the SLA constraint)
    critical_path: list[str]
    solve_time_s: float
    feasible: bool = True
    note: str = ""
    assumptions: list[str] = field(default_factory=list)  # what the fitted cells it rests on assume
    arrival_dispersion: float = 1.0  # variance / mean of per-second counts its latencies assume (1: Poisson)
    # With a runtime profile (runtime_profile.py; else None): the host CPU (cores) the plan keeps busy at `rps`,
    # the most a plan may keep busy (utilisation_cap x host_cores), the rate at which it reaches that, and the
    # rate the plan holds (the least of its stages' capacities and the host's): what admission should admit.
    host_cpu_cores: float | None = None
    host_cpu_budget_cores: float | None = None
    host_capacity_rps: float | None = None
    capacity_rps: float | None = None
    # Stages that split their load over two variants (caps.mix_variants = 2): each part's configuration and share
    # of the stage's load, the larger share first. `stages[s].config` is that first part (so callers that know one
    # variant per stage see the main one); cost_cores and batch_sum count both parts. Empty: no stage splits.
    mix: dict[str, list[tuple[StageConfig, float]]] = field(default_factory=dict)

    @property
    def configs(self) -> dict[str, StageConfig]:
        """What a backend applies: per stage its StageConfig, a `SplitConfig` of its parts where it splits."""
        return {s: SplitConfig.of(self.mix[s]) if s in self.mix else c.config for s, c in self.stages.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = {
            s: {**asdict(c.config), **{k: v for k, v in asdict(c).items() if k != "config"}}
            for s, c in self.stages.items()
        }
        if self.mix:
            d["mix"] = {s: [{**c.to_dict(), "share": f} for c, f in parts] for s, parts in self.mix.items()}
        else:
            del d["mix"]  # the JSON of a plan without splits is what it was before mixing existed
        return d


@dataclass
class Infeasible:
    """No configuration meets every constraint at this load. `binding` names the constraint that cannot hold
    (e.g. "capacity:classify", "sla", "budget"); `fallback` is the configuration with the most capacity."""

    pipeline: str
    policy: str
    rps: float
    binding: str
    reason: str
    fallback: Plan
    solve_time_s: float = 0.0
    feasible: bool = field(default=False, init=False)

    @property
    def configs(self) -> dict[str, StageConfig]:
        return self.fallback.configs

    def to_dict(self) -> dict:
        return {
            "pipeline": self.pipeline,
            "policy": self.policy,
            "rps": self.rps,
            "feasible": False,
            "binding": self.binding,
            "reason": self.reason,
            "solve_time_s": self.solve_time_s,
            "fallback": self.fallback.to_dict(),
        }
