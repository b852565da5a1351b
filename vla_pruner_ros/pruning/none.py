"""``none``: the unpruned model (identity pruner)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.config import VLAConfig
from ..model.modeling import PruneSpec
from .base import CameraInput, Pruner, PrunerConfig


@dataclass(frozen=True)
class NoneConfig(PrunerConfig):
    """No parameters of its own; ``keep_ratio`` is ignored (always 1)."""


class NonePruner(Pruner):
    name = "none"
    config_class = NoneConfig

    def keep_ratio_for_tick(self) -> float:
        return 1.0

    def prune_spec(self, model_config: VLAConfig, images: list[np.ndarray] | None = None) -> PruneSpec | None:
        return None

    def select(self, inp: CameraInput, keep: int) -> torch.Tensor:
        b, m = inp.hidden.shape[:2]
        return torch.arange(m, device=inp.hidden.device).expand(b, -1)
