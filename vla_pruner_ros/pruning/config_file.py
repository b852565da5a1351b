"""Pruning settings from a ROS 2 parameter file (config/pruning.yaml, or a robot file): the node's own
``pruning.*`` parameters, read by rcl's rules, so a file means the same to the node, replay and demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Pruner


def load_pruner(path: str | Path, method: str | None = None, overrides: dict[str, Any] | None = None,
                model_layer: int | None = None) -> Pruner:
    """The pruner a parameter file's ``pruning.*`` parameters describe (other parameters are ignored).
    ``method`` replaces ``pruning.method``; ``overrides`` set ``keep_ratio``, ``layer`` or the method's
    own parameters; ``model_layer`` is the model's recommended K, as for the node."""
    from ..factory import build_settings_pruner
    from ..settings import load_param_file, settings_from_flat

    values = {k: v for k, v in load_param_file(path).items() if k.startswith("pruning.")}
    if method:
        values["pruning.method"] = method
    chosen = values.get("pruning.method", "none")
    for key, value in (overrides or {}).items():
        values[f"pruning.{key}" if key in ("keep_ratio", "layer") else f"pruning.{chosen}.{key}"] = value
    return build_settings_pruner(settings_from_flat(values), model_layer)
