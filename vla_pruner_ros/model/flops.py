"""LLM FLOPs as the VLA papers count them (docs/PRUNING.md, FLOPs).

Per decoder layer, a prefill over n tokens costs ``C(n) = 4 n d^2 + 2 n^2 d + 3 n d m`` (width d, MLP
width m). A cached decoding step with a KV length of s costs ``4 d^2 + 2 s d + 3 d m``.
"""

from __future__ import annotations

from .config import VLAConfig


def prefill_flops(n: int, d: int, m: int) -> float:
    return 4.0 * n * d * d + 2.0 * n * n * d + 3.0 * n * d * m


def decode_flops(kv_len: int, d: int, m: int) -> float:
    return 4.0 * d * d + 2.0 * kv_len * d + 3.0 * d * m


def llm_flops(config: VLAConfig, seq_len: int, kept_len: int, prune_layer: int, decode_steps: int = 0) -> float:
    """FLOPs of one tick's LLM: K layers on ``seq_len`` tokens, the rest on ``kept_len``, then decoding."""
    d = config.llm_dim
    m = int(config.text_config["intermediate_size"])
    n_layers = config.num_layers
    k = min(prune_layer, n_layers)
    total = k * prefill_flops(seq_len, d, m) + (n_layers - k) * prefill_flops(kept_len, d, m)
    for step in range(1, decode_steps + 1):
        total += k * decode_flops(seq_len + step, d, m) + (n_layers - k) * decode_flops(kept_len + step, d, m)
    return total
