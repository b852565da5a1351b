"""Attention masks for a (possibly pruned) layout, and attention probabilities for a few query rows.

Every decoder layer runs SDPA. Where a pruning method needs attention probabilities, they are
computed for just the needed query rows against the layer's full key set: ``softmax(q k^T /
sqrt(d_h))`` with q and k after RoPE, averaged over heads (docs/PRUNING.md, "Shared mechanics"). When the
layer runs on the same tokens anyway, they come from inside it: the LLM's attention implementation
``sdpa_rows`` is transformers' SDPA plus, for a layer asked with ``RowRequest``, those rows from the
query and key states the layer has just projected (no second projection). Where the rows are needed
before the layer runs (pruning before layer 0 from layer-0 attention), ``attention_rows`` recomputes
them from the layer's inputs.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

ATTN_IMPLEMENTATION = "sdpa_rows"


@dataclass
class RowRequest:
    """Rows whose head-averaged attention a layer should report while it runs (``probs``: (B, R, S))."""

    rows: torch.Tensor  # (R,) query rows in the layer's current layout
    allowed: torch.Tensor | None  # (B, R, S), True where the row may attend; None = every key
    probs: torch.Tensor | None = None
    seconds: float = 0.0  # spent computing them


def sync(device: torch.device) -> None:
    """Wait for the GPU, so that a wall-clock reading covers the work queued before it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def request_rows(attn: nn.Module, request: RowRequest) -> RowRequest:
    """Ask the attention module for ``request``'s rows on its next forward pass."""
    attn.__dict__.setdefault("_row_requests", []).append(request)
    return request


def _sdpa_rows(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, scaling: float | None = None, **kwargs):
    """transformers' SDPA attention, answering the module's pending ``RowRequest``s on the way."""
    out = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    requests = module.__dict__.pop("_row_requests", None)
    for request in requests or ():
        sync(query.device)
        t0 = time.perf_counter()
        q = query[:, :, request.rows]  # (B, H, R, hd), after RoPE
        request.probs = _row_probs(q, key, scaling if scaling is not None else module.scaling, request.allowed)
        sync(query.device)
        request.seconds = time.perf_counter() - t0
    return out


AttentionInterface.register(ATTN_IMPLEMENTATION, _sdpa_rows)
# transformers' own mask builders (a wrapped model's own methods, e.g. PI0's sample_actions) treat it as SDPA
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def _row_probs(q: torch.Tensor, keys: torch.Tensor, scaling: float, allowed: torch.Tensor | None) -> torch.Tensor:
    """Head-averaged softmax(q k^T * scaling) (B, R, S) of queries (B, H, R, hd) against keys (B, kv, S, hd)."""
    k = repeat_kv(keys, q.shape[1] // keys.shape[1])  # (B, H, S, hd)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling  # (B, H, R, S)
    if allowed is not None:
        scores = scores.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    return scores.softmax(dim=-1).mean(dim=1)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (B, heads, T, hd) with cos/sin (B, T, hd)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def layout_mask(kept: torch.Tensor, is_action: torch.Tensor | None, causal: bool = True) -> torch.Tensor | None:
    """Boolean SDPA mask (B, 1, T, T) for kept original indices (B, T), True = may attend.

    Causal in original order (kept indices are sorted, so layout order is original order), plus
    bidirectional attention among action query rows. ``None`` when plain causal suffices, or when the
    layout is not causal at all (the caller then runs SDPA with ``is_causal=False``). When the action
    rows end the layout (chunk heads) the mask depends only on the lengths: built once per shape.
    """
    if not causal or is_action is None or not bool(is_action.any()):
        return None
    t = kept.shape[1]
    if bool(is_action[-1]):  # one block of action rows ends the layout, and pruning never drops them
        return _tail_block_mask(t, int(is_action.sum()), kept.device).expand(kept.shape[0], -1, -1, -1)
    act = is_action[kept]  # (B, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=kept.device).tril()
    mask = causal.unsqueeze(0) | (act.unsqueeze(2) & act.unsqueeze(1))  # (B, T, T)
    return mask.unsqueeze(1)


@functools.lru_cache(maxsize=32)
def _tail_block_mask(t: int, n_action: int, device: torch.device) -> torch.Tensor:
    """(1, 1, t, t): causal, and the last ``n_action`` rows attend to each other (shared: never modified)."""
    mask = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    mask[t - n_action:, t - n_action:] = True
    return mask[None, None]


def layer_keys(attn: nn.Module, x_normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Post-RoPE keys (B, kv_heads, T, hd) of one attention module for normed inputs (B, T, d)."""
    b, t, _ = x_normed.shape
    k = attn.k_proj(x_normed).view(b, t, -1, attn.head_dim).transpose(1, 2)
    return rope(k, cos, sin)


def attention_rows(attn: nn.Module, x_rows: torch.Tensor, cos_rows: torch.Tensor, sin_rows: torch.Tensor,
                   keys: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Head-averaged attention probabilities (B, R, S) of R query rows against S keys.

    Args:
        attn: the layer's ``LlamaAttention`` (its q_proj and head layout are used).
        x_rows: normed layer inputs of the query rows (B, R, d).
        cos_rows, sin_rows: rotary tables at the query rows' original positions (B, R, hd).
        keys: post-RoPE keys (B, kv_heads, S, hd).
        allowed: boolean (B, R, S), True where the query may attend; None = all keys.
    """
    b, r, _ = x_rows.shape
    q = attn.q_proj(x_rows).view(b, r, -1, attn.head_dim).transpose(1, 2)  # (B, H, R, hd)
    return _row_probs(rope(q, cos_rows, sin_rows), keys, attn.scaling, allowed)
