"""Starting or joining the Ray that `pipetune serve` serves on (one pipeline: cli/serve.py; several side by
side: cli/serve_fleet.py), the same way for both."""

from __future__ import annotations

import os

from rich.console import Console


def start_or_connect_ray(address: str | None, num_cpus: int | None, what: str, con: Console) -> None:
    """Join the Ray cluster at `address`, or (None) start a local Ray with `num_cpus` logical CPUs unless this
    process has one already. Ray's files go under $TMPDIR/pipetune-ray unless RAY_TMPDIR says otherwise. `what`
    names what is being served, for the line printed first (a start takes a while)."""
    os.environ.setdefault("RAY_TMPDIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "pipetune-ray"))
    con.print(f"[bold]starting Ray Serve[/] for {what} ({'cluster ' + address if address else 'local Ray'}) ...")
    import ray

    if address is not None:
        ray.init(address=address, namespace="pipetune", log_to_driver=False)
    elif not ray.is_initialized():
        ray.init(num_cpus=num_cpus, namespace="pipetune", log_to_driver=False, include_dashboard=False)
