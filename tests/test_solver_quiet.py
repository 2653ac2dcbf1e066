"""The solver prints nothing: HiGHS's banner and log stay off through its own option (`output_flag`), with no
redirection of the process's stdout, so a command's JSON output is the whole of its stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_plan_json_is_the_whole_of_stdout_and_highs_prints_no_banner():
    spec = SRC / "pipetune" / "examples" / "synthetic" / "pipeline.yaml"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-m", "pipetune", "plan", str(spec), "--rps", "30", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    assert "HiGHS" not in out.stdout + out.stderr
    assert json.loads(out.stdout)["policy"] == "ipa"


def test_no_library_module_redirects_the_process_stdout():
    # cli/ is the application, not the library: a command may decide where its own process's output goes
    hits = [
        f"{p.relative_to(SRC)}: {needle}"
        for p in sorted((SRC / "pipetune").rglob("*.py"))
        if "cli" not in p.relative_to(SRC).parts
        for needle in ("os.dup2(", "redirect_stdout(", "sys.stdout = ")
        if needle in p.read_text(encoding="utf-8")
    ]
    assert hits == []
