"""`pipetune serve` stopped with SIGTERM (what Kubernetes and systemd send): it drains, shuts Ray Serve and Ray
down, prints one line, exits 0 and leaves no process of its Ray session behind (the slow test starts a real local
Ray; the other checks the signal handling alone)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipetune import example_path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (a Ray session's temp dir is in each of its daemons')."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd[:200]}")
    return found


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/digits/ready", timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_a_stop_signal_unwinds_once_and_never_cuts_the_shutdown_short():
    """No Ray: the first SIGTERM raises (like Ctrl-C) and is named; later ones and any during closing are ignored;
    the previous handlers come back."""
    from pipetune.cli.serve import _Stop, _stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with _stop_on_signals() as stopped:
        stopped["deploying"] = "yes"  # what the command records on the way must not mute the handler
        with pytest.raises(_Stop):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
        assert stopped["signal"] == "SIGTERM" and isinstance(_Stop(), KeyboardInterrupt)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal: ignored
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
    with _stop_on_signals() as stopped:
        stopped["closing"] = "yes"
        os.kill(os.getpid(), signal.SIGTERM)  # during the shutdown: ignored
        assert "signal" not in stopped


@pytest.mark.slow
def test_sigterm_drains_and_leaves_no_process_behind():
    ray_tmp = tempfile.mkdtemp(prefix="pt-stop-")
    port = _free_port()
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(ROOT / "src")}
    env.pop("RAY_ADDRESS", None)  # its own local Ray, whatever cluster this test session runs
    cmd = [sys.executable, "-m", "pipetune", "serve", str(example_path("digits")), "--no-adapt",
           "--port", str(port), "--num-cpus", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _ready(port):
            assert proc.poll() is None, f"serve exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "serve did not become ready within 300 s"
            time.sleep(1.0)
        assert _processes_mentioning(ray_tmp), "the Ray session's processes should be visible while serving"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, (out, err)
    assert out.count("stopping (SIGTERM)") == 1, out
    assert "Traceback" not in err and "*** SIGTERM" not in err and "PC: @" not in err, err  # no native stack dump
    time.sleep(2.0)  # daemons that exit on their parent's death get a moment to go
    left = _processes_mentioning(ray_tmp)
    assert not left, "processes of the stopped Ray session remain:\n" + "\n".join(left)
