"""Print the docs table of a profiled pipeline: accuracy, p99 at batch 1, saturation throughput at batch 1 and 8.

    .venv/bin/python benchmarks/profiler_table.py src/pipetune/examples/digits/pipeline.yaml [--cores 1]

Reads the spec and its ProfileTable(s); measured cells only (a missing cell prints as "-").
"""

from __future__ import annotations

import argparse

from pipetune.profiles import ProfileTable
from pipetune.spec import load_pipeline


def table(spec: str, cores: int) -> str:
    pl = load_pipeline(spec, check_profiles=False)
    out = [
        f"**{pl.name}** (measured, {cores} core(s) per replica)",
        "",
        "| stage | variant | accuracy | p99 b=1 (ms) | items/s b=1 | items/s b=8 | load (s) | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    tables: dict = {}
    for s in pl.stages:
        for v in s.variants:
            path = pl.profile_path(s.name, v.name)
            if path not in tables:
                tables[path] = ProfileTable.read_csv(path)
            rows = {(r.batch, r.cores): r for r in tables[path].rows_for(v.name) if r.source == "measured"}
            b1, b8 = rows.get((1, cores)), rows.get((8, cores))
            out.append(
                f"| {s.name} | {v.name} | {v.accuracy:.3f} | "
                f"{f'{b1.latency_p99_s * 1e3:.3g}' if b1 else '-'} | {f'{b1.throughput_rps:.0f}' if b1 else '-'} | "
                f"{f'{b8.throughput_rps:.0f}' if b8 else '-'} | {f'{b1.load_time_s:.1f}' if b1 else '-'} | "
                f"{f'{b1.memory_mb:.0f}' if b1 else '-'} |"
            )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--cores", type=int, default=1)
    a = ap.parse_args()
    print("\n\n".join(table(s, a.cores) for s in a.specs))


if __name__ == "__main__":
    main()
