"""An independent float64 pi0 action sampler, written from the pi0 equations (Gemma layers, the expert
attending to the prefix's per-layer keys and values, Euler flow matching from t = 1 to 0).

It reads only the weights of transformers' PI0 modules and shares no code with the model package, so tests
can check the pruned forward (which rows are kept, their original positions, the expert's per-layer key sets
and masks, the averaged action attention) against it.
"""

from __future__ import annotations

import math

import torch


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma's RMSNorm: the weight is stored as an offset from 1."""
    return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) * (1.0 + weight.double())


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """x (T, heads, hd) rotated by the half-split convention at integer positions (T,)."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = positions.double()[:, None] * inv[None, :]
    cos, sin = torch.cat([freqs, freqs], -1).cos()[:, None], torch.cat([freqs, freqs], -1).sin()[:, None]
    half = hd // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


class GemmaStack:
    """The layers of one Gemma model (the VLM's language model or the action expert)."""

    def __init__(self, gemma) -> None:
        cfg = gemma.config
        self.layers = gemma.layers
        self.final = gemma.norm.weight
        self.eps = cfg.rms_norm_eps
        self.heads, self.kv_heads, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.theta = cfg.rope_parameters["rope_theta"]

    def qkv(self, i: int, h: torch.Tensor, positions: torch.Tensor):
        a = self.layers[i].self_attn
        x = rms_norm(h, self.layers[i].input_layernorm.weight, self.eps)
        t = x.shape[0]
        q = (x @ a.q_proj.weight.double().T).view(t, self.heads, self.hd)
        k = (x @ a.k_proj.weight.double().T).view(t, self.kv_heads, self.hd)
        v = (x @ a.v_proj.weight.double().T).view(t, self.kv_heads, self.hd)
        return rope(q, positions, self.theta), rope(k, positions, self.theta), v

    def finish(self, i: int, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of layer i given queries and the full key/value set: (new h, per-head probabilities)."""
        layer = self.layers[i]
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(self.hd)
        probs = scores.masked_fill(~allowed[None], float("-inf")).softmax(-1)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(h.shape[0], -1)
        h = h + out @ layer.self_attn.o_proj.weight.double().T
        x = rms_norm(h, layer.post_attention_layernorm.weight, self.eps)
        m = layer.mlp
        mlp = (gelu_tanh(x @ m.gate_proj.weight.double().T) * (x @ m.up_proj.weight.double().T)) @ \
            m.down_proj.weight.double().T
        return h + mlp, probs


def time_embedding(hf, t: float, n: int) -> torch.Tensor:
    cfg = hf.config
    width = cfg.dit_config.hidden_size
    fraction = torch.linspace(0.0, 1.0, width // 2, dtype=torch.float64)
    period = cfg.min_period * (cfg.max_period / cfg.min_period) ** fraction
    angle = 2 * math.pi / period * t
    return torch.cat([angle.sin(), angle.cos()]).expand(n, -1)


def linear(module, x: torch.Tensor) -> torch.Tensor:
    return x @ module.weight.double().T + module.bias.double()


def reference_sample(hf, prefix: torch.Tensor, visual: tuple[int, int], keep: torch.Tensor | None, k: int,
                     state: torch.Tensor, noise: torch.Tensor, steps: int, action_layer: int | None = None):
    """Actions (chunk, max_action_dim) and the action rows' attention to each visual token (M,), averaged over
    heads, rows and steps (None without ``action_layer``).

    prefix: (T, d) embedded prefix (images then prompt); visual: the [start, end) rows of the visual tokens;
    keep: kept visual indices (0-based over [start, end)), pruned after k layers (None: nothing pruned).
    """
    vlm, expert = GemmaStack(hf.model.vlm.language_model), GemmaStack(hf.model.dit)
    e = hf.embed_action_time
    t_len = prefix.shape[0]
    rows = torch.arange(t_len)  # original row of each current row
    h = prefix.double()
    keys, values, originals = [], [], []
    for i in range(len(vlm.layers)):
        if keep is not None and i == k:
            start, end = visual
            rows = torch.cat([torch.arange(start), keep + start, torch.arange(end, t_len)])
            h = h[rows]
        q, kk, v = vlm.qkv(i, h, rows)
        keys.append(kk), values.append(v), originals.append(rows)
        h, _ = vlm.finish(i, h, q, kk, v, torch.ones(len(rows), len(rows), dtype=torch.bool))
    chunk = noise.shape[0]
    n = 1 + chunk
    positions = t_len + torch.arange(n)
    x_t = noise.double()
    dt = -1.0 / steps
    m = visual[1] - visual[0]
    attention = torch.zeros(m, dtype=torch.float64)
    for step in range(steps):
        t = 1.0 + step * dt
        actions = linear(e.action_in_proj, x_t)
        mixed = torch.cat([actions, time_embedding(hf, t, chunk)], -1)
        mixed = linear(e.action_time_mlp_out, torch.nn.functional.silu(linear(e.action_time_mlp_in, mixed)))
        h = torch.cat([linear(e.state_proj, state.double())[None], mixed])
        for i in range(len(expert.layers)):
            q, kk, v = expert.qkv(i, h, positions)
            s = keys[i].shape[0]
            allowed = torch.ones(n, s + n, dtype=torch.bool)
            allowed[0, s + 1:] = False  # the state row does not see the actions
            h, probs = expert.finish(i, h, q, torch.cat([keys[i], kk]), torch.cat([values[i], v]), allowed)
            if i == action_layer:
                per_key = probs.mean(0)[1:, :s].sum(0)  # action rows, mean over heads, summed over rows
                orig = originals[i]
                vis = (orig >= visual[0]) & (orig < visual[1])
                attention.index_add_(0, orig[vis] - visual[0], per_key[vis])
        velocity = linear(hf.action_out_proj, rms_norm(h, expert.final, expert.eps)[1:])
        x_t = x_t + dt * velocity
    return x_t, (attention / (chunk * steps) if action_layer is not None else None)
