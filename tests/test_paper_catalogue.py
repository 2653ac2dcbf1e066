"""The paper variants' catalogue is data (models/paper_variants.yaml) that models/paper.py reads: it ships as
package data, and a broken catalogue is refused naming the field."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
import yaml

from pipetune.models.paper import CATALOGUE, PAPER_VARIANTS, PaperModelError, default_shape, read_catalogue

ROOT = Path(__file__).resolve().parents[1]


def test_the_catalogue_is_shipped_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pipetune"]
    rel = CATALOGUE.relative_to(ROOT / "src" / "pipetune").as_posix()
    assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not matched by package-data {globs}"


def test_every_variant_comes_from_the_file():
    data = yaml.safe_load(CATALOGUE.read_text())
    assert list(PAPER_VARIANTS) == list(data["variants"])
    assert PAPER_VARIANTS["resnet50"].config == {"depth": 50}
    assert default_shape("distilbart-xsum-12-6").new_tokens == data["input_shapes"]["bart"]["new_tokens"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("s2t_sizes"), r"section\(s\) \['s2t_sizes'\] missing"),
        (lambda d: d["variants"]["resnet18"].update(family="resnt"), r"variants.resnet18.family 'resnt'"),
        (lambda d: d["variants"]["resnet18"].pop("checkpoint"), r"variants.resnet18: give \['checkpoint'\]"),
    ],
)
def test_a_broken_catalogue_is_refused_naming_the_field(tmp_path, edit, message):
    data = yaml.safe_load(CATALOGUE.read_text())
    edit(data)
    bad = tmp_path / "cat.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(PaperModelError, match=message):
        read_catalogue(bad)
