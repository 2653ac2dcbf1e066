"""The Ray Serve configuration of a pipeline: stage configurations in, a Serve config (ServeDeploySchema) out.

Pure functions, no state, no Ray import: `pipetune serve --export` writes what `serve_config` returns (`serve
deploy` and KubeRay's RayService `serveConfigV2` accept it as is), and `RayServeBackend` deploys the same dict
through `serving/ray_api.py`.

Layout (docs/serving.md has why): one Ray Serve application per (stage, variant, cores), a *generation* of the
stage, whose `args` are fixed for its life, so that batch size (`user_config`) and replica count
(`num_replicas`) change in place and a variant or cores change deploys a new application beside the old one
(make-before-break); one ingress application whose `user_config` carries the routes (stage -> application),
the admission limit and the deadline, so those change in place too.

What the request path needs of the pipeline travels as plain dicts, open to more fields: the ingress's `args`
(`ingress_args`: the DAG from `graph_args`, plus whatever else the request path takes) and a stage's `args`
(`stage_args`). The HTTP and proxy options live in `ServeOptions`, the one place both the exported config and
`serve.start` read them from.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.admission import UNLIMITED_INFLIGHT, admission_limit, profile_admission, service_floor
from pipetune.configs import StageConfig, parts_of
from pipetune.errors import PipetuneError
from pipetune.optimizer.options import capacity_rps
from pipetune.protocol import TensorSpec, spec_for_sample
from pipetune.spec import warm_group_of

STAGE_DEPLOYMENT = "stage"  # the one deployment inside each stage application
INGRESS_DEPLOYMENT = "ingress"
STAGE_IMPORT_PATH = "pipetune.serving.app:build_stage"
INGRESS_IMPORT_PATH = "pipetune.serving.app:build_ingress"
INGRESS_CPUS = 1.0  # Ray CPUs the ingress reserves (a core it holds all the time: counted in cores held)
STAGE_REQUESTS_PER_BATCH = 2  # requests a stage replica takes at once, in largest batches: one running, one filling
FRONTS = ("direct", "proxy")  # who serves HTTP: the ingress itself, or Ray Serve's proxy in front of it


class ServingError(PipetuneError):
    """The live runtime cannot start or cannot take a configuration; the message says why and the fix."""


@dataclass(frozen=True)
class ServeOptions:
    """How the runtime is exposed and paced, apart from the stage configurations.

    `drop_after_s`: an admitted request unanswered after this long is dropped (504). `batch_wait_s`: how long a
    stage replica waits to fill a batch. `autoscale`: Ray Serve's own `autoscaling_config` per stage instead of
    pipetune's replica counts (the baseline a Ray user gets without pipetune; no admission control then, as Serve
    has none). `front`: who serves HTTP: "direct", the ingress replica itself on host:port (`serving/front.py`;
    Ray Serve's proxy is disabled: one process hop less per request), or "proxy", Ray Serve's HTTP proxy in front
    of the ingress, placed by `proxy_location` ("EveryNode" or "HeadOnly"; what `serve deploy` and KubeRay
    expose). `caller_batching`: the ingress sends each stage's items in batches, one call per batch
    (`serving/channels.py`); off, or under Ray's autoscaling (whose scaling reads the calls in flight at each
    replica), one call per item, batched on the replica by `@serve.batch`. `ingress_resources`: extra Ray
    resources of the ingress (a direct front pins it to the node whose address it serves)."""

    drop_after_s: float
    batch_wait_s: float
    host: str = "127.0.0.1"
    port: int = 8000
    ingress_cpus: float = INGRESS_CPUS
    autoscale: Mapping[str, Any] | None = None
    front: str = "proxy"
    proxy_location: str = "EveryNode"
    caller_batching: bool = True
    ingress_resources: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.front not in FRONTS:
            raise ServingError(f"front={self.front!r}: choose one of {FRONTS}")
        if self.front == "direct" and self.proxy_location != "Disabled":
            object.__setattr__(self, "proxy_location", "Disabled")  # the ingress serves HTTP: no proxy

    @property
    def per_item_calls(self) -> bool:
        """One handle call per item (batched on the replica) rather than batches sent from the ingress."""
        return not self.caller_batching or bool(self.autoscale)

    @classmethod
    def for_pipeline(
        cls, pipeline: Any, *, drop_after_s: float | None = None, batch_wait_s: float | None = None, **kw: Any
    ) -> ServeOptions:
        """Options with the pipeline's defaults: drop after 2 x SLA, batch wait from `caps.max_batch_wait_s`."""
        drop = float(drop_after_s) if drop_after_s is not None else 2.0 * float(pipeline.sla.seconds)
        wait = float(batch_wait_s if batch_wait_s is not None else (pipeline.caps.max_batch_wait_s or 0.0))
        return cls(drop_after_s=drop, batch_wait_s=wait, **kw)

    def http_options(self) -> dict[str, Any]:
        """Ray Serve's `http_options`: for `serve.start` and the exported config alike."""
        return {"host": self.host, "port": int(self.port)}


# ---- names ------------------------------------------------------------------------------------------------
def app_name(pipeline_name: str, stage: str, variant: str, cores: int) -> str:
    """The application of one generation of a stage: its (variant, cores); `variant` is the generation's name
    (`generation_key`): a warm group's name for a warm variant."""
    return f"{pipeline_name}--{stage}--{variant}--c{cores}"


def generation_key(warm_variants: Sequence[str], c: StageConfig, split: bool = False) -> tuple[str, int]:
    """The generation (name, cores) that serves the one-variant configuration `c` of a stage whose warm variants
    are `warm_variants`: its warm group's (every replica holds each warm variant loaded, so a switch among them
    on the same cores is in place), else its own variant's. A part of a split stage (`split`) always has its own:
    two parts are two generations, each routed by share."""
    group = None if split else warm_group_of(warm_variants, c.variant)
    return (group or c.variant, c.cores)


def generations_of(warm_variants: Sequence[str], c: StageConfig) -> list[tuple[tuple[str, int], StageConfig, float]]:
    """The generations that serve a stage's configuration `c`: (key, part, share) per part (one at 1 where it
    does not split)."""
    parts = parts_of(c)
    return [(generation_key(warm_variants, p, len(parts) > 1), p, f) for p, f in parts]


def warm_of(pipeline: Any) -> dict[str, list[str]]:
    """Per stage with warm variants, their names (what the reconciler keys generations by)."""
    return {st.name: list(st.warm_variants) for st in pipeline.stages if st.warm_variants}


Generations = Mapping[tuple[str, int], StageConfig]  # a stage's generations by key (`generation_key`)


def _keyed(pipeline: Any, stage: str, gens: Generations | Sequence[StageConfig]) -> Generations:
    """A stage's generations by key; a plain list is of one-variant configurations (none a split's part)."""
    if isinstance(gens, Mapping):
        return gens
    return {generation_key(pipeline.stage(stage).warm_variants, g): g for g in gens}


def ingress_app_name(pipeline_name: str) -> str:
    return f"{pipeline_name}--ingress"


# ---- what the request path is given -----------------------------------------------------------------------
def input_specs(pipeline: Any) -> list[TensorSpec]:
    """The endpoint's input tensor, from the first source stage's example data (its first variant's adapter)."""
    from pipetune.models.registry import variant_model_ref

    src = next(iter(pipeline.source_shares()))
    variant = pipeline.stage(src).variants[0].name
    sample = variant_model_ref(pipeline, src, variant)().sample_inputs(1)[0]
    return [spec_for_sample("input", sample)]


def graph_args(pipeline: Any, inputs: list[TensorSpec], inline: Collection[str] = ()) -> dict:
    """What the ingress needs of a pipeline spec (JSON-serialisable, so it fits a Serve config's `args`): the DAG,
    and for each stage it runs itself (`inline`) every variant's model."""
    from pipetune.models.registry import variant_model_ref

    refs: dict[str, dict[str, dict]] = {}
    for s in sorted(inline):
        refs[s] = {}
        for v in pipeline.stage(s).variants:
            ref = variant_model_ref(pipeline, s, v.name)
            refs[s][v.name] = {"adapter": ref.adapter, "params": ref.params}
    return {
        "inline": refs,
        "name": pipeline.name,
        "topo": pipeline.topological_order(),
        "parents": {s: [[e.src, e.multiplicity] for e in pipeline.parents(s)] for s in pipeline.stage_names},
        "join": {s: pipeline.stage(s).fan_in == "join" for s in pipeline.stage_names},
        "sinks": pipeline.sinks(),
        "inputs": [s.to_dict() for s in inputs],
        "sla_s": float(pipeline.sla.seconds),
    }


def ingress_args(
    pipeline: Any, opts: ServeOptions, inputs: list[TensorSpec] | None = None, inline: Collection[str] = ()
) -> dict:
    """The ingress application's `args` (fixed for its life): the DAG with its inline stages' models, and the
    address to serve HTTP on when the front is direct."""
    return {
        "graph": graph_args(pipeline, inputs if inputs is not None else input_specs(pipeline), inline),
        "front": {"host": opts.host, "port": int(opts.port)} if opts.front == "direct" else None,
    }


def stage_args(pipeline: Any, stage: str, gen: StageConfig, name: str | None = None) -> dict:
    """A stage application's `args` (fixed for the generation's life): which model, on how many cores. `name`:
    the generation's (`generation_key`; default: the one-variant configuration's). A warm group's generation
    names the group as its variant and loads every warm variant (`models`, in the spec's order; the first serves
    a call that names none): the variant it serves changes with the ingress's routes, never with its args (a
    change of which would restart its replicas)."""
    from pipetune.models.registry import variant_model_ref

    def ref(variant: str) -> dict:
        r = variant_model_ref(pipeline, stage, variant)
        return {"adapter": r.adapter, "params": r.params}

    warm = pipeline.stage(stage).warm_variants
    name = name or generation_key(warm, gen)[0]
    group = name != gen.variant
    args = {
        "stage": stage,
        "variant": name,
        "cores": gen.cores,
        "model": ref(warm[0] if group else gen.variant),
        "warmup": max(pipeline.batch_sizes_for(stage)),
    }
    if group:
        args["models"] = {v: ref(v) for v in warm}
    return args


# ---- the applications -------------------------------------------------------------------------------------
def stage_app(pipeline: Any, stage: str, gen: StageConfig, opts: ServeOptions, name: str | None = None) -> dict:
    """One generation of `stage` as a Serve application: `gen`'s replicas, batch and cores; `name`: the
    generation's (`generation_key`; default: the one-variant configuration's)."""
    max_batch = max(pipeline.batch_sizes_for(stage))
    name = name or generation_key(pipeline.stage(stage).warm_variants, gen)[0]
    deployment: dict[str, Any] = {
        "name": STAGE_DEPLOYMENT,
        "num_replicas": gen.replicas,
        "max_ongoing_requests": STAGE_REQUESTS_PER_BATCH * max_batch,
        "user_config": {"batch": gen.batch, "wait_s": opts.batch_wait_s},
        "ray_actor_options": {"num_cpus": gen.cores},
    }
    if opts.autoscale:
        del deployment["num_replicas"]
        deployment["autoscaling_config"] = {"initial_replicas": gen.replicas, **opts.autoscale}
    return {
        "name": app_name(pipeline.name, stage, name, gen.cores),
        "route_prefix": None,
        "import_path": STAGE_IMPORT_PATH,
        "args": stage_args(pipeline, stage, gen, name),
        "deployments": [deployment],
    }


def ingress_user_config(
    pipeline: Any,
    profiles: Any,
    serving: Mapping[str, StageConfig],
    opts: ServeOptions,
    epoch: float,
    inline: Collection[str] = (),
    runtime: Any = None,
    retiring: Collection[str] = (),
) -> dict:
    """What the ingress takes in place: routes to the serving generations (a split stage's main part, and in
    `splits` every part's application, share, batch and replicas: the ingress routes by share), the admission
    limit of what they serve (`pipetune.admission`; none under Ray's autoscaling), the deadline and the backend's
    clock. `retiring`: the applications the traffic has left that stay deployed until the ingress no longer sends
    to them (recorded, only while there are some, so that an adapter taking the pipeline over does not read them
    as switches under way)."""
    unlimited = bool(opts.autoscale)
    extra = {"retiring": sorted(retiring)} if retiring else {}
    routed = {
        s: [
            (app_name(pipeline.name, s, k[0], k[1]), p, f)
            for k, p, f in generations_of(pipeline.stage(s).warm_variants, c)
        ]
        for s, c in serving.items()
        if s not in inline
    }
    return {
        "routes": {s: parts[0][0] for s, parts in routed.items()},
        "splits": {s: [[app, f, p.to_dict()] for app, p, f in parts] for s, parts in routed.items() if len(parts) > 1},
        "variants": {s: c.variant for s, c in serving.items()},
        "configs": {s: c.to_dict() for s, c in serving.items()},
        "max_inflight": UNLIMITED_INFLIGHT if unlimited else admitted(pipeline, profiles, serving, runtime),
        # what the replicas hold in service at once: admission never goes below it
        "floor_inflight": UNLIMITED_INFLIGHT if unlimited else service_floor(serving),
        "drop_after_s": opts.drop_after_s,
        "epoch": epoch,
        "per_item_calls": opts.per_item_calls,
        **extra,
    }


def admitted(pipeline: Any, profiles: Any, serving: Mapping[str, StageConfig], runtime: Any = None) -> int:
    """The admission limit of what serves: the profile's (`pipetune.admission.profile_admission`) and, with a
    runtime profile, no more than capacity x SLA at the rate the planner says the host holds under it
    (`optimizer.options.capacity_rps`: the host's CPU counted, its switch reserve not, which is kept for changes
    and not a limit on what serves): the limit follows the applied plan's capacity."""
    limit = profile_admission(pipeline, profiles, serving)
    if runtime is None or profiles is None or not 0 < limit < UNLIMITED_INFLIGHT:
        return limit
    try:
        cap = capacity_rps(pipeline, profiles, serving, runtime.without_reserve())
    except (KeyError, PipetuneError):
        return limit  # a stage without a profiled cell: the profile's limit stands
    return min(limit, admission_limit(cap, pipeline.sla.seconds))


def ingress_app(pipeline: Any, args: Mapping[str, Any], user_config: Mapping[str, Any], opts: ServeOptions) -> dict:
    return {
        "name": ingress_app_name(pipeline.name),
        "route_prefix": "/",
        "import_path": INGRESS_IMPORT_PATH,
        "args": dict(args),
        "deployments": [
            {
                "name": INGRESS_DEPLOYMENT,
                "num_replicas": 1,
                "ray_actor_options": {
                    "num_cpus": opts.ingress_cpus,
                    **({"resources": dict(opts.ingress_resources)} if opts.ingress_resources else {}),
                },
                "user_config": dict(user_config),
            }
        ],
    }


def serve_config(
    pipeline: Any,
    profiles: Any,
    generations: Mapping[str, Generations | Sequence[StageConfig]],
    serving: Mapping[str, StageConfig],
    opts: ServeOptions,
    *,
    args: Mapping[str, Any],
    epoch: float = 0.0,
    runtime: Any = None,
    retiring: Collection[str] = (),
) -> dict:
    """The Serve config (ServeDeploySchema) of what should run: every generation of every stage as its own
    application, and the ingress routing each stage in `serving` to its generation.

    `generations`: per stage, its applications by key (`generation_key`; a plain list: one-variant
    configurations, none a split's part): the serving one and, during a switch, the incoming one. `serving`: per stage, the generation its traffic goes to (a stage without one gets no route,
    and the ingress refuses requests until it has). `args`: the ingress's `args` (`ingress_args`), whose inline
    stages (`optimizer.options.inline_stages`) get no application (the ingress runs them). `epoch`: the backend's
    clock origin (wall time); 0 for a config that another tool deploys (the ingress keeps its own). `runtime`:
    the host's runtime profile, which bounds admission (`admitted`)."""
    keyed = {s: _keyed(pipeline, s, gens) for s, gens in generations.items()}
    for s, routed in serving.items():
        for key, gen, _ in generations_of(pipeline.stage(s).warm_variants, routed):
            if key not in keyed.get(s, {}):
                raise ServingError(
                    f"stage {s!r} is routed to {gen.variant} on {gen.cores} cores, which is not deployed"
                )
    inline = set(args.get("graph", {}).get("inline", {}))
    user_config = ingress_user_config(pipeline, profiles, serving, opts, epoch, inline, runtime, retiring)
    apps = [ingress_app(pipeline, args, user_config, opts)]
    for s, gens in keyed.items():
        if s not in inline:
            apps.extend(stage_app(pipeline, s, g, opts, key[0]) for key, g in gens.items())
    return {"proxy_location": opts.proxy_location, "http_options": opts.http_options(), "applications": apps}


def export_config(pipeline: Any, configs: Mapping[str, StageConfig], profiles: Any, opts: ServeOptions) -> dict:
    """The Serve config that serves `configs` (one generation per stage, every stage routed): `--export`."""
    args = ingress_args(pipeline, opts)
    gens = {s: {k: p for k, p, _ in generations_of(pipeline.stage(s).warm_variants, c)} for s, c in configs.items()}
    return serve_config(pipeline, profiles, gens, configs, opts, args=args)
