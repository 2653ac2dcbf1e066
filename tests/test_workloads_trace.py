"""Trace I/O: formats, validation with line numbers, slicing, damping, concatenation, rescaling."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipetune.errors import PipetuneError
from pipetune.workloads import concat, damp, load_trace, parse_range, rescale, save_trace, slice_trace


def test_reads_lines_whitespace_and_comments(tmp_path: Path):
    f = tmp_path / "t.txt"
    f.write_text("# a comment\n3\n4 5\t6\n\n7  # trailing\n")
    np.testing.assert_array_equal(load_trace(f), [3, 4, 5, 6, 7])
    assert load_trace(f).dtype == np.float64


def test_reads_gzip_and_csv_column(tmp_path: Path):
    g = tmp_path / "t.txt.gz"
    with gzip.open(g, "wt") as fh:
        fh.write("1\n2\n3\n")
    np.testing.assert_array_equal(load_trace(g), [1, 2, 3])
    c = tmp_path / "t.csv"
    c.write_text("time,requests\n0,10\n1,12\n")
    np.testing.assert_array_equal(load_trace(c), [0, 1])  # first numeric column by default
    np.testing.assert_array_equal(load_trace(c, column="requests"), [10, 12])
    with pytest.raises(PipetuneError, match="no column 'rps'"):
        load_trace(c, column="rps")


@pytest.mark.parametrize(
    "text, line, what",
    [("1\n2\n-3\n", 3, "negative"), ("1\nabc\n", 2, "not a number"), ("4\n5 6\n7 nan\n", 3, "not finite")],
)
def test_bad_values_name_their_line(tmp_path: Path, text, line, what):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(PipetuneError, match=rf"bad.txt:{line}: .*{what}"):
        load_trace(f)


def test_bad_csv_value_names_its_line(tmp_path: Path):
    f = tmp_path / "bad.csv"
    f.write_text("rps\n1\n2\nx\n")
    with pytest.raises(PipetuneError, match=r"bad.csv:4: 'x' is not a number"):
        load_trace(f)


def test_empty_and_missing(tmp_path: Path):
    f = tmp_path / "empty.txt"
    f.write_text("# only a comment\n\n")
    with pytest.raises(PipetuneError, match="empty"):
        load_trace(f)
    with pytest.raises(PipetuneError, match="does not exist"):
        load_trace(tmp_path / "nope.txt")


def test_slice_damp_concat_rescale():
    x = np.arange(10, dtype=float)
    np.testing.assert_array_equal(slice_trace(x, 2, 5), [2, 3, 4])
    np.testing.assert_array_equal(slice_trace(x, 2, duration=2), [2, 3])
    with pytest.raises(PipetuneError, match="outside"):
        slice_trace(x, 5, 20)
    np.testing.assert_allclose(damp(x, 8), x / 8)
    with pytest.raises(PipetuneError, match="damping"):
        damp(x, 0)
    np.testing.assert_array_equal(concat([x[:2], x[:2]]), [0, 1, 0, 1])
    assert rescale(x, 90).max() == pytest.approx(90)
    assert parse_range("100:160") == (100, 160) and parse_range("100+60") == (100, 160)
    with pytest.raises(PipetuneError, match="START:STOP"):
        parse_range("abc")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=200), st.booleans())
def test_save_load_round_trip(tmp_path_factory, values, gz):
    path = tmp_path_factory.mktemp("rt") / ("t.txt.gz" if gz else "t.txt")
    save_trace(np.array(values, dtype=float), path)
    np.testing.assert_array_equal(load_trace(path), values)
