"""``random``: uniformly random visual tokens, seeded (the floor every method must beat)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .base import CameraInput, Pruner, PrunerConfig


@dataclass(frozen=True)
class RandomConfig(PrunerConfig):
    """Attributes:
        seed: seed of the generator; it restarts at each episode so replays are reproducible.
    """

    seed: int = 0


class RandomPruner(Pruner):
    name = "random"
    config_class = RandomConfig

    def __init__(self, config: RandomConfig | None = None) -> None:
        super().__init__(config)
        self.generator = torch.Generator().manual_seed(self.config.seed)

    def select(self, inp: CameraInput, keep: int) -> torch.Tensor:
        b, m = inp.hidden.shape[:2]
        rows = [torch.randperm(m, generator=self.generator)[:keep].sort().values for _ in range(b)]
        return torch.stack(rows).to(inp.hidden.device)

    def reset(self) -> None:
        super().reset()
        self.generator.manual_seed(self.config.seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
