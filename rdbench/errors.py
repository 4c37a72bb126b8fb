"""The one exception type that rdbench raises for bad input or missing resources.

It subclasses ``ValueError`` so that callers of the pure functions can catch the usual
type; the CLI turns it into a one-line message and a non-zero exit code, never a traceback.
"""


class RdbenchError(ValueError):
    """Bad input, a missing file or an unusable resource; the message says what to do."""
