"""The one base class for user errors: bad input that deserves a clear message, never a traceback."""


class PipetuneError(ValueError):
    """Bad input (a config, a profile, a trace, a request). The message names the field and the fix."""


class SpecError(PipetuneError):
    """A pipeline spec is invalid, or no configuration it allows can meet its SLA. The message names the field
    and the fix. Here, below both spec.py and profiles.py, so that either may raise it."""


class SolverError(PipetuneError):
    """The solver stopped without an answer: a time, iteration or memory limit, or an error inside HiGHS.

    Never a proof that no plan exists (that is `Infeasible`). The message names the HiGHS status, the phase of
    the solve it stopped in and the fix (e.g. a larger time limit). `status` and `phase` say the same for code."""

    def __init__(self, message: str, *, status: str = "", phase: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.phase = phase
