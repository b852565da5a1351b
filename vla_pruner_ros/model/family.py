"""The interface a model family implements, so that the policy, the pruners, the node, replay, eval and bench
do not care which family runs.

Two families implement it: OpenVLA (``modeling.VLAModel``: the tokens, chunk and OFT heads) and pi0
(``pi0.PI0VLA``, on transformers' own PI0 modules). A family:

- turns an instruction into prompt ids (``prompt_ids``) and camera frames into pixel values (``preprocess``),
  and normalised proprio into its state input (``proprio_input``);
- runs its backbone with the pruning hook at layer K on the visual spans it reports (``predict`` with a
  ``PruneSpec``; the shared loop is ``interface.run_pruned_layers``), producing the normalised action chunk
  and the attention rows a method asks for (semantic rows at K-1, action rows at ``action_layer``);
- counts its FLOPs (``tick_flops``).

Its ``config`` carries the ``interface.ModelSpec`` sizes the pruners read, plus what the policy needs:
``num_cameras``, ``proprio_dim``, ``action_dim``, ``chunk_len``, ``norm_stats``, ``norm_type``, ``norm_eps``,
``head``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from .interface import Prediction, PruneSpec


class FamilyModel(Protocol):
    config: Any

    def prompt_ids(self, tokenizer, instruction: str) -> list[int]: ...

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor: ...

    def proprio_input(self, normalized: np.ndarray) -> torch.Tensor: ...

    def predict(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, proprio: torch.Tensor | None = None,
                prune: PruneSpec | None = None, use_cache: bool = True,
                generator: torch.Generator | None = None) -> Prediction: ...

    def tick_flops(self, prompt_len: int, kept_visual: int, prune_layer: int) -> tuple[float, float]: ...
