"""Errors raised by the model package. Messages name the offending value and what was expected."""


class ModelError(Exception):
    """Base class of every model-package error."""


class ConfigError(ModelError, ValueError):
    """A model configuration (config.json or a preset) is invalid or unsupported."""


class CheckpointError(ModelError):
    """A checkpoint directory cannot be loaded or saved as asked."""


class UnnormKeyError(ModelError, KeyError):
    """`unnorm_key` is missing from the checkpoint's norm_stats, or is needed but not given."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])
