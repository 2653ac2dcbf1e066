"""User errors through the real entry point: one `error:` line on stderr, exit 2, no traceback; bugs keep theirs."""

from __future__ import annotations

import sys

import pytest

from pipetune import example_path


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from pipetune.cli.main import run as cli_run

    monkeypatch.setattr(sys, "argv", ["pipetune", *args])
    with pytest.raises(SystemExit) as e:
        cli_run()
    return e.value.code, capsys.readouterr().err


def test_missing_pipeline_file(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, "plan", str(tmp_path / "nope.yaml"), "--rps", "10")
    assert code == 2 and "Traceback" not in err and "error:" in err


def test_non_utf8_yaml(monkeypatch, capsys, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"name: \xff\xfe\x00bad\n")
    code, err = _run(monkeypatch, capsys, "plan", str(p), "--rps", "10")
    assert code == 2 and "Traceback" not in err and "error:" in err


def test_invalid_pipeline_yaml(monkeypatch, capsys, tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("name: x\nstages: 3\n")
    code, err = _run(monkeypatch, capsys, "plan", str(p), "--rps", "10")
    assert code == 2 and "Traceback" not in err and "error:" in err
    assert len(err.strip().splitlines()) <= 3


def test_typer_usage_error_still_exits_2(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, "plan", example_path("synthetic"), "--rps", "abc")
    assert code == 2 and "Traceback" not in err


def test_messages_for_each_user_error_kind():
    import json

    from pydantic import BaseModel

    from pipetune.cli.main import user_error_message
    from pipetune.errors import PipetuneError

    class M(BaseModel):
        x: int

    try:
        M(x="abc")
    except ValueError as e:
        assert "x" in user_error_message(e)
    try:
        json.loads("{bad")
    except ValueError as e:
        assert user_error_message(e).startswith("corrupt JSON")
    try:
        b"\xff".decode()
    except ValueError as e:
        assert "UTF-8" in user_error_message(e)
    assert user_error_message(IsADirectoryError(21, "Is a directory", "/tmp")) == "Is a directory: /tmp"
    assert user_error_message(PipetuneError("bad rps")) == "bad rps"
    assert user_error_message(KeyError("bug")) is None and user_error_message(TypeError("bug")) is None


def test_bug_keeps_its_traceback(monkeypatch):
    import pipetune.cli.main as m

    def boom():
        raise TypeError("a genuine bug")

    monkeypatch.setattr(m, "app", boom)
    with pytest.raises(TypeError):
        m.run()


def test_traceback_env_reraises(monkeypatch):
    import pipetune.cli.main as m
    from pipetune.errors import PipetuneError

    def boom():
        raise PipetuneError("user error")

    monkeypatch.setattr(m, "app", boom)
    monkeypatch.setenv("PIPETUNE_TRACEBACK", "1")
    with pytest.raises(PipetuneError):
        m.run()
