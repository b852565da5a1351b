"""OpenVLA-OFT checkpoint directories as they are published.

A published OFT directory holds the fine-tuned VLM exactly as OpenVLA's (``config.json``, safetensors
shards), plus side files: ``action_head--{step}_checkpoint.pt`` and ``proprio_projector--{step}_checkpoint.pt``
(``torch.save``d state dicts whose names carry DDP's ``module.`` prefix) and ``dataset_statistics.json`` (the
fine-tuning datasets' action and proprio statistics, which replace the config's norm_stats). The side files
are read with ``torch.load(weights_only=True)`` only.

What the files do not say is taken from OFT's platform constants (its ``prismatic/vla/constants.py``: chunk
length, action and proprio sizes, normalisation), chosen by the dataset the statistics name, as OFT chooses by
its command line; sizes the tensors do say (action and proprio dimensions, head width and depth) come from the
tensors and must agree with the platform's.

Reference read (not copied): moojink/openvla-oft ``experiments/robot/openvla_utils.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError

STATISTICS_FILE = "dataset_statistics.json"
# OFT's policies are trained with random-crop augmentation and evaluated on the central 90% of the image's
# area (its evaluation scripts require center_crop=True: "model was trained with image augmentations")
CENTER_CROP = 0.9
SIDE_FILES = ("action_head", "proprio_projector")  # file stems, and the model's modules they fill
_UNSUPPORTED = {"vision_backbone": "a FiLM-conditioned vision backbone (OFT+)",
                "noisy_action_projector": "a diffusion action head"}


@dataclass(frozen=True)
class Platform:
    name: str
    chunk_len: int
    action_dim: int
    proprio_dim: int
    norm_type: str
    cameras: int  # images the published policies take: third-person first, then wrist(s)


PLATFORMS = {
    "libero": Platform("LIBERO", 8, 7, 8, "bounds_q99", 2),
    "aloha": Platform("ALOHA", 25, 14, 14, "bounds", 3),
    "bridge": Platform("Bridge", 5, 7, 7, "bounds_q99", 1),
}


def side_file(checkpoint_dir: Path, stem: str) -> Path | None:
    """The one ``{stem}--{step}_checkpoint.pt`` of a directory, or None."""
    found = sorted(p for p in checkpoint_dir.glob(f"{stem}--*_checkpoint.pt") if p.is_file())
    if len(found) > 1:
        raise CheckpointError(f"{checkpoint_dir} holds {len(found)} {stem} checkpoints "
                              f"({', '.join(p.name for p in found)}); keep the one to load")
    return found[0] if found else None


def is_oft_dir(checkpoint_dir: Path) -> bool:
    return side_file(checkpoint_dir, "action_head") is not None


def read_side_tensors(checkpoint_dir: Path) -> dict[str, Any]:
    """The side files' tensors under the model's names (``action_head.*``, ``proprio_projector.*``)."""
    import pickle

    import torch

    for stem, what in _UNSUPPORTED.items():
        if side_file(checkpoint_dir, stem) is not None:
            raise CheckpointError(f"{checkpoint_dir} holds {stem}--*_checkpoint.pt, {what}; only OFT's L1 "
                                  "regression head with the plain vision backbone is supported")
    tensors: dict[str, Any] = {}
    for stem in SIDE_FILES:
        path = side_file(checkpoint_dir, stem)
        if path is None:
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"cannot read {path} as a state dict of tensors (weights_only): {first}") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} does not hold a state dict of tensors")
        for name, value in state.items():
            tensors[f"{stem}.{name.removeprefix('module.')}"] = value
    return tensors


def read_statistics(checkpoint_dir: Path) -> dict[str, Any] | None:
    path = checkpoint_dir / STATISTICS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict) and "action" in v for v in data.values()):
        raise ConfigError(f"{path} must map dataset names to statistics with an 'action' entry")
    return data


def platform_of(keys: list[str]) -> Platform | None:
    """The one platform every dataset key names (by OFT's words: libero, aloha, bridge), or None."""
    found = {name for k in keys for name in PLATFORMS if name in k.lower()}
    return PLATFORMS[found.pop()] if len(found) == 1 else None


def oft_overrides(checkpoint_dir: Path, statistics: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """Config fields of a published OFT directory: from its tensors' shapes, then the constants of the platform
    its ``dataset_statistics.json`` names; fields in ``given`` (the caller's overrides) win."""
    tensors = read_side_tensors(checkpoint_dir)
    fc1, fc2 = tensors.get("action_head.model.fc1.weight"), tensors.get("action_head.model.fc2.weight")
    if fc1 is None or fc2 is None:
        raise CheckpointError(f"{side_file(checkpoint_dir, 'action_head')} lacks "
                              f"{'model.fc1.weight' if fc1 is None else 'model.fc2.weight'}: it is not OFT's "
                              "L1RegressionActionHead")
    blocks = {int(m[1]) for n in tensors if (m := re.match(r"action_head\.model\.mlp_resnet_blocks\.(\d+)\.", n))}
    derived: dict[str, Any] = {"head": "oft", "action_dim": int(fc2.shape[0]), "action_head_hidden": int(fc1.shape[0]),
                               "head_blocks": len(blocks)}
    proj = tensors.get("proprio_projector.fc1.weight")
    derived["proprio_dim"] = int(proj.shape[1]) if proj is not None else 0
    keys = sorted(statistics or {})
    platform = platform_of(keys) if keys else None
    if platform is None:
        missing = [k for k in ("chunk_len", "num_cameras") if k not in given]
        if missing:
            what = f"its statistics {keys} are for" if keys else f"it is for (it has no {STATISTICS_FILE})"
            raise ConfigError(
                f"{checkpoint_dir}: cannot tell which OFT platform (LIBERO, ALOHA, Bridge) {what}, so not "
                f"its {' and '.join(missing)}; give them (node parameters "
                f"model.chunk_len and model.num_cameras; LIBERO: 8 and 2, ALOHA: 25 and 3, Bridge: 5 and 1)")
    else:
        for key, value in (("action_dim", platform.action_dim), ("proprio_dim", platform.proprio_dim)):
            if derived[key] and derived[key] != value and key not in given:
                raise CheckpointError(f"{checkpoint_dir}: the head's tensors give {key}={derived[key]}, but "
                                      f"{platform.name} (from the statistics {keys}) has {value}")
        derived.update(chunk_len=platform.chunk_len, num_cameras=platform.cameras, norm_type=platform.norm_type)
    derived["center_crop"] = CENTER_CROP
    return {**derived, **given}
