"""The one base class for user errors: bad input that deserves a clear message, never a traceback."""


class PipetuneError(ValueError):
    """Bad input (a config, a profile, a trace, a request). The message names the field and the fix."""
