"""Train the topic heads of the text example: `python -m pipetune.examples.text.train [--variants L1,L3,L6,mpnet]`.

For each encoder variant (MiniLM truncated to k layers, optionally int8; all-mpnet-base-v2), embed the training split of the
English fortunes topics (at most 200 per topic, see data.py) and fit a multinomial logistic regression
(lbfgs, C=1, class-balanced, fixed order: deterministic). Writes heads.npz beside this file (a few tens of kB;
committed, and rebuilt on first use when a variant is missing).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

# The heads file and its training live here, below models.py: the topic encoder (models.py) reads its head from
# HEADS_PATH and trains a missing one on first use, so this module must not import models.py.
HEADS_PATH = Path(__file__).with_name("heads.npz")
# heads.npz key (encoders.encoder_key) -> (encoder, layers, quantisation)
VARIANTS = {
    "L1": ("minilm", 1, None),
    "L3": ("minilm", 3, None),
    "L6": ("minilm", 6, None),
    "L6-int8": ("minilm", 6, "int8"),
    "mpnet": ("mpnet", 12, None),
}
TRAIN_PER_TOPIC = 200
MAX_SEQ_LENGTH = 128  # tokens the encoder reads, the same when training a head and when serving it


def load_heads(path: Path = HEADS_PATH) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    if not path.exists():
        return {}
    z = np.load(path, allow_pickle=False)
    keys = sorted({k.split("/")[0] for k in z.files})
    return {k: (z[f"{k}/coef"], z[f"{k}/intercept"], z[f"{k}/classes"]) for k in keys}


def train_heads(keys: list[str] | None = None, verbose: bool = False) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    from pipetune.examples.text.data import topic_split
    from pipetune.examples.text.encoders import ready_encoder_dir
    from pipetune.models.adapters import SentenceTransformerAdapter

    keys = keys or list(VARIANTS)
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    xs, ys = topic_split("train", TRAIN_PER_TOPIC)
    heads = load_heads()
    train_acc = {}
    for k in keys:
        t = time.perf_counter()
        encoder, layers, quant = VARIANTS[k]
        # the topic encoder's backbone only (TopicEncoder without its head): the head is what we are training
        enc = SentenceTransformerAdapter(
            ready_encoder_dir(encoder), layers=layers, quantize=quant, max_seq_length=MAX_SEQ_LENGTH
        )
        enc.load()
        emb = np.concatenate([enc.encode(xs[i : i + 64]) for i in range(0, len(xs), 64)])
        clf = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced").fit(emb, ys)
        heads[k] = (clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32), np.asarray(clf.classes_))
        train_acc[k] = float(clf.score(emb, ys))
        if verbose:
            print(f"{k}: {len(xs)} texts, train accuracy {train_acc[k]:.3f}, {time.perf_counter() - t:.1f} s")
    arrays: dict[str, np.ndarray] = {}
    for k, (coef, icpt, classes) in heads.items():
        arrays[f"{k}/coef"], arrays[f"{k}/intercept"], arrays[f"{k}/classes"] = coef, icpt, classes.astype(str)
    np.savez_compressed(HEADS_PATH, **arrays)  # type: ignore[arg-type]  # mypy matches **arrays to allow_pickle: bool
    return train_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    from pipetune.models.base import pin_threads

    pin_threads(a.threads)
    train_heads([v.strip() for v in a.variants.split(",") if v.strip()], verbose=True)
    print(f"wrote {HEADS_PATH}")


if __name__ == "__main__":
    main()
