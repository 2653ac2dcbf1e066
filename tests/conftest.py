"""Shared test fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
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


@pytest.fixture
def pipetune_cli(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """`pipetune ARGS` as the console entry point runs it, in this process: (exit code, stdout, stderr). A user
    error ends in SystemExit(2) there, read here as the code."""
    from pipetune.cli.main import run as cli_run

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["pipetune", *args])
        try:
            cli_run()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _every_request_answered(out: list, min_served: float = 0.5) -> int:
    """Every request of a live test's load (`loadgen.client.Outcome`s) has its answer: served (200) or refused at
    admission (503 "at capacity": the pipeline is behind, as on a 2-core machine that a whole test suite shares;
    the refusal keeps the admitted requests within the SLA). None lost (no answer), none failed, none dropped at
    its deadline (504; during a switch that is a defect). At least `min_served` of them served, so that refusing
    everything cannot pass. Returns how many were served."""
    lost = [o.planned for o in out if o.status == 0]
    wrong = [(o.planned, o.status, o.error) for o in out if o.status not in (0, 200, 503)]
    refused = [o.error for o in out if o.status == 503]
    assert out and lost == [] and wrong == [], (len(lost), lost[:3], wrong[:3])
    assert all("at capacity" in e for e in refused), refused[:3]  # admission's refusal, not a pipeline not ready
    served = len(out) - len(refused)
    assert served >= min_served * len(out), (served, len(out), refused[:3])
    return served


@pytest.fixture(scope="session")
def every_request_answered() -> Callable[..., int]:
    """The live tests' check of the requests they sent under load (`_every_request_answered`)."""
    return _every_request_answered


@pytest.fixture(scope="session")
def ray_cluster():
    """One real two-node Ray cluster (two raylets on this machine, 4 CPUs each) for every test of the session
    that needs Ray, started on first use. Ray's files go to a private temp dir (RAY_TMPDIR), never under the
    home folder's defaults."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    os.makedirs(os.path.join(tmp, "ray"))  # Ray writes its address file there before it makes the folder
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4})
    cluster.add_node(num_cpus=4)
    ray.init(address=cluster.address, namespace="pipetune-test", log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if old is None:
        os.environ.pop("RAY_TMPDIR", None)
    else:
        os.environ["RAY_TMPDIR"] = old
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Each test starts with the SIGINT/SIGTERM handlers the session started with and leaves them so: a test that
    runs a command in-process (which handles signals while it serves) must not change how Ctrl-C reaches the next
    test, nor what a child process inherits (an ignored signal stays ignored across exec)."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, h in before.items():
        if signal.getsignal(sig) is not h and h is not None:
            signal.signal(sig, h)
