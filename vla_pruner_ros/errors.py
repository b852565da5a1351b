"""The package's own errors: one root, ``VLAPrunerError``, and what each branch means.

Every error raised on purpose (a bad file, parameter, argument, message or observation; a model
output that must not be executed) derives from ``VLAPrunerError`` and carries a message that names
the value and what was expected, so commands and the node can print it as one line. Anything else
that escapes (a bug) is not one of these and keeps its traceback wherever it is reported.
"""

from __future__ import annotations


class VLAPrunerError(Exception):
    """Root of the package's errors; the message names the value and what was expected."""


class SettingsError(VLAPrunerError):
    """A parameter, parameter file, command-line argument or configuration value is wrong."""


class InputError(VLAPrunerError):
    """Run-time input is unusable: an observation, a ROS message, a pose, an instruction."""


class NonFiniteActionError(VLAPrunerError):
    """The model produced NaN or inf; nothing may be executed from this tick."""


class UnsafeActionError(VLAPrunerError):
    """An action cannot be made safe (e.g. a non-finite target); nothing is commanded."""
