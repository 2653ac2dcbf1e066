"""One way to draw and write a figure: matplotlib on the file-only Agg backend, and `save_figure`, which lays the
figure out, makes the folder, writes it with a tight bounding box at one resolution and closes it (a figure left
open keeps its memory until the process ends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DPI = 100  # every PNG pipetune writes: one resolution, so figures side by side in a report match


def pyplot() -> Any:
    """`matplotlib.pyplot` on the Agg backend (no display needed); imported on first use, since it is slow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write `fig` to `path` (its folder made if missing) with a tight layout and bounding box, then close it."""
    path = Path(path)
    try:
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return path
