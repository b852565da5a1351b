"""VLA models: OpenVLA (Prismatic) and an OFT-style chunked head, with in-LLM visual token pruning."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import PRESETS, VLAConfig, preset
from .errors import CheckpointError, ConfigError, ModelError, UnnormKeyError
from .modeling import Prediction, PruneSpec, SelectionInput, VLAModel, build_model
from .tokenizer import build_tokenizer, load_tokenizer

PRESET_NAMES = (*PRESETS, "openvla-7b")
EMBEDDED = "embedded"  # the model trained on the simulator and shipped in the package
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "models" / "sim_tabletop"


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


def model_cameras(source: str | Path) -> int:
    """How many cameras a model expects, from its config.json alone (presets: one)."""
    import json

    path = Path(resolve_model_path(source))
    if (path / "config.json").is_file():
        return VLAConfig.from_json_dict(json.loads((path / "config.json").read_text())).num_cameras
    return 1


def identity_norm_stats(action_dim: int) -> dict:
    """Statistics that leave normalised actions as they are (for random-weight presets)."""
    return {"default": {"action": {"q01": [-1.0] * action_dim, "q99": [1.0] * action_dim,
                                   "mask": [True] * action_dim}}}


def build_preset(name: str, *, head: str = "tokens", num_cameras: int = 1, proprio_dim: int = 0,
                 seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A preset model with seeded random weights and the built tokenizer: (model, tokenizer)."""
    tokenizer = build_tokenizer()
    config = preset(name, head=head, num_cameras=num_cameras, proprio_dim=proprio_dim, vocab_size=len(tokenizer))
    if name != "openvla-7b":
        config = config.replace(action_token_base=len(tokenizer))
    config = config.replace(norm_stats=identity_norm_stats(config.action_dim))
    return build_model(config, seed=seed, device=device, dtype=dtype), tokenizer


def load_model(source: str | Path, *, head: str | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, seed: int = 0):
    """A checkpoint directory, ``embedded``, or a preset name (random weights): (model, tokenizer)."""
    source = resolve_model_path(source)
    path = Path(source)
    if path.is_dir():
        overrides = {"head": head} if head else {}
        if head == "chunk":
            overrides["chunk_len"] = 8
        model = load_checkpoint(path, device=device, dtype=dtype, **overrides)
        return model, load_tokenizer(path)
    if str(source) in PRESET_NAMES:
        return build_preset(str(source), head=head or "tokens", seed=seed, device=device,
                            dtype=dtype or torch.float32)
    raise CheckpointError(
        f"model {str(source)!r} is neither a checkpoint directory nor a preset; presets: {list(PRESET_NAMES)}, "
        f"or {EMBEDDED!r}")


__all__ = ["EMBEDDED", "EMBEDDED_DIR", "PRESET_NAMES", "CheckpointError", "ConfigError", "ModelError", "Prediction",
           "PruneSpec",
           "SelectionInput", "UnnormKeyError", "VLAConfig", "VLAModel", "build_model", "build_preset",
           "build_tokenizer", "identity_norm_stats", "load_checkpoint", "load_model", "load_tokenizer", "model_cameras",
           "preset", "embedded_available", "resolve_model_path", "save_checkpoint"]
