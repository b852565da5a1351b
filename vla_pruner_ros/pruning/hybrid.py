"""``hybrid`` (ours): a few relevant tokens, then spatial coverage; VLA-IAP's anchors and phase.

Per tick and camera, the budget M~ is split. The relevant part (``relevant_ratio`` of the camera's
tokens, at most M~) comes from VLA-Pruner's decaying window of action attention and VLA-IAP's
geometric (Sobel edge) anchors, united and reduced by greedy max-min diversity; the rest is spatial
coverage: farthest-point sampling on the patch grid from the tokens already chosen. Why: on the
shipped model, random selection beat every attention-based method at the same budget, and
``vla-pruner sim relevance`` showed why (BENCHMARKS.md): the prefill attention at layer K-1 keeps
fewer of the named object's patches than random does, the action window about as many as random,
the edges most of them (front camera), and random keeps the scene covered (mean distance to a kept
patch 0.94 patches at 25%, against 1.3 to 1.8 for the score rankings). The prefill top-M~ joins the candidates only
on an episode's first tick (no action history yet), or always with ``semantic_candidates``. Tuned
on training-split episodes: ``relevant_ratio`` 1/16 (9 of 144 tokens per camera) was best at both
25% and 12.5% keep. The keep ratio can follow the interaction phase (from the IoU of the semantic and motion masks, with
hysteresis): ``keep_ratio`` while approaching, ``interaction_keep_ratio`` once interaction is
locked. By default the two are equal: VLA-IAP's aggressive interaction budget (half) cost grasps in
closed loop (BENCHMARKS.md), so it is an option. With ``interaction_keep_ratio`` at most
``keep_ratio``, a comparison at the same nominal keep ratio never gives hybrid more tokens than the
other methods.

Optional ``deadline_ms``: the ratio is capped so that the tick's predicted latency meets the
deadline. The latency model is fitted online on the last ticks, ``latency = a + b * kept visual
tokens`` (least squares once two different token counts were seen; before that, latency
proportional to the tokens kept), and never raises the ratio above the phase's nor lowers it
below ``min_keep_ratio``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.interface import Prediction, SelectionInput
from .base import CameraInput, TickContext, as_index, budget
from .config import HybridConfig
from .interaction import anchors, image_priors, update_interaction
from .scores import cover, top_k, union_then_diversity
from .state import APPROACH, TemporalState
from .vla_pruner import VLAPruner


def deadline_ratio(history: list[tuple[int, float]], total_tokens: int, deadline_ms: float) -> float | None:
    """The largest keep ratio whose predicted tick latency meets the deadline; None without data."""
    if not history:
        return None
    kept = np.array([h[0] for h in history], dtype=np.float64)
    lat = np.array([h[1] for h in history], dtype=np.float64)
    if len(np.unique(kept)) >= 2:
        b, a = np.polyfit(kept, lat, 1)
        if b <= 0:  # no measurable dependence on tokens: tokens are not what to cut
            return 1.0 if a <= deadline_ms else 0.0
    else:
        a, b = 0.0, float(lat.mean() / max(kept.mean(), 1.0))
    return float(np.clip((deadline_ms - a) / b / total_tokens, 0.0, 1.0))


class HybridPruner(VLAPruner):
    name = "hybrid"
    config_class = HybridConfig
    selects_every_tick = True  # on_selection tracks the interaction phase even at keep 1.0

    @property
    def tracks_phase(self) -> bool:
        """Whether the interaction phase changes anything: only when its budget differs. Otherwise the
        motion prior, the semantic masks and their IoU are not computed at all (the phase stays approach)."""
        return self.config.interaction_ratio != float(self.config.keep_ratio)

    def prepare(self, ctx: TickContext) -> None:
        image_priors(ctx, self.config, motion=self.tracks_phase)

    def tick_query(self, state: TemporalState) -> str:
        """The prefill rows only where they are read: an episode's first tick (no action history yet), the
        phase tracker, or ``semantic_candidates``. Otherwise the layer is not asked for them at all."""
        history = bool(state.cameras) and all(len(cam.attention) for cam in state.cameras)
        return self.query if self.config.semantic_candidates or self.tracks_phase or not history else "none"

    def on_selection(self, ctx: TickContext, inp: SelectionInput) -> None:
        phase = APPROACH
        if self.tracks_phase:
            phase = update_interaction(ctx, self.config, inp.attention[0].float().cpu().numpy())
        ratio = float(self.config.keep_ratio) if phase == APPROACH else self.config.interaction_ratio
        if self.config.deadline_ms is not None:
            cap = deadline_ratio(list(ctx.state.latency), ctx.model_config.num_visual_tokens, self.config.deadline_ms)
            if cap is not None:
                ratio = max(self.config.min_keep_ratio, min(ratio, cap))
        ctx.keep_ratio = ratio

    def camera_budgets(self, ctx: TickContext, sizes: list[int]) -> list[int]:
        """``last_camera_share`` of the two cameras' total budget to the second one (the total stays)."""
        equal = super().camera_budgets(ctx, sizes)
        if len(sizes) != 2 or self.config.last_camera_share == 0.5:
            return equal
        total = sum(equal)
        last = min(sizes[1], total - 1, max(1, total - sizes[0], int(round(total * self.config.last_camera_share))))
        return [total - last, last]

    def candidates(self, inp: CameraInput, keep: int, ctx: TickContext, row: int) -> list[np.ndarray]:
        estimate = self.action_estimate(ctx.state, inp.camera)
        parts = []
        if self.config.semantic_candidates or estimate is None:
            parts.append(top_k(inp.attention[row].float().cpu().numpy(), keep))
        if estimate is not None:
            parts.append(top_k(estimate, keep))
        parts.append(anchors(ctx.priors[inp.camera]["edge"], self.config.anchor_ratio, keep))
        return parts

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        """The relevant share of the budget by union and diversity, the rest by spatial coverage."""
        grid = ctx.model_config.grid
        relevant = min(keep, budget(self.config.relevant_ratio, grid * grid))
        rows = [cover(union_then_diversity(self.candidates(inp, relevant, ctx, b), inp.embeddings[b], relevant),
                      keep, grid) for b in range(inp.embeddings.shape[0])]
        return as_index(rows, inp.embeddings.device)

    def observe(self, prediction: Prediction, state: TemporalState, latency_ms: float | None = None) -> None:
        super().observe(prediction, state, latency_ms)
        if latency_ms is not None:
            kept = prediction.visual_keep.shape[1] if prediction.visual_keep is not None else None
            if kept is not None:
                state.latency.append((int(kept), float(latency_ms)))
