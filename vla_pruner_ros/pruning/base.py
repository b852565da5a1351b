"""The pruning interface: a method selects visual tokens per camera; the model does the rest.

A pruner is configuration plus algorithm; everything it remembers between ticks lives in an
explicit ``TemporalState`` that the policy owns and passes in. Per tick:

1. ``prune_spec(model_config, state, images)`` prepares the tick (e.g. image priors) and returns a
   ``PruneSpec`` (where to prune, which attention rows it needs) or None to run unpruned;
2. inside the forward pass the model calls the spec's selector, which splits the visual tokens
   per camera and calls ``select`` for each with that camera's budget;
3. ``observe(prediction, state, latency_ms)`` updates the state (e.g. the action-attention window).
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from ..model.interface import ModelSpec, Prediction, PruneSpec, SelectionInput
from .config import PrunerConfig
from .errors import PrunerConfigError
from .state import TemporalState


@dataclass
class TickContext:
    """What one tick's selection may use besides the model's tensors."""

    model_config: ModelSpec
    state: TemporalState
    images: list[np.ndarray] | None
    keep_ratio: float
    priors: list[dict[str, np.ndarray]] = field(default_factory=list)  # per camera, method-specific
    warmup: bool = False  # the policy's unpruned warm-up tick: every token is kept


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


def as_index(rows: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Per-batch-row numpy index arrays -> sorted (B, k) long tensor."""
    return torch.as_tensor(np.sort(np.stack(rows), axis=-1), dtype=torch.long, device=device)


class Pruner(abc.ABC):
    """Base class: per-camera selection with a per-tick budget. Subclasses implement ``select``."""

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[PrunerConfig]] = PrunerConfig
    query: ClassVar[str] = "none"  # attention rows needed at layer max(K-1, 0): none | last | text | all
    # whether ``on_selection`` must run every tick, even when every token is kept (it tracks state there)
    selects_every_tick: ClassVar[bool] = False

    def __init__(self, config: PrunerConfig | None = None) -> None:
        self.config = config or self.config_class()

    def new_state(self) -> TemporalState:
        return TemporalState(window=self.history_window())

    def history_window(self) -> int:
        """Ticks of action attention the temporal state keeps (1 for a method that keeps none)."""
        return 1

    # ---- hooks ------------------------------------------------------------------------------------
    def tick_keep_ratio(self, ctx: TickContext) -> float:
        """The keep ratio before the forward pass (methods with a schedule or warm-up override this)."""
        return float(self.config.keep_ratio)

    def action_layer(self, model_config: ModelSpec) -> int | None:
        """Layer whose action-query attention the method wants after the tick; None = not needed."""
        return None

    def prepare(self, ctx: TickContext) -> None:
        """Per-tick work before the forward pass (e.g. image priors into ``ctx.priors``)."""

    def on_selection(self, ctx: TickContext, inp: SelectionInput) -> None:
        """Whole-tick work at the selection point, before the per-camera ``select`` calls; may set
        ``ctx.keep_ratio`` (e.g. from the interaction phase)."""

    def camera_budgets(self, ctx: TickContext, sizes: list[int]) -> list[int]:
        """Tokens kept per camera: ``round(keep_ratio * M_c)`` each. A method may move budget between
        cameras, never change the total (rows at one keep ratio spend the same budget)."""
        return [budget(ctx.keep_ratio, m) for m in sizes]

    @abc.abstractmethod
    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        """Indices (B, keep), sorted, of the camera's visual tokens to keep."""

    def observe(self, prediction: Prediction, state: TemporalState, latency_ms: float | None = None) -> None:
        """Update temporal state after a tick."""
        state.tick += 1

    # ---- per tick ---------------------------------------------------------------------------------
    def validate(self, model_config: ModelSpec) -> None:
        """Check the configuration against a model (layers in range)."""
        if self.config.layer >= model_config.num_layers:
            raise PrunerConfigError(
                f"layer={self.config.layer} must be below the model's {model_config.num_layers} decoder layers")
        self.action_layer(model_config)

    def prune_spec(self, model_config: ModelSpec, state: TemporalState,
                   images: list[np.ndarray] | None = None, warmup: bool = False) -> PruneSpec | None:
        """The pruning of the coming forward pass, or None to run the model unpruned. ``warmup``: keep
        every token this tick (the policy's warm-up, the same for every method); the method still
        prepares and observes as usual, so its history fills."""
        self.validate(model_config)
        state.camera(model_config.num_cameras - 1)  # one CameraState per camera
        ctx = TickContext(model_config, state, images, 1.0, warmup=warmup)
        ctx.keep_ratio = 1.0 if warmup else self.tick_keep_ratio(ctx)
        self.prepare(ctx)
        state.keep_ratio = ctx.keep_ratio
        action_layer = self.action_layer(model_config)
        if ctx.keep_ratio >= 1.0 and action_layer is None and not self.selects_every_tick:
            return None
        return PruneSpec(self.config.layer, functools.partial(self._select_all, ctx), self.tick_query(state),
                         action_layer)

    def tick_query(self, state: TemporalState) -> str:
        """The attention rows this tick needs (``query``); a method may skip them on ticks it does not read them."""
        return self.query

    def _select_all(self, ctx: TickContext, inp: SelectionInput) -> torch.Tensor:
        self.on_selection(ctx, inp)
        if ctx.warmup:
            ctx.keep_ratio = 1.0
        ctx.state.keep_ratio = ctx.keep_ratio
        kept = []
        sizes = [end - start for start, end in inp.layout.visual]
        for cam, ((start, end), k) in enumerate(zip(inp.layout.visual, self.camera_budgets(ctx, sizes), strict=True)):
            lo, hi = start - inp.layout.visual_start, end - inp.layout.visual_start
            m = hi - lo
            if k == m:
                local = torch.arange(m, device=inp.visual_hidden.device).expand(inp.visual_hidden.shape[0], -1)
            else:
                cam_in = CameraInput(
                    cam, inp.visual_embeddings[:, lo:hi], inp.visual_hidden[:, lo:hi],
                    None if inp.attention is None else inp.attention[:, lo:hi],
                    None if ctx.images is None else ctx.images[cam])
                local = self.select(cam_in, k, ctx)
            kept.append(local + lo)
        return torch.cat(kept, dim=1)
