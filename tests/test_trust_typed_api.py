"""The typed public API: Plan, Infeasible, StageConfig from the top-level package, and a py.typed marker."""

from __future__ import annotations

from pathlib import Path


def test_public_types_import():
    import pipetune
    from pipetune import Infeasible, Plan, StageConfig

    assert {"Plan", "Infeasible", "StageConfig"} <= set(pipetune.__all__)
    result = pipetune.plan(pipetune.example_path("synthetic"), rps=30)
    assert isinstance(result, (Plan, Infeasible))
    assert all(isinstance(c, StageConfig) for c in (result if result.feasible else result.fallback).configs.values())


def test_py_typed_ships():
    import pipetune

    assert (Path(pipetune.__file__).parent / "py.typed").is_file()
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"py.typed"' in text
