"""The architectures of IPA's five paper pipelines, built from their configurations with random weights.

IPA (Ghafouri et al., JSys 2024) serves real Hugging Face / Ultralytics checkpoints. Weights cannot be
downloaded here, and the latency of a dense network does not depend on its weight values, so every variant is
built from a `transformers` configuration whose sizes (hidden size, layers, heads, feed-forward size,
vocabulary) match the published checkpoint, initialised with `torch.manual_seed(seed)`. Outputs are therefore
meaningless; shapes and costs are real. Accuracies come from the paper (see `PAPER_ACCURACY`).

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

Each adapter implements `pipetune.models.base.ModelAdapter` (MLServer's load/predict shape): construction is
cheap, `load()` builds the model, `predict(batch)` runs it under `torch.inference_mode()`, `sample_inputs(n)`
makes fixed-size inputs (`InputShape` says which, and is written into every profile header).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    family: str  # d-fine | resnet | speech2text | roberta-qa | xlmr-qa | seqcls | bart | marian
    checkpoint: str  # the real checkpoint the sizes are taken from
    builder: str  # what is really built (transformers class and sizes), for headers and READMEs
    config: dict = field(default_factory=dict)


def _dfine(bb: dict, det: dict) -> dict:
    return {"backbone": bb, "detector": det}


# D-FINE sizes: the published n/s/m/l/x configurations (D-FINE, Peng et al. 2024; transformers' D-FINE port).
_DFINE = {
    "n": _dfine(
        dict(
            hidden_sizes=[128, 256, 512, 1024],
            stem_channels=[3, 16, 16],
            stage_in_channels=[16, 64, 256, 512],
            stage_mid_channels=[16, 32, 64, 128],
            stage_out_channels=[64, 256, 512, 1024],
            stage_num_blocks=[1, 1, 2, 1],
            stage_numb_of_layers=[3, 3, 3, 3],
            use_learnable_affine_block=True,
            out_indices=[3, 4],
        ),
        dict(
            num_feature_levels=2,
            encoder_ffn_dim=512,
            encode_proj_layers=[1],
            d_model=128,
            encoder_hidden_dim=128,
            decoder_ffn_dim=512,
            encoder_in_channels=[512, 1024],
            decoder_n_points=[6, 6],
            decoder_in_channels=[128, 128],
            feat_strides=[16, 32],
            depth_mult=0.5,
            decoder_layers=3,
            hidden_expansion=0.34,
        ),
    ),
    "s": _dfine(
        dict(
            hidden_sizes=[128, 256, 512, 1024],
            stem_channels=[3, 16, 16],
            stage_in_channels=[16, 64, 256, 512],
            stage_mid_channels=[16, 32, 64, 128],
            stage_out_channels=[64, 256, 512, 1024],
            stage_num_blocks=[1, 1, 2, 1],
            stage_numb_of_layers=[3, 3, 3, 3],
            use_learnable_affine_block=True,
            out_indices=[2, 3, 4],
        ),
        dict(
            decoder_layers=3,
            hidden_expansion=0.5,
            depth_mult=0.34,
            decoder_n_points=[3, 6, 3],
            encoder_in_channels=[256, 512, 1024],
        ),
    ),
    "m": _dfine(
        dict(
            hidden_sizes=[192, 384, 768, 1536],
            stem_channels=[3, 24, 32],
            stage_in_channels=[32, 96, 384, 768],
            stage_mid_channels=[32, 64, 128, 256],
            stage_out_channels=[96, 384, 768, 1536],
            stage_num_blocks=[1, 1, 3, 1],
            stage_numb_of_layers=[4, 4, 4, 4],
            use_learnable_affine_block=True,
            out_indices=[2, 3, 4],
        ),
        dict(
            decoder_layers=4,
            decoder_n_points=[3, 6, 3],
            encoder_in_channels=[384, 768, 1536],
            depth_mult=0.67,
            hidden_expansion=1.0,
        ),
    ),
    "l": _dfine(
        dict(
            hidden_sizes=[256, 512, 1024, 2048],
            stem_channels=[3, 32, 48],
            stage_in_channels=[48, 128, 512, 1024],
            stage_mid_channels=[48, 96, 192, 384],
            stage_out_channels=[128, 512, 1024, 2048],
            stage_num_blocks=[1, 1, 3, 1],
            stage_numb_of_layers=[6, 6, 6, 6],
            out_indices=[2, 3, 4],
        ),
        dict(
            encoder_ffn_dim=1024,
            encoder_in_channels=[512, 1024, 2048],
            decoder_n_points=[3, 6, 3],
            hidden_expansion=1.0,
            decoder_layers=6,
        ),
    ),
    "x": _dfine(
        dict(
            hidden_sizes=[256, 512, 1024, 2048],
            stem_channels=[3, 32, 64],
            stage_in_channels=[64, 128, 512, 1024],
            stage_mid_channels=[64, 128, 256, 512],
            stage_out_channels=[128, 512, 1024, 2048],
            stage_num_blocks=[1, 2, 5, 2],
            stage_numb_of_layers=[6, 6, 6, 6],
            out_indices=[2, 3, 4],
        ),
        dict(
            encoder_in_channels=[512, 1024, 2048],
            encoder_hidden_dim=384,
            encoder_ffn_dim=2048,
            decoder_n_points=[3, 6, 3],
            decoder_in_channels=[384, 384, 384],
            hidden_expansion=1.0,
            decoder_layers=6,
        ),
    ),
}

_RESNET = {  # torchvision / microsoft resnet-N: depths, block type
    18: ([2, 2, 2, 2], "basic"),
    34: ([3, 4, 6, 3], "basic"),
    50: ([3, 4, 6, 3], "bottleneck"),
    101: ([3, 4, 23, 3], "bottleneck"),
    152: ([3, 8, 36, 3], "bottleneck"),
}

# facebook/s2t-{small,medium,large}-librispeech-asr
_S2T = {
    "small": dict(
        d_model=256, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=2048, decoder_ffn_dim=2048
    ),
    "medium": dict(
        d_model=512, encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048
    ),
    "large": dict(
        d_model=1024, encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096
    ),
}

_BASE_ENCODER = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def _variants() -> dict[str, PaperVariant]:
    v: dict[str, PaperVariant] = {}
    for size in "nsmlx":
        v[f"yolov5{size}"] = PaperVariant(
            f"yolov5{size}",
            "d-fine",
            f"ultralytics yolov5{size} (stand-in: D-FINE-{size.upper()})",
            f"DFineForObjectDetection, D-FINE-{size.upper()} configuration (HGNetV2 backbone), 80 classes",
            {"size": size},
        )
    for depth in _RESNET:
        v[f"resnet{depth}"] = PaperVariant(
            f"resnet{depth}",
            "resnet",
            f"torchvision resnet{depth}",
            f"ResNetForImageClassification, depths {_RESNET[depth][0]}, {_RESNET[depth][1]} blocks, 1000 classes",
            {"depth": depth},
        )
    for size, kw in _S2T.items():
        v[f"s2t-{size}-librispeech"] = PaperVariant(
            f"s2t-{size}-librispeech",
            "speech2text",
            f"facebook/s2t-{size}-librispeech-asr",
            f"Speech2TextForConditionalGeneration, d_model {kw['d_model']}, 12 encoder / 6 decoder layers, "
            f"{kw['encoder_attention_heads']} heads, ffn {kw['encoder_ffn_dim']}, vocab 10000",
            {"size": size},
        )
    v["roberta-base-squad2"] = PaperVariant(
        "roberta-base-squad2",
        "qa",
        "deepset/roberta-base-squad2",
        "RobertaForQuestionAnswering, 12 layers, hidden 768, 12 heads, vocab 50265",
        {"arch": "roberta", "vocab_size": 50265},
    )
    v["xlm-roberta-base-squad2"] = PaperVariant(
        "xlm-roberta-base-squad2",
        "qa",
        "deepset/xlm-roberta-base-squad2",
        "XLMRobertaForQuestionAnswering, 12 layers, hidden 768, 12 heads, vocab 250002",
        {"arch": "xlm-roberta", "vocab_size": 250002},
    )
    v["distilbert-sst2"] = PaperVariant(
        "distilbert-sst2",
        "seqcls",
        "distilbert-base-uncased-finetuned-sst-2-english",
        "DistilBertForSequenceClassification, 6 layers, dim 768, 12 heads, vocab 30522, 2 labels",
        {"arch": "distilbert", "vocab_size": 30522, "num_labels": 2},
    )
    v["bert-sentiment"] = PaperVariant(
        "bert-sentiment",
        "seqcls",
        "nlptown/bert-base-multilingual-uncased-sentiment",
        "BertForSequenceClassification, 12 layers, hidden 768, 12 heads, vocab 105879, 5 labels",
        {"arch": "bert", "vocab_size": 105879, "num_labels": 5},
    )
    v["distilbert-sentiment"] = PaperVariant(
        "distilbert-sentiment",
        "seqcls",
        "lxyuan/distilbert-base-multilingual-cased-sentiments-student",
        "DistilBertForSequenceClassification, 6 layers, dim 768, 12 heads, vocab 119547, 3 labels",
        {"arch": "distilbert", "vocab_size": 119547, "num_labels": 3},
    )
    v["roberta-sentiment"] = PaperVariant(
        "roberta-sentiment",
        "seqcls",
        "cardiffnlp/twitter-roberta-base-sentiment",
        "RobertaForSequenceClassification, 12 layers, hidden 768, 12 heads, vocab 50265, 3 labels",
        {"arch": "roberta", "vocab_size": 50265, "num_labels": 3},
    )
    v["xlm-roberta-base-language-id"] = PaperVariant(
        "xlm-roberta-base-language-id",
        "seqcls",
        "papluca/xlm-roberta-base-language-detection",
        "XLMRobertaForSequenceClassification, 12 layers, hidden 768, 12 heads, vocab 250002, 20 labels",
        {"arch": "xlm-roberta", "vocab_size": 250002, "num_labels": 20},
    )
    for enc, dec in [(1, 1), (12, 1), (6, 6), (12, 3), (9, 6), (12, 6)]:
        n = f"distilbart-xsum-{enc}-{dec}"
        v[n] = PaperVariant(
            n,
            "bart",
            f"sshleifer/{n}",
            f"BartForConditionalGeneration, d_model 1024, {enc} encoder / {dec} decoder layers, 16 heads, "
            "ffn 4096, vocab 50264",
            {"encoder_layers": enc, "decoder_layers": dec},
        )
    v["opus-mt-fr-en"] = PaperVariant(
        "opus-mt-fr-en",
        "marian",
        "Helsinki-NLP/opus-mt-fr-en",
        "MarianMTModel, d_model 512, 6 encoder / 6 decoder layers, 8 heads, ffn 2048, vocab 59514",
        {"d_model": 512, "heads": 8, "ffn": 2048, "vocab_size": 59514},
    )
    v["opus-mt-tc-big-fr-en"] = PaperVariant(
        "opus-mt-tc-big-fr-en",
        "marian",
        "Helsinki-NLP/opus-mt-tc-big-fr-en",
        "MarianMTModel, d_model 1024, 6 encoder / 6 decoder layers, 16 heads, ffn 4096, vocab ~53k "
        "(vocabulary size approximate; it only sizes the embedding and output projection)",
        {"d_model": 1024, "heads": 16, "ffn": 4096, "vocab_size": 53017},
    )
    return v


PAPER_VARIANTS: dict[str, PaperVariant] = _variants()


def paper_variant(name: str) -> PaperVariant:
    try:
        return PAPER_VARIANTS[name]
    except KeyError:
        raise PaperModelError(f"unknown paper variant {name!r}; known variants: {sorted(PAPER_VARIANTS)}") from None


# ---- builders (transformers imported lazily: it is an optional dependency) --------------------------------
def _build_dfine(cfg: dict):
    from transformers import DFineConfig, DFineForObjectDetection, HGNetV2Config

    sizes = _DFINE[cfg["size"]]
    config = DFineConfig(backbone_config=HGNetV2Config(**sizes["backbone"]), num_labels=80, **sizes["detector"])
    return DFineForObjectDetection(config)


def _build_resnet(cfg: dict):
    from transformers import ResNetConfig, ResNetForImageClassification

    depths, layer = _RESNET[cfg["depth"]]
    hidden = [64, 128, 256, 512] if layer == "basic" else [256, 512, 1024, 2048]
    config = ResNetConfig(embedding_size=64, hidden_sizes=hidden, depths=depths, layer_type=layer, num_labels=1000)
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
        **_S2T[cfg["size"]],
    )
    return Speech2TextForConditionalGeneration(config)


def _encoder_config(arch: str, vocab_size: int, num_labels: int = 2):
    if arch == "distilbert":
        from transformers import DistilBertConfig

        return DistilBertConfig(
            vocab_size=vocab_size, dim=768, n_layers=6, n_heads=12, hidden_dim=3072, num_labels=num_labels
        )
    if arch == "bert":
        from transformers import BertConfig

        return BertConfig(vocab_size=vocab_size, num_labels=num_labels, **_BASE_ENCODER)
    if arch == "roberta":
        from transformers import RobertaConfig

        return RobertaConfig(
            vocab_size=vocab_size,
            max_position_embeddings=514,
            type_vocab_size=1,
            num_labels=num_labels,
            pad_token_id=1,
            **_BASE_ENCODER,
        )
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
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
        forced_bos_token_id=None,
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


def default_shape(variant: str) -> InputShape:
    """The input shape a variant is profiled at when a pipeline does not say otherwise."""
    fam = paper_variant(variant).family
    if fam == "d-fine":
        return InputShape("image", image_size=640)
    if fam == "resnet":
        return InputShape("image", image_size=224)
    if fam == "speech2text":
        return InputShape("fbank", frames=1000, features=80, new_tokens=40)
    if fam == "bart":
        return InputShape("tokens", tokens=256, new_tokens=32)
    if fam == "marian":
        return InputShape("tokens", tokens=128, new_tokens=128)
    if fam == "qa":
        return InputShape("tokens", tokens=128)
    return InputShape("tokens", tokens=64)


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
