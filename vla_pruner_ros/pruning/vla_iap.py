"""``vla_iap``: VLA-IAP (arXiv 2603.22991), interaction-aligned pruning, training-free.

Priors per visual patch (see ``interaction.py``): geometric G (Sobel edges), motion M (second-order
frame difference, accumulated), semantic S (text-to-vision attention, smoothed). Final score
``S + k * M + w_edge * G`` (k = 0.5 published; w_edge not published, 0.3 here). The phase follows
the IoU of the S and M masks against theta = 0.05:

- approach (conservative): drop only tokens weak in both S and M ("double-weak": below the
  ``weak_quantile`` of each), edge anchors protected;
- interaction (aggressive): keep the semantic core united with the motion mask and the anchors,
  prune the rest.

How the budget applies: the keep ratio is honoured in both phases (it is the user's latency
contract); the phase decides which tokens fill it. Tokens are ranked by protection class first
(anchors, then the phase's protected set: not double-weak while approaching, S core ∪ M mask while
interacting) and by the final score within a class, and the top M~ are kept. So while approaching
the double-weak tokens go first, and while interacting everything outside the interaction region
goes first.

Tokens are chosen as early as the semantic prior allows: by default K = 0, with layer 0's
text-to-vision attention recomputed on the input embeddings, so every LLM layer runs on the kept
tokens only.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.interface import SelectionInput
from .base import CameraInput, Pruner, TickContext, as_index
from .config import VLAIAPConfig
from .interaction import anchors, image_priors, semantic_prior, update_interaction
from .scores import relative_mask
from .state import INTERACTION


class VLAIAPPruner(Pruner):
    name = "vla_iap"
    config_class = VLAIAPConfig
    selects_every_tick = True  # on_selection tracks the interaction phase even at keep 1.0
    query = "text"

    def prepare(self, ctx: TickContext) -> None:
        image_priors(ctx, self.config)

    def on_selection(self, ctx: TickContext, inp: SelectionInput) -> None:
        update_interaction(ctx, self.config, inp.attention[0].float().cpu().numpy())

    def ranking(self, semantic: np.ndarray, priors: dict[str, np.ndarray], keep: int, phase: str) -> np.ndarray:
        """Per-token sort key: protection class (integer part) + normalised score (fraction)."""
        cfg = self.config
        edge, motion = priors["edge"], priors["motion"]
        score = semantic + cfg.temporal_weight * motion + cfg.edge_weight * edge
        score = score / (score.max() + 1e-12) * 0.999  # in [0, 1)
        protected = np.zeros(semantic.shape[0], dtype=bool)
        if phase == INTERACTION:
            protected |= relative_mask(semantic, cfg.semantic_threshold) | relative_mask(motion, cfg.motion_threshold)
        else:
            weak_s = semantic < np.quantile(semantic, cfg.weak_quantile)
            weak_m = motion < np.quantile(motion, cfg.weak_quantile) if motion.max() > 0 else np.ones_like(weak_s)
            protected |= ~(weak_s & weak_m)
        key = score + protected
        key[anchors(edge, cfg.anchor_ratio, keep)] += 2.0
        return key

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        priors = ctx.priors[inp.camera]
        rows = []
        for b in range(inp.attention.shape[0]):
            semantic = priors["semantic"] if b == 0 else semantic_prior(
                inp.attention[b].float().cpu().numpy(), ctx.model_config.grid, self.config.semantic_sigma)
            key = self.ranking(semantic, priors, keep, ctx.state.phase)
            rows.append(np.argsort(-key, kind="stable")[:keep])
        return as_index(rows, inp.attention.device)
