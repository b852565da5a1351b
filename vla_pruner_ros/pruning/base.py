"""The pruning interface: a method selects visual tokens per camera; the model does the rest.

A pruner turns its config and temporal state into a ``PruneSpec`` for one forward pass (where to
prune, which attention rows it needs) and selects, per camera group, which visual tokens to keep.
After the tick it sees the prediction (e.g. the action queries' attention) to update its state.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..model.config import VLAConfig
from ..model.modeling import Prediction, PruneSpec, SelectionInput
from .errors import PrunerConfigError


@dataclass(frozen=True)
class PrunerConfig:
    """Parameters every method has.

    Attributes:
        keep_ratio: share of each camera's visual tokens kept, rho in (0, 1]; M~ = round(rho * M).
        layer: K, the decoder layer where pruning happens (layers < K see every token); 0 = before
            the LLM. The VLA papers use K = 3 (K = 2 was much worse for VLA-Pruner).
    """

    keep_ratio: float = 1.0
    layer: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.keep_ratio, (int, float)) or not 0.0 < float(self.keep_ratio) <= 1.0:
            raise PrunerConfigError(f"keep_ratio={self.keep_ratio!r} must be in (0, 1]")
        if not isinstance(self.layer, int) or self.layer < 0:
            raise PrunerConfigError(f"layer={self.layer!r} must be an integer >= 0")


@dataclass
class CameraInput:
    """One camera group's view of the selection point."""

    camera: int
    embeddings: torch.Tensor  # (B, M, d) projector outputs
    hidden: torch.Tensor  # (B, M, d) hidden states entering layer K
    attention: torch.Tensor | None  # (B, M) requested attention at layer K-1
    image: np.ndarray | None  # the camera's RGB frame (H, W, 3) uint8, if the tick has one


def budget(keep_ratio: float, num_tokens: int) -> int:
    """M~ = round(rho * M), at least one token."""
    return max(1, min(num_tokens, int(round(keep_ratio * num_tokens))))


def sorted_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, k) of the k largest scores, in increasing index order."""
    return torch.topk(scores, k, dim=-1).indices.sort(dim=-1).values


class Pruner(abc.ABC):
    """Base class: per-camera selection with a uniform budget. Subclasses override ``select``."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[PrunerConfig]] = PrunerConfig
    query: ClassVar[str] = "none"  # attention rows needed at layer K-1

    def __init__(self, config: PrunerConfig | None = None) -> None:
        self.config = config or self.config_class()
        self.tick = 0
        self._images: list[np.ndarray] | None = None

    # ---- per tick -----------------------------------------------------------------------------
    def keep_ratio_for_tick(self) -> float:
        """The keep ratio of the coming tick (methods with a schedule override this)."""
        return float(self.config.keep_ratio)

    def action_layer(self, model_config: VLAConfig) -> int | None:
        """Layer whose action-query attention the method wants after the tick; None = not needed."""
        return None

    def prune_spec(self, model_config: VLAConfig, images: list[np.ndarray] | None = None) -> PruneSpec | None:
        """The pruning of the coming forward pass, or None to run the model unpruned."""
        if self.config.layer >= model_config.num_layers:
            raise PrunerConfigError(
                f"layer={self.config.layer} must be below the model's {model_config.num_layers} decoder layers")
        action_layer = self.action_layer(model_config)
        if self.keep_ratio_for_tick() >= 1.0 and action_layer is None:
            return None
        self._images = images
        query = self.query if self.config.layer > 0 else "none"
        return PruneSpec(self.config.layer, self._select_all, query, action_layer)

    def _select_all(self, inp: SelectionInput) -> torch.Tensor:
        keep_ratio = self.keep_ratio_for_tick()
        kept = []
        for cam, (start, end) in enumerate(inp.layout.visual):
            lo, hi = start - inp.layout.visual_start, end - inp.layout.visual_start
            m = hi - lo
            k = budget(keep_ratio, m)
            if k == m:
                local = torch.arange(m, device=inp.visual_hidden.device).expand(inp.visual_hidden.shape[0], -1)
            else:
                cam_in = CameraInput(
                    cam, inp.visual_embeddings[:, lo:hi], inp.visual_hidden[:, lo:hi],
                    None if inp.attention is None else inp.attention[:, lo:hi],
                    None if self._images is None else self._images[cam])
                local = self.select(cam_in, k)
            kept.append(local + lo)
        return torch.cat(kept, dim=1)

    @abc.abstractmethod
    def select(self, inp: CameraInput, keep: int) -> torch.Tensor:
        """Indices (B, keep), sorted, of the camera's visual tokens to keep."""

    def observe(self, prediction: Prediction) -> None:
        """Update temporal state after a tick."""
        self.tick += 1

    # ---- episode state --------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything from the previous episode."""
        self.tick = 0

    def state_dict(self) -> dict[str, Any]:
        """A JSON-friendly snapshot of the temporal state."""
        return {"method": self.name, "tick": self.tick}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("method") != self.name:
            raise PrunerConfigError(f"state of method {state.get('method')!r} cannot be loaded into {self.name!r}")
        self.tick = int(state["tick"])

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, **dataclasses.asdict(self.config)}
