"""One home for writing figures: `save_figure` makes the folder, writes at one dpi, and closes the figure."""

from __future__ import annotations

import struct

from pipetune.plotting import DPI, pyplot, save_figure


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_save_figure_makes_the_folder_closes_the_figure_and_trims(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    before = set(plt.get_fignums())
    out = save_figure(fig, tmp_path / "a" / "b" / "f.png")
    assert out == tmp_path / "a" / "b" / "f.png" and out.stat().st_size > 1000
    assert fig.number not in plt.get_fignums() and fig.number in before  # closed: its memory is freed
    w, h = png_size(out)
    # a tight bounding box trims the margins: at most the full canvas at DPI, and not much less
    assert 0.6 * 4 * DPI <= w <= 4 * DPI and 0.6 * 3 * DPI <= h <= 3 * DPI


def test_every_figure_writer_goes_through_save_figure():
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "pipetune"
    callers = [p.relative_to(src).as_posix() for p in src.rglob("*.py") if ".savefig(" in p.read_text("utf-8")]
    assert callers == ["plotting.py"]
