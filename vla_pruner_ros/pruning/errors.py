"""Errors of the pruning package."""


class PrunerError(ValueError):
    """Base class of pruning errors."""


class UnknownPrunerError(PrunerError):
    """A method name that is not in the registry."""


class PrunerConfigError(PrunerError):
    """A method parameter that does not exist or has an invalid value."""
