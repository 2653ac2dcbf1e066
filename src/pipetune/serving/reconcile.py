"""The reconciler: what should run (per stage: the serving generation and, during a switch, the incoming one)
against what Ray Serve reports, and what the backend answers from it. No Ray import and no I/O: the backend
feeds it Ray's status (`read_status`) and deploys what `serve_config` returns.

A generation is a (variant, cores) application of a stage (`StageConfig`; its batch and replicas change in
place), or a (warm group, cores) one: every replica of it holds each of the stage's warm variants loaded
(`config.generation_key`), so the variant it serves changes in place too (the ingress names it per call). The
rules:
* a request for the serving generation's key changes it in place; another key adds an incoming generation
  beside it (replacing an incoming one that has not finished);
* when the incoming generation's application is RUNNING with the replicas asked for, the stage's traffic moves
  to it and the old generation retires: it stays deployed until the ingress no longer sends to it (it has taken
  the new routes and its calls there have come back: `retire`), and only then is it dropped from the target
  (deploying that deletes its application). Deleting it with the route move would race the ingress: an item
  sent to an application whose replicas are stopping waits in Ray's router for a replica that never comes,
  until its request's deadline. The old generation's replicas still starting are stopped when the switch is
  asked for (they would take the CPU the new generation needs to start);
* a split stage (`SplitConfig`, caps.mix_variants 2) is one generation per part, routed by share; its traffic
  moves (to every part at its share) once every incoming part runs the replicas the switch asked for, as for
  one generation, and a request whose parts all serve already changes them and their shares in place;
* when it is DEPLOY_FAILED, it is dropped and the stage's request is FAILED with Ray's message; the old
  generation keeps serving.
An inline stage (run by the ingress, which holds every variant loaded: `optimizer.options.inline_stages`) has
no application: a request for it is serving as soon as the ingress has taken its new config, with the replicas
asked for, holding no core of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pipetune.configs import ApplyState, SplitConfig, StageConfig, StageStatus
from pipetune.serving.config import (
    INGRESS_DEPLOYMENT,
    STAGE_DEPLOYMENT,
    ServingError,
    app_name,
    generation_key,
    generations_of,
    ingress_app_name,
)

Key = tuple[str, int]  # a generation of a stage: (its name, cores) (`config.generation_key`)

MESSAGE_TAIL_CHARS = 500  # of Ray's deploy-failure message kept in a FAILED status (its last lines say why)


class _RayEnum(StrEnum):
    """A Ray Serve state by its value; a value this Ray release added reads as UNKNOWN, never as an error."""

    @classmethod
    def read(cls, value: Any) -> Any:
        raw = getattr(value, "value", value)
        try:
            return cls(str(raw))
        except ValueError:
            return cls("UNKNOWN")


class AppStatus(_RayEnum):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"
    UNKNOWN = "UNKNOWN"


class DeploymentState(_RayEnum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"
    UNKNOWN = "UNKNOWN"


class ReplicaState(_RayEnum):
    STARTING = "STARTING"
    UPDATING = "UPDATING"
    RECOVERING = "RECOVERING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    PENDING_MIGRATION = "PENDING_MIGRATION"  # a replica being moved: its old actor's cores are counted already
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class AppReport:
    """What Ray reports of one stage application (its one deployment)."""

    status: AppStatus
    message: str = ""
    deployment: DeploymentState | None = None  # None: the deployment is not listed (yet)
    replicas: Mapping[ReplicaState, int] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return int(self.replicas.get(ReplicaState.RUNNING, 0))

    @property
    def holding(self) -> int:
        """Replicas holding cores: starting, running, updating, recovering and stopping ones."""
        return sum(n for s, n in self.replicas.items() if s is not ReplicaState.PENDING_MIGRATION)


def read_status(status: Any, deployment: str = STAGE_DEPLOYMENT) -> dict[str, AppReport]:
    """`serve.status()` as AppReports, per application name (the states as enums)."""
    out = {}
    for name, app in dict(status.applications).items():
        d = app.deployments.get(deployment)
        out[name] = AppReport(
            status=AppStatus.read(app.status),
            message=str(getattr(app, "message", "") or ""),
            deployment=DeploymentState.read(d.status) if d is not None else None,
            replicas={ReplicaState.read(k): int(v) for k, v in d.replica_states.items()} if d is not None else {},
        )
    return out


@dataclass(frozen=True)
class Deployed:
    """A pipeline as the cluster serves it, read back from the configs Ray Serve holds (`read_deployed`): what an
    adapter that restarts takes over, so that it changes nothing it did not decide to."""

    ingress_args: dict  # the ingress application's args (its DAG, inline models, HTTP front): fixed for its life
    ingress_resources: dict | None  # the ingress's extra Ray resources (a direct front: its node)
    epoch: float  # the serving clock's origin (the ingress's arrival counts are per second from it)
    serving: dict[str, StageConfig]  # per routed stage: the generation its traffic goes to
    generations: dict[str, list[StageConfig]]  # per stage: every generation deployed (serving, incoming, retiring)
    retiring: frozenset[str] = frozenset()  # applications the traffic left, deployed until the ingress is done


def read_deployed(
    pipeline_name: str,
    stages: Collection[str],
    apps: Mapping[str, Any],
    warm: Mapping[str, Sequence[str]] | None = None,
) -> Deployed | None:
    """The pipeline `pipeline_name` as deployed, from each application's deployed config (`apps`: application
    name -> its config as `serve deploy` takes it, None when Ray holds none); None when its ingress is not
    deployed. A stage with neither a route nor a generation, or routed to a generation that is not deployed,
    is a pipeline only partly there: ServingError, saying so. `warm`: per stage its warm variants (a warm group's
    generation reads as the variant its route names, or as its first warm variant where it is not routed)."""
    warm = warm or {}
    ingress = apps.get(ingress_app_name(pipeline_name))
    if ingress is None:
        return None
    dep = next((d for d in ingress.get("deployments", []) if d.get("name") == INGRESS_DEPLOYMENT), None)
    if dep is None or "user_config" not in dep or "args" not in ingress:
        raise ServingError(
            f"the cluster's application {ingress_app_name(pipeline_name)!r} is not a pipetune ingress (no args or "
            "user_config): stop it (`serve shutdown`) or serve this pipeline on another cluster"
        )
    uc = dep["user_config"]
    inline = set(ingress["args"].get("graph", {}).get("inline", {}))
    split = sorted(s for s, c in uc.get("configs", {}).items() if "parts" in c)
    if split:
        raise ServingError(
            f"the cluster serves pipeline {pipeline_name!r} with stages split over two variants ({', '.join(split)}): "
            "taking over a split stage is not supported yet; stop it (`serve shutdown`) and serve it again"
        )
    serving = {s: StageConfig(**c) for s, c in uc.get("configs", {}).items()}
    gens: dict[str, list[StageConfig]] = {s: [] for s in stages}
    for s in inline & set(stages):
        if s in serving:
            gens[s].append(serving[s])
    prefix = f"{pipeline_name}--"
    for name, cfg in apps.items():
        if not name.startswith(prefix) or cfg is None or name == ingress_app_name(pipeline_name):
            continue
        args = cfg.get("args") or {}
        stage_dep = next((d for d in cfg.get("deployments", []) if d.get("name") == STAGE_DEPLOYMENT), None)
        if args.get("stage") not in gens or stage_dep is None:
            continue
        variant, s = str(args["variant"]), str(args["stage"])
        if "models" in args:  # a warm group: the variant its route names
            routed = serving.get(s)
            variant = (
                routed.variant
                if routed is not None and routed.variant in args["models"]
                else next(iter(args["models"]))
            )
        gens[s].append(
            StageConfig(
                variant,
                int(stage_dep.get("user_config", {}).get("batch", 1)),
                int(args["cores"]),
                int(stage_dep.get("num_replicas", 1)),
            )
        )
    for s in stages:
        keys = [generation_key(warm.get(s, ()), g) for g in gens[s]]
        if s in serving and generation_key(warm.get(s, ()), serving[s]) not in keys:
            raise ServingError(
                f"the cluster routes stage {s!r} to {serving[s].variant} on {serving[s].cores} cores, which is not "
                "deployed: the pipeline is only partly there; stop it (`serve shutdown`) and serve it again"
            )
        if not keys:
            raise ServingError(
                f"the cluster serves pipeline {pipeline_name!r} without stage {s!r}: it was deployed from another "
                "spec, or only partly; stop it (`serve shutdown`) and serve it again"
            )
    resources = (dep.get("ray_actor_options") or {}).get("resources")
    return Deployed(
        ingress_args=dict(ingress["args"]),
        ingress_resources=dict(resources) if resources else None,
        epoch=float(uc.get("epoch") or 0.0),
        serving=serving,
        generations=gens,
        retiring=frozenset(str(a) for a in uc.get("retiring", [])),
    )


class Reconciler:
    """The target and Ray's last reported state of one pipeline's stages. Not thread-safe: the backend locks."""

    def __init__(
        self,
        pipeline_name: str,
        initial: Mapping[str, StageConfig],
        inline: Collection[str] = (),
        warm: Mapping[str, Sequence[str]] | None = None,
    ):
        """`warm`: per stage its warm variants (the spec's `warm_variants`): a switch among them on the same cores
        is in place (`config.generation_key`)."""
        self.name = pipeline_name
        self.stages = list(initial)
        self.inline = frozenset(inline)
        self.warm = {s: tuple(v) for s, v in (warm or {}).items()}
        self._gens: dict[str, dict[Key, StageConfig]] = {
            s: {k: p for k, p, _ in self._parts(s, c)} for s, c in initial.items()
        }
        # per stage the generations its traffic goes to, with their shares (empty until the first is RUNNING)
        self._serving: dict[str, dict[Key, float]] = {s: {} for s in initial}
        for s in self.inline & set(initial):
            self._serving[s] = self._shares(s, initial[s])
        self._target: dict[str, StageConfig] = dict(initial)
        self._accepted: dict[str, StageConfig] = dict(initial)  # the last request taken (a refused one is not)
        self._failed: dict[str, str] = {}
        self._app_cores: dict[str, int] = {
            self.app(s, k): k[1] for s, c in initial.items() for k, _, _ in self._parts(s, c)
        }
        self._snapshot: dict[str, AppReport] = {}
        self._snapshot_t = -math.inf  # when the snapshot was asked for (the caller's monotonic clock)
        self._deployed_t: dict[str, float] = {}  # per stage: when its last change was deployed
        # per stage, the generations its traffic left that stay deployed while the ingress may still send to them
        # (-> when they retired, the caller's monotonic clock)
        self._retiring: dict[str, dict[Key, float]] = {s: {} for s in initial}

    @classmethod
    def resumed(
        cls,
        pipeline_name: str,
        deployed: Deployed,
        inline: Collection[str] = (),
        now: float = 0.0,
        warm: Mapping[str, Sequence[str]] | None = None,
    ) -> Reconciler:
        """The reconciler of a pipeline the cluster already serves (`read_deployed`): its generations and routes
        as they are; a stage with a generation beside its serving one (a switch under way when the previous
        adapter stopped) has that generation as its target, so the switch completes (or fails) as it would have;
        one the traffic had left (retiring) retires, from `now` (the caller's monotonic clock)."""

        warm = warm or {}

        def key(s: str, g: StageConfig) -> Key:
            return generation_key(warm.get(s, ()), g)

        def retiring(s: str, g: StageConfig) -> bool:
            return app_name(pipeline_name, s, *key(s, g)) in deployed.retiring

        target: dict[str, StageConfig] = {}
        for s, gens in deployed.generations.items():
            cur = deployed.serving.get(s)
            incoming = [g for g in gens if (cur is None or key(s, g) != key(s, cur)) and not retiring(s, g)]
            target[s] = incoming[-1] if incoming else cur if cur is not None else gens[-1]
        rec = cls(pipeline_name, target, inline, warm)
        for s, gens in deployed.generations.items():
            rec._gens[s] = {key(s, g): g for g in gens}
            cur = deployed.serving.get(s)
            rec._serving[s] = {key(s, cur): 1.0} if cur is not None else {}
            for g in gens:
                rec._app_cores[rec.app(s, key(s, g))] = g.cores
                if retiring(s, g):
                    rec._retiring[s][key(s, g)] = now
        return rec

    def app(self, stage: str, key: Key | StageConfig) -> str:
        """The application of `stage`'s generation `key`, or of the one that serves a one-variant configuration."""
        if isinstance(key, StageConfig):
            key = generation_key(self.warm.get(stage, ()), key)
        return app_name(self.name, stage, key[0], key[1])

    def _parts(self, stage: str, c: StageConfig) -> list[tuple[Key, StageConfig, float]]:
        return generations_of(self.warm.get(stage, ()), c)

    def _shares(self, stage: str, c: StageConfig) -> dict[Key, float]:
        """Each part's generation and share of a stage's configuration (one part at 1 if it does not split)."""
        return {k: f for k, _, f in self._parts(stage, c)}

    # ---- what should run -------------------------------------------------------------------------------------
    def generations(self) -> dict[str, list[StageConfig]]:
        return {s: list(gens.values()) for s, gens in self._gens.items()}

    def keyed_generations(self) -> dict[str, dict[Key, StageConfig]]:
        """Per stage its generations by key (what `config.serve_config` deploys)."""
        return {s: dict(gens) for s, gens in self._gens.items()}

    def serving(self) -> dict[str, StageConfig]:
        """Per stage routed, its serving generation (as configured: replicas are its target count), a
        SplitConfig of its parts at their shares where it splits."""
        return {
            s: SplitConfig.of([(self._gens[s][k], f) for k, f in routed.items()])
            for s, routed in self._serving.items()
            if routed
        }

    def all_serving(self) -> bool:
        return all(self._serving.values())

    def held_elsewhere(self, stage: str, c: StageConfig) -> int:
        """Cores the other stages' generations hold, plus this stage's serving ones that `c` replaces by a
        make-before-break switch (both are held until the switch ends)."""
        elsewhere = sum(self.holds(t, g) for t, gens in self._gens.items() if t != stage for g in gens.values())
        new = self._shares(stage, c)
        old = sum(self.holds(stage, self._gens[stage][k]) for k in self._serving[stage] if k not in new)
        return elsewhere + old

    def holds(self, stage: str, c: StageConfig) -> int:
        """Ray CPUs a generation of `stage` holds: none for an inline stage (it runs in the ingress's)."""
        return 0 if stage in self.inline else c.total_cores

    def request(self, stage: str, c: StageConfig, refused: str | None = None, now: float = 0.0) -> None:
        """Record the request for `c`: refused (the reason) or taken into the target. `now`: the caller's
        monotonic clock (when a part dropped in place starts retiring)."""
        self._target[stage] = c
        if refused:
            self._failed[stage] = refused
            return
        self._failed.pop(stage, None)
        self._accepted[stage] = c
        gens, serving, new = self._gens[stage], self._serving[stage], self._shares(stage, c)
        retiring = self._retiring[stage]
        for k in [k for k in retiring if k in new]:
            del retiring[k]  # asked for again: an incoming generation once more (it runs: the route moves back)
        for k in [k for k in gens if k not in serving and k not in new and k not in retiring]:
            del gens[k]  # an earlier switch that has not finished is replaced by this one
        if stage not in self.inline and not (serving and set(new) <= set(serving)):
            # A switch: the serving generations it replaces keep the replicas they run; those still starting give
            # way to the new generations (Ray stops replicas that are not running first), whose start needs the CPU.
            for k in [k for k in serving if k not in new]:
                g = gens[k]
                running = self._running(stage, k)
                if 0 < running < g.replicas:
                    gens[k] = dataclasses.replace(g, replicas=running)
        for k, p, _ in self._parts(stage, c):
            gens[k] = p
            self._app_cores[self.app(stage, k)] = p.cores
        if stage in self.inline or (serving and set(new) <= set(serving)):
            # generations that serve already (or an inline stage: the ingress holds every variant): changed in
            # place, the shares at once; a part no longer asked for retires (an inline stage's has no application)
            for k in [k for k in gens if k not in new and k not in retiring]:
                if stage in self.inline:
                    del gens[k]
                else:
                    retiring[k] = now
            self._serving[stage] = new

    def deployed(self, stages: list[str], t: float) -> None:
        """The changes of `stages` reached Ray at `t`: a status asked for earlier cannot show them."""
        self._deployed_t.update(dict.fromkeys(stages, t))

    # ---- what Ray reports ------------------------------------------------------------------------------------
    def observe(self, snapshot: dict[str, AppReport], t: float) -> bool:
        """Take Ray's status (asked for at `t`) and move what it allows; True when the target changed (a route
        moved or a generation was dropped), i.e. when the Serve config must be deployed again."""
        self._snapshot, self._snapshot_t = snapshot, t
        changed = False
        for s, gens in self._gens.items():
            if s in self.inline:
                continue
            want = self._shares(s, self._accepted[s])
            ready = True
            for key, g in list(gens.items()):
                if key in self._serving[s] or key in self._retiring[s]:
                    continue
                rep = snapshot.get(self.app(s, key))
                if rep is not None and rep.status is AppStatus.DEPLOY_FAILED:
                    self._failed[s] = (
                        f"{g.variant} on {g.cores} cores failed to deploy: {rep.message[-MESSAGE_TAIL_CHARS:]}"
                    )
                    del gens[key]
                    changed, want = True, {}
                elif not (
                    rep is not None
                    and rep.status is AppStatus.RUNNING
                    and rep.running > 0
                    and rep.running >= g.replicas
                ):
                    ready = False
            if want and ready and set(want) != set(self._serving[s]) and set(want) <= set(gens):
                self._serving[s] = want  # what the switch asked for is ready in every part: move the traffic
                for key in [k for k in gens if k not in want and k not in self._retiring[s]]:
                    self._retiring[s][key] = t  # deployed until the ingress no longer sends to it (`retire`)
                changed = True
        return changed

    def retiring(self) -> dict[str, float]:
        """The applications of generations whose traffic has moved away and that are still deployed, with when
        each retired (the caller's clock)."""
        return {self.app(s, k): t for s, keys in self._retiring.items() for k, t in keys.items()}

    def retire(self, apps: Collection[str]) -> bool:
        """Drop the retiring generations of `apps` from the target (the ingress no longer sends to them, or
        cannot say so within a bound); True when one was dropped, i.e. when the config must be deployed again."""
        changed = False
        for s, keys in self._retiring.items():
            for k in [k for k in keys if self.app(s, k) in apps]:
                del keys[k], self._gens[s][k]
                changed = True
        return changed

    def failures(self) -> dict[str, str]:
        return dict(self._failed)

    def stage_status(self, s: str) -> StageStatus:
        target = self._target[s]
        if s in self._failed:
            return StageStatus(ApplyState.FAILED, target, self._failed[s])
        if s in self.inline:  # the ingress takes it in place with its user_config
            if self._snapshot_t <= self._deployed_t.get(s, -math.inf):
                return StageStatus(ApplyState.PENDING, target, "waiting for the ingress to take the change")
            return StageStatus(ApplyState.APPLIED, target)
        if set(self._serving[s]) != set(self._shares(s, target)):
            return StageStatus(ApplyState.PENDING, target, f"{target.variant} on {target.cores} cores is loading")
        if self._retiring[s]:
            old = ", ".join(f"{self._gens[s][k].variant} on {k[1]} cores" for k in self._retiring[s])
            return StageStatus(ApplyState.PENDING, target, f"the traffic moved; {old} is deleted once unused")
        parts = self._parts(s, target)
        reps = [self._snapshot.get(self.app(s, k)) for k, _, _ in parts]
        for (_, p, _), rep in zip(parts, reps):
            running = rep.running if rep is not None else 0
            if len(self._gens[s]) > len(parts) or running != p.replicas:
                return StageStatus(ApplyState.PENDING, target, f"{p.variant}: {running}/{p.replicas} replicas running")
        # A status asked for before the last deploy cannot show it; an in-place change (batch size: user_config)
        # is UPDATING until every replica has run `reconfigure`.
        if self._snapshot_t <= self._deployed_t.get(s, -math.inf):
            return StageStatus(ApplyState.PENDING, target, "waiting for Ray Serve to report the change")
        for rep in reps:
            if rep is None or rep.deployment is not DeploymentState.HEALTHY:
                state = rep.deployment.value if rep is not None and rep.deployment is not None else "missing"
                return StageStatus(ApplyState.PENDING, target, f"deployment {state}")
        return StageStatus(ApplyState.APPLIED, target)

    def pending(self) -> bool:
        return any(self.stage_status(s).state is ApplyState.PENDING for s in self.stages)

    def _running(self, s: str, key: Key) -> int:
        if s in self.inline:
            return self._gens[s][key].replicas
        rep = self._snapshot.get(self.app(s, key))
        return rep.running if rep is not None else 0

    def in_effect(self) -> dict[str, StageConfig]:
        """Every stage: its serving generation with the replicas Ray reports running (0 before it is routed:
        the generation it waits for, none of it ready)."""
        out: dict[str, StageConfig] = {}
        for s in self.stages:
            routed = self._serving[s]
            if not routed:
                g = self._target[s]
                out[s] = StageConfig(g.variant, g.batch, g.cores, 0)
                continue
            out[s] = SplitConfig.of(
                [
                    (StageConfig(g.variant, g.batch, g.cores, self._running(s, k)), f)
                    for k, f in routed.items()
                    for g in [self._gens[s][k]]
                ]
            )
        return out

    def replicas_ready(self) -> dict[str, int]:
        """Per stage, the replicas running of its serving and incoming generations (not of retiring ones)."""
        return {
            s: sum(self._running(s, k) for k in gens if k not in self._retiring[s]) for s, gens in self._gens.items()
        }

    def replica_cores_held(self) -> float:
        """Cores of every stage replica Ray reports (starting, running, stopping), of every generation, the
        ones already dropped from the target and still draining included."""
        return float(sum(self._app_cores[a] * rep.holding for a, rep in self._snapshot.items() if a in self._app_cores))
