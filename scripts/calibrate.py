"""Regenerate the SLA calibration table (docs/calibration.md's table): one command.

    PYTHONPATH=src python scripts/calibrate.py [--seconds 600] [--seeds 3] [--jobs 2] [--out docs/calibration-table.md]

Rows: every bundled pipeline x 1/5/30/70% of its largest plannable load x fixed/poisson/trace arrivals
(see pipetune.experiments.sla_calibration). Writes the markdown table and a strict JSON of the rows next to it.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from rich.progress import Progress

from pipetune import jsonio
from pipetune.errors import PipetuneError
from pipetune.experiments.sla_calibration import BUNDLED, CalibrationSetup, calibrate_pipeline, markdown_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=CalibrationSetup.seconds)
    ap.add_argument("--seeds", type=int, default=CalibrationSetup.seeds)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--pipelines", nargs="*", default=list(BUNDLED))
    ap.add_argument("--out", type=Path, default=Path("docs/calibration-table.md"))
    a = ap.parse_args()
    problems = [f"--jobs {a.jobs}: give 1 to 64 worker processes"] if not 1 <= a.jobs <= 64 else []
    if not a.seconds <= 86_400 or not a.seeds <= 100:
        problems.append(f"--seconds {a.seconds} / --seeds {a.seeds}: at most 86400 simulated seconds and 100 seeds")
    unknown = [p for p in a.pipelines if p not in BUNDLED]
    if unknown:
        problems.append(f"--pipelines: {unknown} not bundled; choose from {list(BUNDLED)}")
    try:
        setup = CalibrationSetup(seconds=a.seconds, seeds=a.seeds)
    except PipetuneError as e:
        problems.append(str(e).replace("seconds=", "--seconds ").replace("seeds=", "--seeds "))
    if problems:
        ap.exit(2, "calibrate.py: error: " + "; ".join(problems) + "\n")
    rows: dict[str, list[dict]] = {}
    with Progress() as prog, ProcessPoolExecutor(max_workers=a.jobs) as pool:
        task = prog.add_task("calibrating pipelines", total=len(a.pipelines))
        futs = {pool.submit(calibrate_pipeline, name, setup): name for name in a.pipelines}
        for f in as_completed(futs):
            rows[futs[f]] = f.result()
            prog.update(task, advance=1, description=f"done {futs[f]}")
    ordered = [r for name in a.pipelines for r in rows[name]]
    table = markdown_table(ordered)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(table)
    a.out.with_suffix(".json").write_text(jsonio.dumps(ordered, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
