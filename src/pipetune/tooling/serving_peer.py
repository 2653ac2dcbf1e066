"""The peer of the serving benchmark: the text pipeline written the idiomatic Ray Serve way, no pipetune code in
the request path.

What a Ray Serve user writes for this DAG (lang -> topic + keywords -> merge): a FastAPI ingress deployment behind
Ray Serve's HTTP proxy that composes one deployment per stage through DeploymentHandles, each stage batching with
`@serve.batch`. It speaks the same Open Inference Protocol JSON for the text input (one BYTES tensor), so the
same load generator drives both. The model adapters are the same objects pipetune serves (the models are not
what is compared); each stage counts the CPU its model uses, as pipetune's replicas do, so the benchmark can tell
model CPU from runtime CPU on both sides.
"""

import asyncio
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

PEER_APP = "peer-text"
STAGES = ("lang", "topic", "keywords", "merge")

api = FastAPI()


@serve.deployment
class PeerStage:
    """One stage: the model, batched by Ray Serve."""

    def __init__(self, model: dict, cores: int, max_batch: int) -> None:
        from pipetune.models.base import pin_threads
        from pipetune.models.registry import model_ref

        pin_threads(cores)
        self.model = model_ref(model, "peer")()
        self.model.load()
        self.model.predict(self.model.sample_inputs(1))
        self.cpu_s, self.items = 0.0, 0
        self.predict.set_max_batch_size(max_batch)  # type: ignore[attr-defined]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def predict(self, items: list[Any]) -> list[Any]:
        c0 = time.thread_time()
        outs = self.model.predict(items)
        self.cpu_s += time.thread_time() - c0
        self.items += len(items)
        return outs

    async def __call__(self, item: Any) -> Any:
        return await self.predict(item)

    def cpu_stats(self) -> dict:
        return {"replica": serve.get_replica_context().replica_id.unique_id, "seconds": self.cpu_s, "items": self.items}


@serve.deployment
@serve.ingress(api)
class PeerIngress:
    """The V2 infer route: each text through the DAG, branches concurrently."""

    def __init__(self, lang: Any, topic: Any, keywords: Any, merge: Any) -> None:
        self.lang, self.topic, self.keywords, self.merge = lang, topic, keywords, merge

    async def _one(self, text: str) -> Any:
        lang = await self.lang.remote(text)
        topic, keywords = await asyncio.gather(self.topic.remote(lang), self.keywords.remote(lang))
        return await self.merge.remote({"topic": topic, "keywords": keywords})

    @api.post("/v2/models/text/infer")
    async def infer(self, request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["inputs"][0]["data"]
        outs = await asyncio.gather(*(self._one(t) for t in texts))
        data = [json.dumps(o) for o in outs]
        return JSONResponse(
            {
                "model_name": "text",
                "id": body.get("id", ""),
                "outputs": [{"name": "merge", "datatype": "BYTES", "shape": [len(data)], "data": data}],
            }
        )


def peer_app(pipeline: Any, configs: dict) -> Any:
    """The bound application serving `configs` (stage -> StageConfig) of the text pipeline."""
    from pipetune.models.registry import variant_model_ref

    if sorted(pipeline.stage_names) != sorted(STAGES):
        raise ValueError(f"the peer is written for the text pipeline's stages {STAGES}")
    handles = {}
    for s in STAGES:
        c = configs[s]
        ref = variant_model_ref(pipeline, s, c.variant)
        d = PeerStage.options(  # type: ignore[attr-defined]
            name=f"peer-{s}", num_replicas=c.replicas, ray_actor_options={"num_cpus": c.cores}
        )
        handles[s] = d.bind({"adapter": ref.adapter, "params": ref.params}, c.cores, c.batch)
    return PeerIngress.options(ray_actor_options={"num_cpus": 1}).bind(  # type: ignore[attr-defined]
        handles["lang"], handles["topic"], handles["keywords"], handles["merge"]
    )
