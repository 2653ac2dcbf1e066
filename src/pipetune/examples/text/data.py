"""Labelled text from Debian's fortunes packages: language per package, topic per fortune file.

* `fortunes` (+ `fortunes-min`): English, one file per category (computers, science, ...);
* `fortunes-de`, `fortunes-es`, `fortunes-it`: German, Spanish, Italian.

Installed by `make install` (APT_PACKAGES in the Makefile) or `apt-get install fortunes fortunes-de fortunes-es
fortunes-it`. Offensive sub-folders (`off/`) are never read. A fortune is cleaned (overstrike backspaces and
control characters removed, whitespace collapsed) and kept when it has 20..600 characters. The train/test split
is by a hash of the text (30% test), so it is stable whatever the file order or package version.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from pipetune.errors import PipetuneError

FORTUNE_DIR = Path("/usr/share/games/fortunes")
LANGUAGES = ("en", "de", "es", "it")
APT_PACKAGES = ("fortunes", "fortunes-min", "fortunes-de", "fortunes-es", "fortunes-it")

# English topic classes: fortune files whose subject matter is distinct enough to learn from one sentence.
TOPICS = ("computers", "education", "food", "law", "love", "politics", "science", "sports")

# The English package's category files (the top folder also holds fortunes-it's files; these are English).
ENGLISH_FILES = (
    "art",
    "computers",
    "cookie",
    "definitions",
    "drugs",
    "education",
    "ethnic",
    "food",
    "fortunes",
    "goedel",
    "humorists",
    "kids",
    "law",
    "linuxcookie",
    "literature",
    "love",
    "magic",
    "medicine",
    "men-women",
    "miscellaneous",
    "news",
    "people",
    "pets",
    "platitudes",
    "politics",
    "riddles",
    "science",
    "songs-poems",
    "sports",
    "startrek",
    "wisdom",
    "work",
    "zippy",
)

MIN_CHARS, MAX_CHARS = 20, 600
TEST_FRACTION = 0.3

_OVERSTRIKE = re.compile(r".\x08")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACE = re.compile(r"\s+")


class CorpusMissing(PipetuneError):
    """The fortunes packages are not installed."""


def clean(text: str) -> str:
    text = _OVERSTRIKE.sub("", text)
    text = _CONTROL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def read_fortune_file(path: Path) -> list[str]:
    raw = path.read_bytes().decode("utf-8", errors="replace")
    out = []
    for chunk in re.split(r"^%\s*$", raw, flags=re.M):
        t = clean(chunk)
        if MIN_CHARS <= len(t) <= MAX_CHARS:
            out.append(t)
    return out


def _files(lang: str, root: Path) -> list[tuple[str, Path]]:
    if lang == "en":
        return [(n, root / n) for n in ENGLISH_FILES if (root / n).is_file()]
    sub = root / lang
    if not sub.is_dir():
        return []
    files = []
    for p in sorted(sub.iterdir()):
        if p.is_file() and p.suffix not in (".dat", ".u8") and not p.name.endswith("-pre"):
            files.append((p.name.removesuffix(".fortunes"), p))
    return files


def is_test(text: str) -> bool:
    h = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big")
    return (h % 1000) < TEST_FRACTION * 1000


@lru_cache(maxsize=4)
def corpus(root: str = str(FORTUNE_DIR)) -> list[tuple[str, str, str]]:
    """Every kept fortune as (text, language, category), deduplicated, in a fixed order."""
    base = Path(root)
    rows: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for lang in LANGUAGES:
        files = _files(lang, base)
        if not files:
            raise CorpusMissing(
                f"no {lang!r} fortunes under {base}; install the Debian packages: "
                f"apt-get install {' '.join(APT_PACKAGES)} (or run `make install`)"
            )
        for cat, path in files:
            for t in read_fortune_file(path):
                if t not in seen:
                    seen.add(t)
                    rows.append((t, lang, cat))
    return rows


def language_split(split: str, per_language: int | None = None) -> tuple[list[str], list[str]]:
    """(texts, languages) of the train or test split, at most `per_language` per language, balanced."""
    want_test = _split_flag(split)
    by: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for t, lang, _ in corpus():
        if is_test(t) == want_test:
            by[lang].append(t)
    return _interleave(by, per_language)


def topic_split(split: str, per_topic: int | None = None) -> tuple[list[str], list[str]]:
    """(texts, topics) of English fortunes in TOPICS, at most `per_topic` per topic, interleaved by class."""
    want_test = _split_flag(split)
    by: dict[str, list[str]] = {c: [] for c in TOPICS}
    for t, lang, cat in corpus():
        if lang == "en" and cat in by and is_test(t) == want_test:
            by[cat].append(t)
    return _interleave(by, per_topic)


def _split_flag(split: str) -> bool:
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; use 'train' or 'test'")
    return split == "test"


def _interleave(by: dict[str, list[str]], cap: int | None) -> tuple[list[str], list[str]]:
    """Round-robin over classes, so any prefix (`limit`) of the result stays balanced."""
    lists = {k: (v[:cap] if cap else v) for k, v in by.items()}
    xs, ys = [], []
    for i in range(max((len(v) for v in lists.values()), default=0)):
        for k, v in lists.items():
            if i < len(v):
                xs.append(v[i])
                ys.append(k)
    return xs, ys


def available() -> bool:
    try:
        corpus()
        return True
    except CorpusMissing:
        return False
