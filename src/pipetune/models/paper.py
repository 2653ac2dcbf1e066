"""The architectures of IPA's five paper pipelines, built from their configurations with random weights.

IPA (Ghafouri et al., JSys 2024) serves real Hugging Face / Ultralytics checkpoints. Weights cannot be
downloaded here, and the latency of a dense network does not depend on its weight values, so every variant is
built from a `transformers` configuration whose sizes (hidden size, layers, heads, feed-forward size,
vocabulary) match the published checkpoint, initialised with `torch.manual_seed(seed)`. Outputs are therefore
meaningless; shapes and costs are real. Accuracies come from the paper (the `accuracy` of each variant in
the pipelines under `pipetune/examples/paper`, written by `scripts/make_paper_profiles.py`).

What is *not* the paper's model:

* **YOLOv5** cannot be built by `transformers`. We use **D-FINE** (a real-time DETR detector with an HGNetV2
  backbone) at its published nano/small/medium/large/x-large sizes: 4 / 10 / 19 / 31 / 62 M parameters and
  about 7 / 25 / 57 / 91 / 202 GFLOPs at 640x640, the closest family `transformers` can build to YOLOv5 n/s/m/l/x
  (1.9 / 7.2 / 21 / 46 / 86 M parameters, 4.5 / 16.5 / 49 / 109 / 205 GFLOPs). The variants keep the paper's
  names (yolov5n ... yolov5x) so that accuracies line up; `builder` says what is really run.
* Generative models decode greedily (1 beam) a FIXED number of tokens (`min_new_tokens = max_new_tokens`),
  so that a random-weight model that would stop at once costs what a trained one costs on typical output.
* Checkpoints the paper names loosely (`bert-sentiment`, `distilbert-sentiment`, `roberta-sentiment`) are
  mapped to the common public checkpoint of that name (see `checkpoint`); their vocabulary sizes follow it.

The catalogue of variants (names, checkpoints, size configurations, default input shapes) is data:
`paper_variants.yaml` beside this module, read once at import (`read_catalogue`); this module keeps the code
that builds each family's architecture from it.

Each adapter implements `pipetune.models.base.ModelAdapter` (MLServer's load/predict shape): construction is
cheap, `load()` builds the model, `predict(batch)` runs it under `torch.inference_mode()`, `sample_inputs(n)`
makes fixed-size inputs (`InputShape` says which, and is written into every profile header).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from pipetune.errors import PipetuneError
from pipetune.models.base import ModelAdapter


class PaperModelError(PipetuneError):
    """An unknown paper variant or a bad option for one."""


# ---- fixed input shapes ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputShape:
    """What one item is. `key()` names the shape; variants measured at the same key share measurements."""

    kind: str  # image | fbank | tokens
    image_size: int = 0  # square RGB image, pixels per side
    frames: int = 0  # fbank frames (10 ms hop)
    features: int = 0  # fbank bins
    tokens: int = 0  # input token ids per item (padded / truncated to this length)
    new_tokens: int = 0  # generated tokens per item (0 = not generative)

    def key(self) -> str:
        if self.kind == "image":
            return f"image{self.image_size}"
        if self.kind == "fbank":
            return f"fbank{self.frames}x{self.features}-gen{self.new_tokens}"
        return f"tok{self.tokens}" + (f"-gen{self.new_tokens}" if self.new_tokens else "")

    def describe(self) -> str:
        if self.kind == "image":
            return f"one {self.image_size}x{self.image_size} RGB image (float32 3x{self.image_size}x{self.image_size})"
        if self.kind == "fbank":
            return (
                f"{self.frames / 100:g} s of 16 kHz audio as {self.frames} x {self.features}-dim log-mel fbank "
                f"frames; {self.new_tokens} generated tokens (greedy, fixed)"
            )
        gen = f"; {self.new_tokens} generated tokens (greedy, fixed)" if self.new_tokens else ""
        return f"{self.tokens} input tokens{gen}"


# ---- the variants --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperVariant:
    """One variant of a paper stage: how to build it and what the real checkpoint is."""

    name: str
    family: str  # d-fine | resnet | speech2text | qa | seqcls | bart | marian (a key of _BUILDERS)
    checkpoint: str  # the real checkpoint the sizes are taken from
    builder: str  # what is really built (transformers class and sizes), for headers and READMEs
    config: dict = field(default_factory=dict)


CATALOGUE = Path(__file__).with_name("paper_variants.yaml")
_SECTIONS = ("input_shapes", "dfine_sizes", "resnet_depths", "s2t_sizes", "variants")


def read_catalogue(path: str | Path = CATALOGUE) -> dict[str, Any]:
    """The variant catalogue (see the YAML file's header), checked: every section present, every variant of a
    family this module builds, with a default input shape."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PaperModelError(f"paper variant catalogue {path}: cannot be read ({e})") from None
    missing = [k for k in _SECTIONS if not isinstance((data or {}).get(k), dict)]
    if missing:
        raise PaperModelError(f"paper variant catalogue {path}: section(s) {missing} missing; give each as a mapping")
    for name, v in data["variants"].items():
        need = [k for k in ("family", "checkpoint", "builder") if not isinstance(v.get(k), str)]
        if need:
            raise PaperModelError(f"{path}: variants.{name}: give {need} (strings)")
        if v["family"] not in _BUILDERS or v["family"] not in data["input_shapes"]:
            raise PaperModelError(
                f"{path}: variants.{name}.family {v['family']!r} has no builder or input shape; "
                f"use one of {sorted(set(_BUILDERS) & set(data['input_shapes']))}"
            )
    return data


def _variants(catalogue: dict[str, Any]) -> dict[str, PaperVariant]:
    return {
        name: PaperVariant(name, v["family"], v["checkpoint"], v["builder"], dict(v.get("config") or {}))
        for name, v in catalogue["variants"].items()
    }


def paper_variant(name: str) -> PaperVariant:
    try:
        return PAPER_VARIANTS[name]
    except KeyError:
        raise PaperModelError(f"unknown paper variant {name!r}; known variants: {sorted(PAPER_VARIANTS)}") from None


# ---- builders (transformers imported lazily: it is an optional dependency) --------------------------------
def _build_dfine(cfg: dict):
    from transformers import DFineConfig, DFineForObjectDetection, HGNetV2Config

    sizes = _CATALOGUE["dfine_sizes"][cfg["size"]]
    # num_labels is a PretrainedConfig keyword that transformers 5's generated config signatures leave out
    config = DFineConfig(  # type: ignore[call-arg]  # num_labels: missing from the stub, accepted at run time
        backbone_config=HGNetV2Config(**sizes["backbone"]), num_labels=80, **sizes["detector"]
    )
    return DFineForObjectDetection(config)


def _build_resnet(cfg: dict):
    from transformers import ResNetConfig, ResNetForImageClassification

    r = _CATALOGUE["resnet_depths"][cfg["depth"]]
    depths, layer = r["depths"], r["layer"]
    hidden = [64, 128, 256, 512] if layer == "basic" else [256, 512, 1024, 2048]
    config = ResNetConfig(  # type: ignore[call-arg]  # num_labels: missing from the stub, accepted at run time
        embedding_size=64, hidden_sizes=hidden, depths=depths, layer_type=layer, num_labels=1000
    )
    return ResNetForImageClassification(config)


def _build_s2t(cfg: dict):
    from transformers import Speech2TextConfig, Speech2TextForConditionalGeneration

    config = Speech2TextConfig(
        vocab_size=10000,
        encoder_layers=12,
        decoder_layers=6,
        input_feat_per_channel=80,
        num_conv_layers=2,
        conv_kernel_sizes=[5, 5],
        conv_channels=1024,
        max_source_positions=6000,
        max_target_positions=1024,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        scale_embedding=True,
        **_CATALOGUE["s2t_sizes"][cfg["size"]],
    )
    return Speech2TextForConditionalGeneration(config)


class _EncoderSizes(TypedDict):
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


# the encoders the question-answering and sequence-classification variants share (BERT-base sizes)
_BASE_ENCODER = _EncoderSizes(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def _encoder_config(arch: str, vocab_size: int, num_labels: int = 2):
    if arch == "distilbert":
        from transformers import DistilBertConfig

        return DistilBertConfig(  # type: ignore[call-arg]  # num_labels: missing from the stub, accepted at run time
            vocab_size=vocab_size, dim=768, n_layers=6, n_heads=12, hidden_dim=3072, num_labels=num_labels
        )
    if arch == "bert":
        from transformers import BertConfig

        return BertConfig(  # type: ignore[call-arg]  # num_labels: missing from the stub, accepted at run time
            vocab_size=vocab_size, num_labels=num_labels, **_BASE_ENCODER
        )
    import transformers

    cls = {"roberta": transformers.RobertaConfig, "xlm-roberta": transformers.XLMRobertaConfig}[arch]
    return cls(  # type: ignore[call-arg]  # num_labels: missing from the stub, accepted at run time
        vocab_size=vocab_size,
        max_position_embeddings=514,
        type_vocab_size=1,
        num_labels=num_labels,
        pad_token_id=1,
        **_BASE_ENCODER,
    )


def _build_qa(cfg: dict):
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_config(_encoder_config(cfg["arch"], cfg["vocab_size"]))


def _build_seqcls(cfg: dict):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_config(
        _encoder_config(cfg["arch"], cfg["vocab_size"], cfg["num_labels"])
    )


def _build_bart(cfg: dict):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(
        vocab_size=50264,
        d_model=1024,
        encoder_layers=cfg["encoder_layers"],
        decoder_layers=cfg["decoder_layers"],
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
        max_position_embeddings=1024,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(config)


def _build_marian(cfg: dict):
    from transformers import MarianConfig, MarianMTModel

    v = cfg["vocab_size"]
    config = MarianConfig(
        vocab_size=v,
        decoder_vocab_size=v,
        d_model=cfg["d_model"],
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=cfg["heads"],
        decoder_attention_heads=cfg["heads"],
        encoder_ffn_dim=cfg["ffn"],
        decoder_ffn_dim=cfg["ffn"],
        max_position_embeddings=512,
        pad_token_id=v - 1,
        eos_token_id=0,
        decoder_start_token_id=v - 1,
        forced_eos_token_id=None,
        scale_embedding=True,
        activation_function="swish",
    )
    return MarianMTModel(config)


_BUILDERS: dict[str, Callable[[dict], Any]] = {
    "d-fine": _build_dfine,
    "resnet": _build_resnet,
    "speech2text": _build_s2t,
    "qa": _build_qa,
    "seqcls": _build_seqcls,
    "bart": _build_bart,
    "marian": _build_marian,
}

_GENERATIVE = {"speech2text", "bart", "marian"}

_CATALOGUE = read_catalogue()
PAPER_VARIANTS: dict[str, PaperVariant] = _variants(_CATALOGUE)


def default_shape(variant: str) -> InputShape:
    """The input shape a variant is profiled at when a pipeline does not say otherwise (the catalogue's
    `input_shapes` of its family)."""
    return InputShape(**_CATALOGUE["input_shapes"][paper_variant(variant).family])


def _as_shape(shape: InputShape | dict, variant: str) -> InputShape:
    """Accept an InputShape or its mapping form (as written under `model.params.shape` in a pipeline YAML)."""
    if isinstance(shape, InputShape):
        return shape
    if not isinstance(shape, dict):
        raise PaperModelError(f"{variant}: shape must be a mapping such as {{kind: tokens, tokens: 128}}")
    known = set(InputShape.__dataclass_fields__)
    unknown = sorted(set(shape) - known)
    if unknown:
        raise PaperModelError(f"{variant}: shape has unknown field(s) {unknown}; known fields: {sorted(known)}")
    try:
        return InputShape(**shape)
    except TypeError as e:
        raise PaperModelError(f"{variant}: bad shape {shape}: {e}") from None


def shape_params(shape: InputShape) -> dict:
    """The mapping form of a shape, without zero fields (for `model.params.shape` in YAML)."""
    return {k: v for k, v in shape.__dict__.items() if v}


class PaperModel(ModelAdapter):
    """A paper variant with random weights. `PaperModel("resnet50").load(); m.predict(m.sample_inputs(4))`."""

    def __init__(self, variant: str, shape: InputShape | dict | None = None, seed: int = 0):
        self.variant = paper_variant(variant)
        self.name = variant
        self.shape = _as_shape(shape, variant) if shape is not None else default_shape(variant)
        self._check_shape()
        self.seed = seed
        self.model = None

    def _check_shape(self) -> None:
        fam, s = self.variant.family, self.shape
        want = {"d-fine": "image", "resnet": "image", "speech2text": "fbank"}.get(fam, "tokens")
        if s.kind != want:
            raise PaperModelError(f"shape.kind={s.kind!r} does not fit {self.name} ({fam}); use kind={want!r}")
        # D-FINE picks its 300 queries among the feature-map cells: a small image has too few of them.
        smallest = 256 if fam == "d-fine" else 32
        if want == "image" and s.image_size < smallest:
            raise PaperModelError(f"shape.image_size={s.image_size} is too small for {self.name}; use >= {smallest}")
        if want == "fbank" and (s.frames < 16 or s.features != 80):
            raise PaperModelError(f"shape for {self.name}: need frames >= 16 and features == 80 (got {s})")
        if want == "tokens":
            limit = 512 if fam in ("qa", "seqcls", "marian") else 1024
            if not (2 <= s.tokens <= limit):
                raise PaperModelError(f"shape.tokens={s.tokens} for {self.name} must be in [2, {limit}]")
        if (fam in _GENERATIVE) != (s.new_tokens > 0):
            raise PaperModelError(
                f"shape.new_tokens={s.new_tokens} for {self.name}: generative models need new_tokens >= 1, "
                "others must use 0"
            )

    # ---- ModelAdapter ------------------------------------------------------------------------------------
    def load(self) -> None:
        import torch

        torch.manual_seed(self.seed)
        model = _BUILDERS[self.variant.family](self.variant.config)
        self.model = model.eval()

    def parameters_m(self) -> float:
        if self.model is None:
            raise PaperModelError(f"{self.name}: call load() first")
        return sum(p.numel() for p in self.model.parameters()) / 1e6

    def sample_inputs(self, n: int) -> list[Any]:
        import torch

        if n < 1:
            raise PaperModelError(f"sample_inputs(n={n}): n must be >= 1")
        g = torch.Generator().manual_seed(1234 + self.seed)
        s = self.shape
        if s.kind == "image":
            return [torch.randn(3, s.image_size, s.image_size, generator=g) for _ in range(n)]
        if s.kind == "fbank":
            return [torch.randn(s.frames, s.features, generator=g) for _ in range(n)]
        vocab = self.variant.config.get("vocab_size", 50264 if self.variant.family == "bart" else 30000)
        # ids 3.. avoid the special tokens (pad/bos/eos) so that no position is masked out
        return [torch.randint(3, vocab - 1, (s.tokens,), generator=g) for _ in range(n)]

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        import torch

        if self.model is None:
            raise PaperModelError(f"{self.name}: call load() before predict()")
        if not batch:
            return []
        x = torch.stack(list(batch))
        fam, s = self.variant.family, self.shape
        with torch.inference_mode():
            if fam == "d-fine":
                out = self.model(pixel_values=x)
                return [int(k) for k in out.logits.amax(-1).argmax(-1)]  # best query per image
            if fam == "resnet":
                return [int(k) for k in self.model(pixel_values=x).logits.argmax(-1)]
            if fam in ("qa",):
                out = self.model(input_ids=x, attention_mask=torch.ones_like(x))
                return list(zip(out.start_logits.argmax(-1).tolist(), out.end_logits.argmax(-1).tolist()))
            if fam == "seqcls":
                return [int(k) for k in self.model(input_ids=x, attention_mask=torch.ones_like(x)).logits.argmax(-1)]
            gen = dict(max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens, num_beams=1, do_sample=False)
            if fam == "speech2text":
                mask = torch.ones(x.shape[:2], dtype=torch.long)
                ids = self.model.generate(input_features=x, attention_mask=mask, **gen)
            else:
                ids = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **gen)
            return [row.tolist() for row in ids]
