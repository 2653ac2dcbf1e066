"""Plot a ProfileTable: latency (p50 and p99) and saturation throughput against batch size, per variant."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pipetune.profiles import ProfileTable


def plot_profile(table: ProfileTable, out: str | Path, title: str = "", stage_of: dict[str, str] | None = None) -> Path:
    """One row of two panels per stage (all variants of a stage together); solid = 1 core, dashed = more."""
    from pipetune.plotting import pyplot, save_figure

    plt = pyplot()

    stage_of = stage_of or {}
    groups: dict[str, list[str]] = defaultdict(list)
    for v in table.variants():
        groups[stage_of.get(v, "")].append(v)
    n = max(1, len(groups))
    fig, axes = plt.subplots(n, 2, figsize=(11, 3.4 * n), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for row, (stage, vs) in enumerate(sorted(groups.items())):
        ax_l, ax_t = axes[row]
        for i, v in enumerate(vs):
            color = f"C{i % 10}"
            rows = table.rows_for(v)
            for j, c in enumerate(sorted({r.cores for r in rows})):
                pts = sorted((r for r in rows if r.cores == c), key=lambda r: r.batch)
                b = [r.batch for r in pts]
                ls = styles[j % len(styles)]
                fitted = any(r.source == "fitted" for r in pts)
                label = f"{v} ({c}c{', fitted' if fitted else ''})"
                ax_l.plot(b, [r.latency_p99_s * 1e3 for r in pts], ls, color=color, marker="o", ms=3, label=label)
                ax_l.plot(b, [r.latency_p50_s * 1e3 for r in pts], ls, color=color, alpha=0.35)
                ax_t.plot(b, [r.throughput_rps for r in pts], ls, color=color, marker="o", ms=3, label=label)
        for ax in (ax_l, ax_t):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.grid(True, which="both", alpha=0.3)
        ax_l.set_ylabel("batch latency, ms\n(p99 bold, p50 faint)")
        ax_t.set_ylabel("saturation throughput,\nitems/s per replica")
        ax_l.set_title(f"{stage or 'variants'}: latency")
        ax_t.set_title(f"{stage or 'variants'}: throughput")
        ax_t.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)
