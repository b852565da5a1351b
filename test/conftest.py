"""Shared fixtures: tiny random models on CPU, offline, deterministic."""

from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering on the CPU (Mesa)

import numpy as np
import pytest
import torch

from vla_pruner_ros.model import build_preset
from vla_pruner_ros.synthetic import moving_square_frames

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(min(2, torch.get_num_threads()))


@functools.cache
def tiny(head: str = "tokens", cameras: int = 1, proprio: int = 0, seed: int = 0):
    """(model, tokenizer) of the tiny preset; cached, so tests must not modify them."""
    return build_preset("tiny", head=head, num_cameras=cameras, proprio_dim=proprio, seed=seed)


def frames(n: int, size: int = 56, seed: int = 0) -> list[np.ndarray]:
    return moving_square_frames(n, size, seed)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "openvla-7b" / "config.json").exists():
        pytest.skip(f"reference checkpoint metadata not found at {SHARED_DATA}")
    return SHARED_DATA
