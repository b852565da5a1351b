"""``random``: uniformly random visual tokens, seeded (the floor every method must beat)."""

from __future__ import annotations

import torch

from .base import CameraInput, Pruner, TickContext
from .config import RandomConfig


class RandomPruner(Pruner):
    name = "random"
    config_class = RandomConfig

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        b, m = inp.hidden.shape[:2]
        g = torch.Generator().manual_seed((self.config.seed * 1_000_003 + ctx.state.tick * 101 + inp.camera) % 2**63)
        rows = [torch.randperm(m, generator=g)[:keep].sort().values for _ in range(b)]
        return torch.stack(rows).to(inp.hidden.device)
