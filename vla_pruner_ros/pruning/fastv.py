"""``fastv``: keep the visual tokens the last prompt token attends to most at layer K-1.

FastV (Chen et al., 2024) as used by the VLA papers: score = attention of the last prompt token to
each visual token at layer K-1, averaged over heads; keep the top M~. Default K = 3 (FastV's own
paper used K = 2).
"""

from __future__ import annotations

import torch

from .base import CameraInput, Pruner, TickContext, sorted_topk
from .config import FastVConfig


class FastVPruner(Pruner):
    name = "fastv"
    config_class = FastVConfig
    query = "last"

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        return sorted_topk(inp.attention, keep)
