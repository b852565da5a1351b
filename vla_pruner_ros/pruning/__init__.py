"""Visual token pruning methods, one registry keyed by name.

Importing this package does not import torch: method parameters (``METHOD_CONFIGS``,
``method_config``) are plain dataclasses, so settings, parameter files and launch files can be
read without the model stack. The algorithms (``PRUNERS``, ``build_pruner``, ``Pruner``) load on
first use.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from .config import METHOD_CONFIGS, PrunerConfig, prunes_inside_llm
from .errors import PrunerConfigError, PrunerError, UnknownPrunerError
from .state import TemporalState

METHODS: tuple[str, ...] = tuple(METHOD_CONFIGS)


def method_config(method: str, **params: Any) -> PrunerConfig:
    """A method's validated parameters (as from YAML); errors list the valid choices. No torch."""
    if method not in METHOD_CONFIGS:
        raise UnknownPrunerError(f"unknown pruning method {method!r}; valid methods: {sorted(METHOD_CONFIGS)}")
    cls = METHOD_CONFIGS[method]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise PrunerConfigError(
            f"method {method!r} has no parameter(s) {unknown}; valid parameters: {sorted(fields)}")
    return cls(**params)


@functools.cache
def _pruners() -> Mapping[str, type]:
    from .divprune import DivPrunePruner
    from .fastv import FastVPruner
    from .hybrid import HybridPruner
    from .none import NonePruner
    from .random import RandomPruner
    from .vla_iap import VLAIAPPruner
    from .vla_pruner import VLAPruner

    registry = {cls.name: cls for cls in (NonePruner, RandomPruner, FastVPruner, DivPrunePruner, VLAPruner,
                                          VLAIAPPruner, HybridPruner)}
    assert list(registry) == list(METHOD_CONFIGS), "every method has a config and an algorithm"
    return registry


def build_pruner(method: str, **params: Any):
    """A pruner by registry name with its parameters (as from YAML); errors list the valid choices."""
    config = method_config(method, **params)
    return _pruners()[method](config)


def __getattr__(name: str) -> Any:  # the torch-side names, imported on first use
    if name == "PRUNERS":
        return _pruners()
    if name in ("CameraInput", "Pruner", "TickContext", "budget"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "METHOD_CONFIGS", "PRUNERS", "CameraInput", "Pruner", "PrunerConfig", "PrunerConfigError",
           "PrunerError", "TemporalState", "TickContext", "UnknownPrunerError", "budget", "build_pruner",
           "method_config", "prunes_inside_llm"]
