"""Pruning configuration from YAML: ``method`` names one entry of ``methods``, whose mapping holds
that method's parameters (see config/pruning.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..yaml_file import load_yaml
from . import build_pruner
from .base import Pruner
from .errors import PrunerConfigError, PrunerError


def pruner_from_mapping(data: Any, source: str = "pruning config", method: str | None = None,
                        overrides: dict[str, Any] | None = None) -> Pruner:
    """Build the pruner a mapping describes; ``method`` and ``overrides`` take precedence over it."""
    if not isinstance(data, dict):
        raise PrunerConfigError(f"{source}: expected a mapping with 'method' and 'methods', got {type(data).__name__}")
    name = method or data.get("method")
    if not name:
        raise PrunerConfigError(f"{source}: no 'method' given")
    methods = data.get("methods") or {}
    if not isinstance(methods, dict):
        raise PrunerConfigError(f"{source}: 'methods' must be a mapping of method name to parameters")
    params = methods.get(name) or {}
    if not isinstance(params, dict):
        raise PrunerConfigError(f"{source}: methods.{name} must be a mapping of parameters")
    try:
        return build_pruner(name, **{**params, **(overrides or {})})
    except PrunerError as err:
        raise type(err)(f"{source}: {err}") from None


def load_pruner(path: str | Path, method: str | None = None, overrides: dict[str, Any] | None = None) -> Pruner:
    data = load_yaml(path, "pruning config", PrunerConfigError)
    return pruner_from_mapping(data, str(path), method, overrides)
