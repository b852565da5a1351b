"""Errors of the pruning package."""

from ..errors import SettingsError


class PrunerError(SettingsError):
    """Base class of pruning errors."""


class UnknownPrunerError(PrunerError):
    """A method name that is not in the registry."""


class PrunerConfigError(PrunerError):
    """A method parameter that does not exist or has an invalid value."""
