"""Errors raised by the model package. Messages name the offending value and what was expected."""

from ..errors import SettingsError, VLAPrunerError


class ModelError(VLAPrunerError):
    """Base class of every model-package error."""


class ConfigError(ModelError, SettingsError):
    """A model configuration (config.json or a preset) is invalid or unsupported."""


class CheckpointError(ModelError):
    """A checkpoint directory cannot be loaded or saved as asked."""


class UnnormKeyError(ModelError, SettingsError):
    """`unnorm_key` is missing from the checkpoint's norm_stats, or is needed but not given."""
