"""What every model family shares at the pruning point, and the pruned decoder-layer loop.

A model family (``family.py``) runs its own inputs and action decoding; where visual tokens are pruned it
uses these types and ``run_pruned_layers``: layers ``0..K-1`` run on the full sequence, at layer K the
caller's selector picks visual tokens per camera, hidden states and rotary tables are gathered to the kept
rows (each keeping its original position), and layers ``>= K`` run (and cache) only those rows. Pruning
methods see only this module's types (``SelectionInput``, ``PruneSpec``, ``Prediction``), never a family.
The layers are transformers' own decoder layers (Llama for OpenVLA, Gemma for pi0's PaliGemma), run with
the ``sdpa_rows`` attention (``attention.py``).
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from .attention import RowRequest, attention_rows, layer_keys, layout_mask, request_rows, sync
from .errors import ConfigError

# The decoder layer's KV-cache argument: ``cache`` since transformers 5.2x (``past_key_values`` is
# deprecated there and removed in 5.40); older 5.x releases only know ``past_key_values``.
CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaDecoderLayer.forward).parameters else "past_key_values"


class ModelSpec(Protocol):
    """The sizes a pruning method may read from any family's configuration."""

    num_layers: int  # decoder layers where pruning may happen (pi0: the VLM's, equal to the expert's)
    num_cameras: int
    grid: int  # patches per side of one camera's token grid
    tokens_per_camera: int
    num_visual_tokens: int
    prune_layer: int | None  # the family's default K for in-LLM methods, if it names one


QUERIES = ("none", "last", "text", "all")


@dataclass(frozen=True)
class Layout:
    """Row map of one LLM input sequence: ``[BOS | visual per camera | proprio? | text | actions | stop? |
    decoded]``."""

    length: int
    visual: tuple[tuple[int, int], ...]  # per camera [start, end) rows
    proprio: int | None
    text: tuple[int, int]
    actions: tuple[int, int]  # action query (chunk) or placeholder (oft) rows; empty range for the tokens head
    readout: tuple[int, int] = (0, 0)  # rows whose final hidden states the head reads
    causal: bool = True  # False: every row attends to every row (OFT)

    @property
    def visual_start(self) -> int:
        return self.visual[0][0]

    @property
    def visual_end(self) -> int:
        return self.visual[-1][1]

    @property
    def num_visual(self) -> int:
        return self.visual_end - self.visual_start

    def is_action(self, device: torch.device) -> torch.Tensor | None:
        if self.actions[1] == self.actions[0]:
            return None
        flags = torch.zeros(self.length, dtype=torch.bool, device=device)
        flags[self.actions[0]:self.actions[1]] = True
        return flags

    def extended(self, n: int) -> Layout:
        """The same layout with n decoded tokens appended."""
        return dataclasses.replace(self, length=self.length + n)

    def kept_rows(self, visual_keep: torch.Tensor) -> torch.Tensor:
        """Original row indices (B, L') for kept visual indices (B, Mk) (0-based over all cameras)."""
        b = visual_keep.shape[0]
        device = visual_keep.device
        head = torch.arange(self.visual_start, device=device).expand(b, -1)
        tail = torch.arange(self.visual_end, self.length, device=device).expand(b, -1)
        return torch.cat([head, visual_keep + self.visual_start, tail], dim=1)


@dataclass
class SelectionInput:
    """What a selector sees at the pruning point (batch rows share one layout)."""

    layout: Layout
    visual_embeddings: torch.Tensor  # (B, M, d) projector outputs, all cameras
    visual_hidden: torch.Tensor  # (B, M, d) hidden states of the visual rows entering layer K
    attention: torch.Tensor | None  # (B, M) head- and query-averaged attention at layer K-1, if requested


Selector = Callable[[SelectionInput], torch.Tensor]  # -> (B, Mk) sorted unique visual indices


@dataclass(frozen=True)
class PruneSpec:
    """Where and how to prune one forward pass."""

    layer: int  # K: layers < K see every token; 0 prunes before the LLM
    select: Selector
    # Attention rows handed to the selector (none | last | text | all), taken at layer K-1; with K = 0,
    # layer 0's attention recomputed on the input embeddings, so the LLM runs entirely on kept tokens.
    query: str = "none"
    action_layer: int | None = None  # record the action queries' attention to visual tokens at this layer

    def __post_init__(self) -> None:
        if self.query not in QUERIES:
            raise ConfigError(f"query={self.query!r}; expected one of {QUERIES}")

    @property
    def score_layer(self) -> int:
        return max(self.layer - 1, 0)


class KVCache:
    """Per-layer key/value store; layers may hold different lengths (full below K, kept from K)."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *_args, **_kwargs):
        if self.keys[layer_idx] is not None:
            k = torch.cat([self.keys[layer_idx], k], dim=-2)
            v = torch.cat([self.values[layer_idx], v], dim=-2)
        self.keys[layer_idx], self.values[layer_idx] = k, v
        return k, v


@dataclass
class LLMResult:
    hidden: torch.Tensor  # (B, L', d) after the final norm
    kept: torch.Tensor  # (B, L') original row of each output row
    visual_keep: torch.Tensor | None  # (B, Mk) kept visual indices; None when not pruned
    action_attention: torch.Tensor | None  # (B, M) summed over action query rows, pruned tokens 0
    action_queries: int = 0  # how many query rows were summed into action_attention
    score_seconds: float = 0.0  # time spent recomputing attention rows and selecting
    cache: KVCache | None = None


@dataclass
class Prediction:
    """Normalised actions (B, chunk_len, action_dim) in [-1, 1]-ish space, plus what the pruner needs."""

    actions: torch.Tensor
    visual_keep: torch.Tensor | None
    action_attention: torch.Tensor | None  # (B, M) mean over action queries
    token_ids: torch.Tensor | None = None  # (B, action_dim) for the tokens head
    timings: dict[str, float] = field(default_factory=dict)  # seconds: vision, prefill, decode, select



def query_rows(layout: Layout, which: str) -> torch.Tensor:
    """Layout rows of a semantic query: the last prompt row, every prompt row, or every prefill row."""
    if which == "last":
        return torch.tensor([layout.text[1] - 1])
    if which == "text":
        return torch.arange(*layout.text)
    return torch.arange(layout.visual_start, layout.text[1])  # "all": every prefill row (visual + text)


def allowed_keys(kept: torch.Tensor, rows: torch.Tensor, is_action: torch.Tensor | None,
                 causal: bool = True) -> torch.Tensor | None:
    """Which keys (B, R, L') the layout rows ``rows`` attend to: causal, action rows among themselves;
    None (every key) in a bidirectional layout."""
    if not causal:
        return None
    kept_rows = kept[:, rows]  # (B, R) original indices of the query rows
    if is_action is not None and bool(is_action[-1]) and bool(is_action[kept_rows].all()):
        return None  # rows of the action block that ends the layout see every key
    allowed = kept.unsqueeze(1) <= kept_rows.unsqueeze(2)  # (B, R, L') causal in original order
    if is_action is not None:
        allowed = allowed | (is_action[kept_rows].unsqueeze(2) & is_action[kept].unsqueeze(1))
    return allowed


def to_visual(probs: torch.Tensor, kept: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Sum of attention rows (B, R, L') scattered onto original visual indices (B, M); pruned ones 0.
    Keys whose ``kept`` entry is outside the visual span (text, state, decoded rows: -1) are dropped."""
    per_key = probs.sum(dim=1)  # (B, L')
    vis = (kept >= layout.visual_start) & (kept < layout.visual_end)
    out = torch.zeros(kept.shape[0], layout.num_visual, dtype=per_key.dtype, device=per_key.device)
    idx = (kept - layout.visual_start).clamp(0, layout.num_visual - 1)
    return out.scatter_add_(1, idx, torch.where(vis, per_key, torch.zeros_like(per_key)))


def checked_keep(keep: torch.Tensor, num_visual: int, batch: int) -> torch.Tensor:
    """Validate a selector's output: (B, Mk) sorted, unique, in range."""
    if keep.dim() != 2 or keep.shape[0] != batch:
        raise ValueError(f"selector returned shape {tuple(keep.shape)}; expected (batch={batch}, kept)")
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= num_visual):
        raise ValueError(f"selector returned indices outside [0, {num_visual})")
    if keep.shape[1] > 1 and not bool((keep[:, 1:] > keep[:, :-1]).all()):
        raise ValueError("selector must return strictly increasing (sorted, unique) visual indices")
    return keep.long()


def run_pruned_layers(layers: nn.ModuleList, rotary_emb: nn.Module, embeds: torch.Tensor, layout: Layout,
                      prune: PruneSpec | None = None, cache=None, visual: torch.Tensor | None = None,
                      action_layer: int | None = None,
                      action_rows: Callable[[torch.Tensor], torch.Tensor] | None = None) -> LLMResult:
    """A prefill (or a full no-cache pass) through ``layers`` with optional pruning at layer ``prune.layer``.

    ``visual`` is the projector output (B, M, d) handed to the selector (defaults to the visual rows of
    ``embeds``). ``action_layer``/``action_rows``: record the attention of the rows ``action_rows(kept)``
    (current-layout indices) to the visual tokens at that layer. The output is the last layer's hidden
    states, before the final norm.
    """
    b, length, _ = embeds.shape
    n_layers = len(layers)
    if prune is not None and not 0 <= prune.layer < n_layers:
        raise ConfigError(f"prune layer K={prune.layer} must be in [0, {n_layers - 1}] for this {n_layers}-layer LLM")
    device = embeds.device
    kept = torch.arange(length, device=device).expand(b, -1)  # (B, L) original row indices
    cos, sin = rotary_emb(embeds, kept)  # (B, L, hd) each
    is_action = layout.is_action(device)
    mask = layout_mask(kept, is_action, layout.causal)
    # a bidirectional layout runs SDPA unmasked and non-causal
    attn_kwargs = {} if layout.causal else {"is_causal": False}
    h = embeds
    attention = visual_keep = action_attention = None
    n_action_rows = 0
    score_seconds = 0.0
    semantic: RowRequest | None = None  # the semantic rows, answered by layer K-1 as it runs
    for layer in layers:  # no request left over from a forward pass that failed
        layer.self_attn.__dict__.pop("_row_requests", None)
    for i, layer in enumerate(layers):
        if prune is not None and i == prune.score_layer and prune.query != "none":
            sync(device)  # time this part alone, not the queued work before it
            t0 = time.perf_counter()
            rows = query_rows(layout, prune.query).to(device)
            allowed = allowed_keys(kept, rows, is_action, layout.causal)
            if prune.score_layer < prune.layer:  # the layer runs on every token first: ask it
                semantic = request_rows(layer.self_attn, RowRequest(rows, allowed))
            else:  # pruning before this layer runs: recompute from its inputs
                x = layer.input_layernorm(h)
                keys = layer_keys(layer.self_attn, x, cos, sin)
                probs = attention_rows(layer.self_attn, x[:, rows], cos[:, rows], sin[:, rows], keys, allowed)
                attention = probs[:, :, layout.visual_start:layout.visual_end].mean(dim=1)  # (B, M)
            sync(device)
            score_seconds += time.perf_counter() - t0
        if semantic is not None and i == prune.layer:
            attention = semantic.probs[:, :, layout.visual_start:layout.visual_end].mean(dim=1)  # (B, M)
            score_seconds += semantic.seconds
        if prune is not None and i == prune.layer:
            sync(device)  # time this part alone, not the queued work before it
            t0 = time.perf_counter()
            vis_rows = h[:, layout.visual_start:layout.visual_end]
            projected = embeds[:, layout.visual_start:layout.visual_end] if visual is None else visual
            selection = SelectionInput(layout, projected, vis_rows, attention)
            visual_keep = checked_keep(prune.select(selection), layout.num_visual, b)
            kept = layout.kept_rows(visual_keep)
            idx = kept.unsqueeze(-1)
            h = h.gather(1, idx.expand(-1, -1, h.shape[-1]))
            cos = cos.gather(1, idx.expand(-1, -1, cos.shape[-1]))
            sin = sin.gather(1, idx.expand(-1, -1, sin.shape[-1]))
            mask = layout_mask(kept, is_action, layout.causal)
            sync(device)
            score_seconds += time.perf_counter() - t0
        action: RowRequest | None = None
        if action_layer == i and action_rows is not None:  # answered by this layer as it runs
            sync(device)  # time this part alone, not the queued work before it
            t0 = time.perf_counter()
            rows = action_rows(kept)
            action = request_rows(layer.self_attn, RowRequest(rows, allowed_keys(kept, rows, is_action,
                                                                                 layout.causal)))
            n_action_rows = len(rows)
            sync(device)
            score_seconds += time.perf_counter() - t0
        h = layer(h, attention_mask=mask, position_embeddings=(cos, sin), **{CACHE_KWARG: cache},
                  use_cache=cache is not None, **attn_kwargs)
        if action is not None:
            sync(device)  # time this part alone, not the queued work before it
            t0 = time.perf_counter()
            action_attention = to_visual(action.probs, kept, layout)
            sync(device)
            score_seconds += time.perf_counter() - t0 + action.seconds
    return LLMResult(h, kept, visual_keep, action_attention, n_action_rows, score_seconds, cache)
