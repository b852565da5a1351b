"""VLA models: OpenVLA (Prismatic) and an OFT-style chunked head, with in-LLM visual token pruning.

Importing this package does not import torch or transformers: the configuration, the names of the
shipped model and presets, and ``model_inputs`` read files only; the modules that build and run
models (``VLAModel``, ``load_model``, ...) load on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .config import PRESETS, VLAConfig, preset
from .errors import CheckpointError, ConfigError, ModelError, UnnormKeyError
from .pi0_files import is_pi0_dir, pi0_inputs

_LAZY = {"load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "Prediction": "interface",
         "PruneSpec": "interface", "SelectionInput": "interface", "VLAModel": "modeling", "build_model": "modeling",
         "build_tokenizer": "tokenizer", "load_tokenizer": "tokenizer"}


def __getattr__(name: str) -> Any:  # the torch-side names, imported on first use
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

OPENVLA_PRESETS = (*PRESETS, "openvla-7b")
PI0_PRESETS = ("pi0-tiny", "pi0-small", "pi0")  # transformers' PI0 with random weights: tests, CPU benchmarks, the
# published sizes
PRESET_NAMES = (*OPENVLA_PRESETS, *PI0_PRESETS)
EMBEDDED = "embedded"  # the model trained on the simulator and shipped in the package
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "weights" / "sim_tabletop"


def embedded_available() -> bool:
    """Whether the simulator-trained model is installed with the package."""
    return (EMBEDDED_DIR / "config.json").exists()


def resolve_model_path(source: str | Path) -> str | Path:
    """``embedded`` -> the shipped checkpoint directory; anything else unchanged."""
    if str(source) == EMBEDDED:
        if not embedded_available():
            raise CheckpointError(f"the embedded model is missing from {EMBEDDED_DIR}; reinstall the package")
        return EMBEDDED_DIR
    return source


def takes_any_camera_count(source: str | Path) -> bool:
    """pi0 reads as many cameras as it is given (its checkpoint does not fix the count)."""
    return str(source) in PI0_PRESETS or is_pi0_dir(Path(resolve_model_path(source)))


def model_inputs(source: str | Path) -> tuple[int, int]:
    """(cameras, proprio values) a model expects, from its directory's files (presets: 1 and 0)."""
    path = Path(resolve_model_path(source))
    if is_pi0_dir(path):
        return pi0_inputs(path)
    if (path / "config.json").is_file():
        config = VLAConfig.from_dir(path)
        return config.num_cameras, config.proprio_dim
    return 1, 0


def identity_norm_stats(action_dim: int, proprio_dim: int = 0) -> dict:
    """Statistics that leave normalised actions as they are (for random-weight presets); with
    ``proprio_dim``, proprio statistics of [-1, 1] too (OFT's head requires them)."""
    stats = {"action": {"q01": [-1.0] * action_dim, "q99": [1.0] * action_dim, "mask": [True] * action_dim}}
    if proprio_dim:
        stats["proprio"] = {key: [value] * proprio_dim for key, value in
                            (("q01", -1.0), ("q99", 1.0), ("min", -1.0), ("max", 1.0))}
    return {"default": stats}


def build_preset(name: str, *, head: str | None = "tokens", num_cameras: int = 1, proprio_dim: int = 0,
                 seed: int = 0, device="cpu", dtype=None):
    """A preset model with seeded random weights and the built tokenizer: (model, tokenizer). pi0 presets
    take the robot's state size from ``proprio_dim`` (default 8) and ignore ``head``."""
    import torch

    if name in PI0_PRESETS:
        from .pi0 import build_pi0_preset

        _pi0_head(head)
        return build_pi0_preset(name, num_cameras=num_cameras, seed=seed, device=device, dtype=dtype,
                                proprio_dim=proprio_dim or 8)

    from .modeling import build_model
    from .tokenizer import build_tokenizer

    dtype = dtype or torch.float32
    tokenizer = build_tokenizer()
    config = preset(name, head=head, num_cameras=num_cameras, proprio_dim=proprio_dim, vocab_size=len(tokenizer))
    if name != "openvla-7b":
        config = config.replace(action_token_base=len(tokenizer))
    config = config.replace(norm_stats=identity_norm_stats(config.action_dim,
                                                           config.proprio_dim if head == "oft" else 0))
    return build_model(config, seed=seed, device=device, dtype=dtype), tokenizer


def _pi0_head(head: str | None) -> None:
    if head not in (None, "", "pi0"):
        raise ConfigError(f"head={head!r} does not apply to pi0 (its flow-matching expert is its head); "
                          "leave model.head unset")


def load_model(source: str | Path, *, head: str | None = None, device="cpu", dtype=None, seed: int = 0,
               **config_overrides):
    """A checkpoint directory, ``embedded``, or a preset name (random weights): (model, tokenizer).
    ``config_overrides`` (e.g. ``chunk_len``, ``num_cameras``) apply to checkpoint directories only."""
    from .checkpoint import load_checkpoint
    from .tokenizer import load_tokenizer

    source = resolve_model_path(source)
    path = Path(source)
    if path.is_dir() and is_pi0_dir(path):
        from .pi0 import load_pi0

        _pi0_head(head)
        unknown = sorted(set(config_overrides) - {"num_cameras", "chunk_len"})
        if unknown:
            raise ConfigError(f"{unknown} do not apply to a pi0 checkpoint; it takes num_cameras (and chunk_len)")
        return load_pi0(path, device=device, dtype=dtype, **config_overrides), load_tokenizer(path)
    if path.is_dir():
        overrides = {"head": head} if head else {}
        if head == "chunk":
            overrides["chunk_len"] = 8
        model = load_checkpoint(path, device=device, dtype=dtype, **{**overrides, **config_overrides})
        return model, load_tokenizer(path)
    if str(source) in PI0_PRESETS:
        unknown = sorted(set(config_overrides) - {"num_cameras"})
        if unknown:
            raise ConfigError(f"{unknown} do not apply to the preset {str(source)!r}; it takes num_cameras")
        return build_preset(str(source), head=head, seed=seed, device=device, dtype=dtype,
                            num_cameras=config_overrides.get("num_cameras", 1))
    if str(source) in PRESET_NAMES:
        if config_overrides:
            raise ConfigError(f"{sorted(config_overrides)} apply to checkpoint directories, not to the preset "
                              f"{str(source)!r}")
        return build_preset(str(source), head=head or "tokens", seed=seed, device=device, dtype=dtype)
    raise CheckpointError(
        f"model {str(source)!r} is neither a checkpoint directory nor a preset; presets: {list(PRESET_NAMES)}, "
        f"or {EMBEDDED!r}")


__all__ = ["EMBEDDED", "EMBEDDED_DIR", "OPENVLA_PRESETS", "PI0_PRESETS", "PRESET_NAMES", "CheckpointError",
           "ConfigError", "ModelError", "Prediction", "PruneSpec", "SelectionInput", "UnnormKeyError", "VLAConfig",
           "VLAModel", "build_model", "build_preset", "build_tokenizer", "embedded_available", "identity_norm_stats",
           "load_checkpoint", "load_model", "load_tokenizer", "model_inputs", "preset", "resolve_model_path",
           "save_checkpoint", "takes_any_camera_count"]
