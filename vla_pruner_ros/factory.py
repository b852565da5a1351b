"""Models, pruners and policies built from the node's settings (``settings.py`` is the schema)."""

from __future__ import annotations

import dataclasses

from .policy import PolicyConfig, VLAPolicy
from .pruning import Pruner, build_pruner
from .settings import NodeSettings, pruning_config


def load_settings_model(settings: NodeSettings):
    """(model, tokenizer) of ``model.*`` (local files or a preset; no download)."""
    import torch

    from .model import OPENVLA_PRESETS, load_model, takes_any_camera_count

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[settings.model.dtype]
    head = settings.model.head or ("chunk" if settings.model.path in OPENVLA_PRESETS else None)
    overrides = {key: getattr(settings.model, key) for key in ("chunk_len", "num_cameras")
                 if getattr(settings.model, key) is not None}
    if "num_cameras" not in overrides and takes_any_camera_count(settings.model.path):
        overrides["num_cameras"] = 2 if settings.camera.wrist else 1  # pi0: the cameras this node feeds
    return load_model(settings.model.path, head=head, device=settings.model.device, dtype=dtype, **overrides)


def build_settings_pruner(settings: NodeSettings, model_layer: int | None = None) -> Pruner:
    """The configured pruner (see ``settings.pruning_config`` for ``model_layer``)."""
    config = pruning_config(settings, model_layer)
    return build_pruner(settings.pruning.method, **dataclasses.asdict(config))


def policy_config(settings: NodeSettings) -> PolicyConfig:
    return PolicyConfig(unnorm_key=settings.model.unnorm_key, action_names=tuple(settings.action_names),
                        dt=settings.control.dt, warmup_ticks=settings.pruning.warmup_ticks)


def build_policy(settings: NodeSettings, model=None, tokenizer=None) -> VLAPolicy:
    """The configured pruner around the model (loaded from ``model.*`` unless given)."""
    if model is None:
        model, tokenizer = load_settings_model(settings)
    pruner = build_settings_pruner(settings, model.config.prune_layer)
    return VLAPolicy(model, tokenizer, pruner, policy_config(settings))
