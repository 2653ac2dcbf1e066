"""Adapters of the digits example: scikit-learn's bundled 8x8 digits, two stages.

* `Features` (stage `features`): a lossy PCA bottleneck — project each image onto the first k principal
  components and reconstruct it (k = None keeps the raw pixels). Fewer components: cheaper downstream, less
  information. Its accuracy is that of a fixed reference classifier (logistic regression trained on raw
  pixels) on the reconstructed test images.
* `Classifier` (stage `classify`): scikit-learn classifiers from a depth-limited tree to an RBF SVM.

Data: `sklearn.datasets.load_digits()` (ships inside scikit-learn), a stratified 70/30 split with seed 0.
Every model is fitted in `load()` on the training part (deterministic, well under a second), so nothing is
stored on disk; load time therefore includes the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pipetune.models.base import ModelAdapter

SEED = 0


@lru_cache(maxsize=1)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, X_test, y_train, y_test); pixels scaled to [0, 1], float64."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = d.data / 16.0
    return tuple(train_test_split(X, d.target, test_size=0.3, random_state=SEED, stratify=d.target))  # type: ignore[return-value]


@lru_cache(maxsize=1)
def reference_classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    Xtr, _, ytr, _ = digits_split()
    return LogisticRegression(max_iter=2000, random_state=SEED).fit(Xtr, ytr)


class _DigitsBase(ModelAdapter):
    def sample_inputs(self, n: int) -> list[Any]:
        _, Xte, _, _ = digits_split()
        return [Xte[i % len(Xte)] for i in range(n)]

    def labelled_data(self, limit: int | None = None) -> tuple[list[Any], list[Any]]:
        _, Xte, _, yte = digits_split()
        k = len(Xte) if limit is None else min(limit, len(Xte))
        return list(Xte[:k]), [int(y) for y in yte[:k]]


class Features(_DigitsBase):
    """PCA bottleneck with `components` components (None: raw pixels, an identity stage)."""

    def __init__(self, components: int | None = None):
        if components is not None and not (1 <= components <= 64):
            raise ValueError(f"components={components} must be in 1..64 (8x8 images) or None for raw pixels")
        self.components = components
        self.name = f"pca-{components}" if components else "pixels"
        self.pca: Any = None

    def load(self) -> None:
        if self.components is None:
            self.pca = False
            return
        from sklearn.decomposition import PCA

        Xtr, _, _, _ = digits_split()
        self.pca = PCA(n_components=self.components, random_state=SEED).fit(Xtr)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self.pca is None:
            raise RuntimeError(f"{self.name}: predict() before load()")
        X = np.asarray(batch, dtype=float)
        if self.pca is False:
            return list(X)
        return list(self.pca.inverse_transform(self.pca.transform(X)))

    def score(self, outputs: Sequence[Any], labels: Sequence[Any]) -> float:
        pred = reference_classifier().predict(np.asarray(outputs))
        return float(np.mean(pred == np.asarray(labels)))


def _build_classifier(kind: str) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    kinds = {
        "tree": lambda: DecisionTreeClassifier(max_depth=6, random_state=SEED),
        "bayes": lambda: GaussianNB(),
        "logreg": lambda: LogisticRegression(max_iter=2000, random_state=SEED),
        "forest": lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1),
        "knn": lambda: KNeighborsClassifier(n_neighbors=3, n_jobs=1),
        "svc": lambda: SVC(kernel="rbf", gamma="scale", C=10.0, random_state=SEED),
    }
    if kind not in kinds:
        raise ValueError(f"kind={kind!r}; choose one of {sorted(kinds)}")
    return kinds[kind]()


class Classifier(_DigitsBase):
    """A scikit-learn classifier of the 64 pixels, fitted on the training split in `load()`."""

    def __init__(self, kind: str = "logreg"):
        _build_classifier(kind)  # validate early, in the constructor, with a clear message
        self.kind = kind
        self.name = kind
        self.model: Any = None

    def load(self) -> None:
        Xtr, _, ytr, _ = digits_split()
        self.model = _build_classifier(self.kind).fit(Xtr, ytr)

    def predict(self, batch: Sequence[Any]) -> list[Any]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: predict() before load()")
        return [int(y) for y in self.model.predict(np.asarray(batch, dtype=float))]
