"""pi0 checkpoint directories read from their files alone (no torch import): whether a directory holds pi0,
its normalisation statistics, and the inputs it takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError

NORM_EPS = 1e-8  # PI0Processor.normalize and LeRobot's normaliser
STAT_FILES = ("processor_config.json", "policy_preprocessor_step_*normalizer*.safetensors")


def _config(path: str | Path) -> dict:
    config = Path(path) / "config.json"
    try:
        return json.loads(config.read_text()) if config.is_file() else {}
    except (OSError, ValueError):
        return {}


def is_pi0_dir(path: str | Path) -> bool:
    """transformers' PI0 (``model_type: pi0``) or LeRobot's own policy format (``type: pi0``, refused with the
    way to convert it when loaded)."""
    config = _config(path)
    return config.get("model_type") == "pi0" or config.get("type") == "pi0"


def check_transformers_format(path: str | Path) -> None:
    """Refuse LeRobot's own policy directory, naming the conversion."""
    config = _config(path)
    if config.get("type") == "pi0" and config.get("model_type") != "pi0":
        raise CheckpointError(
            f"{path} is a LeRobot policy directory (config.json 'type: pi0'), not transformers' PI0 format: load its "
            "weights once with transformers' PI0ForConditionalGeneration (its loader renames LeRobot's tensor names) "
            "and write the directory with save_pretrained, plus PI0Processor.save_pretrained with the dataset's "
            "statistics")


def _vector(stats: dict, key: str, where: str) -> list[float]:
    values = stats.get(key)
    if values is None:
        raise CheckpointError(f"{where} has no {key!r}; pi0 needs the mean and std of the robot's state and "
                              f"actions (PI0Processor's state_mean, state_std, actions_mean, actions_std)")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise CheckpointError(f"{where}: {key} has non-finite values")
    return arr.tolist()


def _mean_std(source: dict, where: str, *keys: str) -> dict:
    """{'default': {'action': {mean, std}, 'proprio': {mean, std}}} from the four named entries (action mean
    and std, state mean and std)."""
    a_mean, a_std, s_mean, s_std = (_vector(source, key, where) for key in keys)
    return {"default": {"action": {"mean": a_mean, "std": a_std}, "proprio": {"mean": s_mean, "std": s_std}}}


def read_pi0_stats(path: str | Path) -> tuple[dict, tuple]:
    """({'default': {'action': {mean, std}, 'proprio': {mean, std}}}, image mean/std) from the directory:
    transformers' ``processor_config.json`` (PI0Processor's statistics), else a LeRobot normaliser file
    (``observation.state.mean`` ... ``action.std``)."""
    path = Path(path)
    check_transformers_format(path)
    proc = path / "processor_config.json"
    mean_std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    if proc.is_file():
        data = json.loads(proc.read_text())
        image = data.get("image_processor", {})
        if "image_mean" in image and "image_std" in image:
            mean_std = (tuple(image["image_mean"]), tuple(image["image_std"]))
        if any(key in data for key in ("state_mean", "actions_mean")):
            return _mean_std(data, str(proc), "actions_mean", "actions_std", "state_mean", "state_std"), mean_std
    for file in sorted(path.glob("policy_preprocessor_step_*normalizer*.safetensors")):
        from safetensors.torch import load_file

        tensors = {k: v.double().reshape(-1).tolist() for k, v in load_file(str(file)).items()}
        return _mean_std(tensors, str(file), "action.mean", "action.std", "observation.state.mean",
                         "observation.state.std"), mean_std
    raise CheckpointError(f"{path} has no normalisation statistics: expected {STAT_FILES[0]} with state_mean, "
                          f"state_std, actions_mean and actions_std (PI0Processor.save_pretrained), or LeRobot's "
                          f"{STAT_FILES[1]}")


def pi0_inputs(path: str | Path) -> tuple[int, int]:
    """(cameras, state values) of a pi0 directory from its files (cameras: 1 unless the node says more)."""
    norm_stats, _ = read_pi0_stats(path)
    return 1, len(norm_stats["default"]["proprio"]["mean"])
