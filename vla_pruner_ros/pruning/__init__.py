"""Visual token pruning methods, one registry keyed by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .base import CameraInput, Pruner, PrunerConfig, TickContext, budget
from .divprune import DivPrunePruner
from .errors import PrunerConfigError, PrunerError, UnknownPrunerError
from .fastv import FastVPruner
from .hybrid import HybridPruner
from .none import NonePruner
from .random import RandomPruner
from .state import TemporalState
from .vla_iap import VLAIAPPruner
from .vla_pruner import VLAPrunerPruner

PRUNERS: Mapping[str, type[Pruner]] = {
    "none": NonePruner,
    "random": RandomPruner,
    "fastv": FastVPruner,
    "divprune": DivPrunePruner,
    "vla_pruner": VLAPrunerPruner,
    "vla_iap": VLAIAPPruner,
    "hybrid": HybridPruner,
}


def build_pruner(method: str, **params: Any) -> Pruner:
    """A pruner by registry name with its parameters (as from YAML); errors list the valid choices."""
    if method not in PRUNERS:
        raise UnknownPrunerError(f"unknown pruning method {method!r}; valid methods: {sorted(PRUNERS)}")
    cls = PRUNERS[method]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise PrunerConfigError(
            f"method {method!r} has no parameter(s) {unknown}; valid parameters: {sorted(fields)}")
    return cls(cls.config_class(**params))


__all__ = ["PRUNERS", "CameraInput", "Pruner", "PrunerConfig", "PrunerConfigError", "PrunerError", "TemporalState",
           "TickContext", "UnknownPrunerError", "budget", "build_pruner"]
