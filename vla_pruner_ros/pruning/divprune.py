"""``divprune``: greedy max-min diversity on the projector outputs, before the LLM (no attention).

DivPrune (Alvar et al., 2025): distance ``1 - cos(v_i, v_j)`` between visual token embeddings;
repeatedly add the token whose minimum distance to the selected set is largest. The seed is not
fixed by the method description; here it is the token whose nearest neighbour is farthest (the
same rule as VLA-Pruner's filter), which makes the selection deterministic.
"""

from __future__ import annotations

import torch

from .base import CameraInput, Pruner, TickContext, as_index
from .config import DivPruneConfig
from .scores import cosine_distances, greedy_max_min


class DivPrunePruner(Pruner):
    name = "divprune"
    config_class = DivPruneConfig

    def select(self, inp: CameraInput, keep: int, ctx: TickContext) -> torch.Tensor:
        rows = [greedy_max_min(cosine_distances(emb), keep) for emb in inp.embeddings]
        return as_index(rows, inp.embeddings.device)
