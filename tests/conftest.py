"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "src" / "pipetune" / "examples"


@pytest.fixture(scope="session")
def synthetic_path() -> Path:
    return EXAMPLES / "synthetic" / "pipeline.yaml"


@pytest.fixture(scope="session")
def synthetic(synthetic_path):
    from pipetune.spec import load_pipeline

    return load_pipeline(synthetic_path)
