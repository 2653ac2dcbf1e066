"""Strict JSON: non-finite numbers come out as null, and real writers produce what a strict parser accepts."""

from __future__ import annotations

import io
import json
import math

import numpy as np
from typer.testing import CliRunner

from pipetune import example_path, jsonio


def _strict(s: str):
    def reject(tok):
        raise ValueError(f"non-strict JSON token {tok}")

    return json.loads(s, parse_constant=reject)


def test_non_finite_is_null():
    obj = {"a": math.inf, "b": [float("nan"), -math.inf, 1.5], "c": (np.float64("inf"), np.int64(3)), "d": "x"}
    assert _strict(jsonio.dumps(obj)) == {"a": None, "b": [None, None, 1.5], "c": [None, 3], "d": "x"}
    fp = io.StringIO()
    jsonio.dump(obj, fp, indent=1, allow_nan=True)
    assert _strict(fp.getvalue())["a"] is None


def test_plan_json_is_strict():
    from pipetune.cli.main import app

    r = CliRunner().invoke(app, ["plan", example_path("synthetic"), "--rps", "1e6", "--json"])
    assert r.exit_code == 1, r.output  # 1e6 rps is infeasible: the JSON is printed, the exit code says no plan
    assert isinstance(_strict(r.stdout), dict)
