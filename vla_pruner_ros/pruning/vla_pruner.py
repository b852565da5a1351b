"""``vla_pruner``: VLA-Pruner (arXiv 2511.16449), dual-level selection with temporal action attention.

Two relevance signals per visual token:

- semantic ``S_vl``: attention of the prefill queries to it at layer K-1 (heads averaged), over
  all prefill rows (the paper), the text rows, or the last prompt row (the authors' later advice);
- action ``S^_act``: the action queries' attention to it at a middle layer on the previous ticks
  (pruned tokens scattered back as 0), combined over a decaying window
  ``S^_act(t) = sum_{i=1..w} gamma^i S_act(t-i)`` with the latest tick weighing most, normalised.

Selection ("combine then filter"): ``C = top-M~(S_vl) ∪ top-M~(S^_act)``; if ``|C| > M~``, greedy
max-min cosine diversity over the candidates' projector embeddings, seeded with the candidate whose
nearest neighbour is farthest. The window is cleared at each episode; until it fills, the estimate
covers the ticks there are, and on an episode's first tick the semantic top-M~ is the selection (the
paper runs unpruned until the window is full instead; here every tick spends the budget, so methods
compare at the same one, and ``PolicyConfig.warmup_ticks`` gives every method the same unpruned
warm-up when wanted). Per-camera budgets. Action queries: the chunk head's action query rows;
for the tokens head the 7 decoded action tokens (the first is the last prompt row).
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.interface import ModelSpec, Prediction
from .base import CameraInput, Pruner, TickContext, as_index
from .config import VLAPrunerConfig
from .errors import PrunerConfigError
from .scores import decaying_window, top_k, union_then_diversity
from .state import TemporalState


class VLAPruner(Pruner):
    name = "vla_pruner"
    config_class = VLAPrunerConfig

    @property
    def query(self) -> str:  # type: ignore[override]
        return self.config.semantic_query

    def history_window(self) -> int:
        return int(self.config.window)

    def action_layer(self, model_config: ModelSpec) -> int:
        layer = self.config.action_layer
        if layer is None:
            return (model_config.num_layers - 1) // 2
        if layer >= model_config.num_layers:
            raise PrunerConfigError(f"action_layer={layer} must be below the model's {model_config.num_layers} layers")
        return layer

    def action_estimate(self, state: TemporalState, camera: int) -> np.ndarray | None:
        history = list(state.camera(camera).attention)
        return decaying_window(history, self.config.gamma) if history else None

    def candidates(self, inp: CameraInput, keep: int, ctx: TickContext, row: int) -> list[np.ndarray]:
        semantic = inp.attention[row].float().cpu().numpy()
        parts = [top_k(semantic, keep)]
        estimate = self.action_estimate(ctx.state, inp.camera)
        if estimate is not None:
            parts.append(top_k(estimate, keep))
        return parts

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        rows = [union_then_diversity(self.candidates(inp, keep, ctx, b), inp.embeddings[b], keep)
                for b in range(inp.embeddings.shape[0])]
        return as_index(rows, inp.embeddings.device)

    def observe(self, prediction: Prediction, state: TemporalState, latency_ms: float | None = None) -> None:
        super().observe(prediction, state, latency_ms)
        if prediction.action_attention is None:
            return
        att = prediction.action_attention[0].float().cpu().numpy()  # (M,) all cameras; the policy runs B = 1
        per_cam = att.shape[0] // len(state.cameras)
        for c, cam in enumerate(state.cameras):
            cam.attention.append(att[c * per_cam:(c + 1) * per_cam].astype(np.float32))
