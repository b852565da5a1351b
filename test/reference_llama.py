"""An independent eager Llama forward in float64, written from the Llama-2 equations.

It reads only the weights of transformers' decoder layers; it shares no code with the model package,
so tests can check the pruned forward (gather, original positions, masks) against it.
"""

from __future__ import annotations

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight.double() * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = positions.double()[:, None] * inv[None, :]  # (T, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class ReferenceLlama:
    def __init__(self, llm) -> None:  # llm: transformers LlamaForCausalLM
        cfg = llm.config
        self.layers = llm.model.layers
        self.final_norm = llm.model.norm.weight
        self.lm_head = llm.lm_head.weight
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.theta = getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]

    def attention_probs(self, i: int, h: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Per-head attention probabilities (H, T, T) of layer i for hidden states h (T, d)."""
        q, k, _ = self._qkv(i, h, positions)
        scores = torch.einsum("thd,shd->hts", q, k) / self.head_dim ** 0.5
        return scores.masked_fill(~allowed[None], float("-inf")).softmax(-1)

    def _qkv(self, i: int, h: torch.Tensor, positions: torch.Tensor):
        layer = self.layers[i]
        a = layer.self_attn
        x = rms_norm(h, layer.input_layernorm.weight, self.eps)
        t = x.shape[0]
        q = (x @ a.q_proj.weight.double().T).view(t, self.heads, self.head_dim)
        k = (x @ a.k_proj.weight.double().T).view(t, self.kv_heads, self.head_dim)
        v = (x @ a.v_proj.weight.double().T).view(t, self.kv_heads, self.head_dim)
        cos, sin = rope_tables(positions, self.head_dim, self.theta)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        rep = self.heads // self.kv_heads
        return q, k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)

    def layer(self, i: int, h: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        layer = self.layers[i]
        q, k, v = self._qkv(i, h, positions)
        scores = torch.einsum("thd,shd->hts", q, k) / self.head_dim ** 0.5
        probs = scores.masked_fill(~allowed[None], float("-inf")).softmax(-1)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(h.shape[0], -1)
        h = h + out @ layer.self_attn.o_proj.weight.double().T
        x = rms_norm(h, layer.post_attention_layernorm.weight, self.eps)
        mlp = layer.mlp
        gate = torch.nn.functional.silu(x @ mlp.gate_proj.weight.double().T)
        up = x @ mlp.up_proj.weight.double().T
        return h + (gate * up) @ mlp.down_proj.weight.double().T

    def norm(self, h: torch.Tensor) -> torch.Tensor:
        return rms_norm(h, self.final_norm, self.eps)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h) @ self.lm_head.double().T


def allowed_mask(original: torch.Tensor, action_rows: torch.Tensor | None) -> torch.Tensor:
    """(T, T) boolean: causal by original index, plus all-to-all among action rows."""
    allowed = original[None, :] <= original[:, None]
    if action_rows is not None:
        act = torch.isin(original, action_rows)
        allowed = allowed | (act[:, None] & act[None, :])
    return allowed
