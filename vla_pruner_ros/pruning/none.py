"""``none``: the unpruned model (identity pruner)."""

from __future__ import annotations

import numpy as np
import torch

from ..model.interface import ModelSpec, PruneSpec
from .base import CameraInput, Pruner, TickContext
from .config import NoneConfig
from .state import TemporalState


class NonePruner(Pruner):
    name = "none"
    config_class = NoneConfig

    def validate(self, model_config: ModelSpec) -> None:
        """Nothing to check: the unpruned model runs on any depth."""

    def prune_spec(self, model_config: ModelSpec, state: TemporalState,
                   images: list[np.ndarray] | None = None, warmup: bool = False) -> PruneSpec | None:
        state.keep_ratio = 1.0
        return None

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        b, m = inp.hidden.shape[:2]
        return torch.arange(m, device=inp.hidden.device).expand(b, -1)
