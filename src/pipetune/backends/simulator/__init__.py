"""Discrete-event simulator backend (see engine.py for the model, docs/simulator.md for the rationale)."""

from pipetune.backends.simulator.engine import SimResult, SimSettings, Simulator, SimulatorError

SimulatorBackend = Simulator

__all__ = ["SimResult", "SimSettings", "Simulator", "SimulatorBackend", "SimulatorError"]
