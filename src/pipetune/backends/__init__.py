"""Backends run a pipeline for the adapter: `Backend` is the interface, `SimulatorBackend` the discrete-event
twin of the live runtime (see docs/simulator.md)."""

from pipetune.backends.base import Backend, Observation

__all__ = ["Backend", "Observation", "SimulatorBackend", "SimSettings"]


def __getattr__(name: str):  # the simulator imports numpy-heavy code; load it on first use
    if name in ("SimulatorBackend", "SimSettings"):
        from pipetune.backends import simulator

        return getattr(simulator, name)
    raise AttributeError(name)
