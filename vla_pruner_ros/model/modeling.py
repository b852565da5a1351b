"""OpenVLA (Prismatic) on transformers building blocks, with visual token pruning inside the LLM.

The model: fused vision backbone -> projector (fc1, GELU, fc2, GELU, fc3) -> Llama decoder with the
visual tokens right after BOS. Three action heads (``heads.py``): OpenVLA's autoregressive action tokens
(``tokens``); this project's chunked head (``chunk``: learned action query rows after the prompt, one
forward pass, causal attention plus bidirectional among the queries, an L1-regression MLP); and
OpenVLA-OFT's as published (``oft``: zeroed placeholder rows and a stop token after the prompt, attention
bidirectional over the whole sequence as OFT's transformers fork computes it, the head reading the final
hidden rows one before the placeholders, an MLP-ResNet).

Pruning (docs/PRUNING.md, "Shared mechanics"): layers ``0..K-1`` run on the full sequence; at layer K
the caller's selector picks visual tokens; hidden states are gathered to ``[prefix, kept visual
(original order), proprio, text, actions]``; each kept token keeps its original RoPE position; layers
``>= K`` cache only kept tokens; decoding continues in the original position space. The decoder layers
are transformers' own ``LlamaDecoderLayer`` (SDPA), driven by ``interface.run_pruned_layers`` (the loop
pi0 shares).

References read (not copied): openvla/openvla ``modeling_prismatic.py``, moojink/openvla-oft
``action_heads.py``, MINT-SJTU/VLA-Pruner ``fastv_forward``.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from ..errors import InputError
from .actions import ActionTokenizer
from .attention import ATTN_IMPLEMENTATION, attention_rows, sync
from .config import VLAConfig
from .errors import ConfigError
from .flops import llm_flops
from .heads import ProprioProjector, build_action_head
from .interface import (
    CACHE_KWARG,
    KVCache,
    Layout,
    LLMResult,
    Prediction,
    PruneSpec,
    run_pruned_layers,
    to_visual,
)
from .tokenizer import encode_prompt
from .vision import FusedVisionBackbone, preprocess_images


class Projector(nn.Module):
    """OpenVLA's ``fused-gelu-mlp``: fc1 (D -> 4D), GELU, fc2 (4D -> d), GELU, fc3 (d -> d)."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class VLAModel(nn.Module):
    """OpenVLA-family VLA. Parameter names follow transformers; ``checkpoint.py`` maps OpenVLA's."""

    def __init__(self, config: VLAConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_backbone = FusedVisionBackbone(config)
        self.projector = Projector(config.vision_dim, config.llm_dim)
        llm_config = LlamaConfig(**config.text_config, attn_implementation=ATTN_IMPLEMENTATION)
        self.language_model = LlamaForCausalLM(llm_config)
        self.action_head = build_action_head(config)
        self.proprio_projector = ProprioProjector(config.proprio_dim, config.llm_dim) if config.proprio_dim else None
        self.vision_backbone.reset_unused_parameters()

    @property
    def device(self) -> torch.device:
        return self.projector.fc1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projector.fc1.weight.dtype

    @property
    def layers(self) -> nn.ModuleList:
        return self.language_model.model.layers

    # ---- family interface (family.py) -------------------------------------------------------------
    def prompt_ids(self, tokenizer, instruction: str) -> list[int]:
        """As OpenVLA builds the prompt: the instruction lower-cased, punctuation kept."""
        prompt = self.config.prompt_template.format(instruction=instruction.lower())
        return encode_prompt(tokenizer, prompt, self.config.prompt_suffix_token_id)

    def preprocess(self, images: list) -> torch.Tensor:
        """RGB frames -> pixel_values (1, cams, 6, S, S)."""
        return preprocess_images(images, self.config).unsqueeze(0)

    def proprio_input(self, normalized) -> torch.Tensor:
        return torch.as_tensor(normalized, dtype=torch.float32).unsqueeze(0)

    def tick_flops(self, prompt_len: int, kept_visual: int, prune_layer: int) -> tuple[float, float]:
        """(this tick's, unpruned) LLM FLOPs for a prompt of ``prompt_len`` ids (BOS included)."""
        cfg = self.config
        seq_len = prompt_len + cfg.num_visual_tokens + cfg.num_tail_rows + (1 if cfg.proprio_dim else 0)
        kept_len = seq_len - cfg.num_visual_tokens + kept_visual
        steps = cfg.action_dim - 1 if cfg.head == "tokens" else 0
        return (llm_flops(cfg, seq_len, kept_len, prune_layer, steps),
                llm_flops(cfg, seq_len, seq_len, cfg.num_layers, steps))

    # ---- inputs ---------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, cams, 6, S, S) -> projected visual tokens (B, cams*M, d)."""
        b, cams = pixel_values.shape[:2]
        if cams != self.config.num_cameras:
            raise InputError(f"got {cams} camera image(s); the model expects num_cameras={self.config.num_cameras}")
        feats = self.vision_backbone(pixel_values.flatten(0, 1).to(self.dtype))  # (B*cams, M, Dv)
        return self.projector(feats).reshape(b, cams * feats.shape[1], -1)  # (B, cams*M, d)

    def build_inputs(self, visual: torch.Tensor, input_ids: torch.Tensor,
                     proprio: torch.Tensor | None = None) -> tuple[torch.Tensor, Layout]:
        """[BOS, visual, proprio?, prompt text (without BOS), action rows?, stop?] -> (B, L, d), Layout."""
        cfg = self.config
        b, m = visual.shape[:2]
        embed = self.language_model.model.embed_tokens
        tok = embed(input_ids)  # (B, T, d), T includes BOS
        parts = [tok[:, :1], visual]
        per_cam = m // cfg.num_cameras
        visual_spans = tuple((1 + c * per_cam, 1 + (c + 1) * per_cam) for c in range(cfg.num_cameras))
        pos = 1 + m
        proprio_row = None
        if self.proprio_projector is not None:
            if proprio is None:
                raise InputError(f"this model needs proprio of size {cfg.proprio_dim}; got none")
            parts.append(self.proprio_projector(proprio.to(self.dtype)).unsqueeze(1))
            proprio_row, pos = pos, pos + 1
        parts.append(tok[:, 1:])
        text = (pos, pos + input_ids.shape[1] - 1)
        pos = text[1]
        actions = (pos, pos)
        readout = (pos, pos)
        if cfg.head == "chunk":
            parts.append(self.action_head.queries.unsqueeze(0).expand(b, -1, -1))
            actions = readout = (pos, pos + cfg.num_action_queries)
            pos = actions[1]
        elif cfg.head == "oft":  # placeholder rows with zero embeddings, then the stop token
            stop = embed(torch.full((b, 1), cfg.stop_token_id, dtype=input_ids.dtype, device=input_ids.device))
            parts += [torch.zeros(b, cfg.num_action_queries, tok.shape[-1], dtype=tok.dtype, device=tok.device), stop]
            actions = (pos, pos + cfg.num_action_queries)
            readout = (pos - 1, actions[1] - 1)  # OFT reads from the last prompt row: one before the placeholders
            pos = actions[1] + 1
        layout = Layout(pos, visual_spans, proprio_row, text, actions, readout, causal=cfg.head != "oft")
        return torch.cat(parts, dim=1), layout

    # ---- LLM ------------------------------------------------------------------------------------
    def run_llm(self, embeds: torch.Tensor, layout: Layout, prune: PruneSpec | None = None,
                cache: KVCache | None = None, visual: torch.Tensor | None = None) -> LLMResult:
        """Prefill (or a full no-cache pass) with optional pruning at layer ``prune.layer``; the hidden states
        after the final norm. ``visual``: the projector output (B, M, d) handed to the selector."""
        def action_rows(kept: torch.Tensor) -> torch.Tensor:
            if layout.readout[1] > layout.readout[0]:  # the rows the head decodes from
                return torch.nonzero((kept[0] >= layout.readout[0]) & (kept[0] < layout.readout[1])).squeeze(1)
            return torch.tensor([kept.shape[1] - 1], device=kept.device)  # tokens head: the last prompt row

        res = run_pruned_layers(self.layers, self.language_model.model.rotary_emb, embeds, layout, prune, cache,
                                visual, prune.action_layer if prune is not None else None, action_rows)
        res.hidden = self.language_model.model.norm(res.hidden)
        return res

    def decode_step(self, token: torch.Tensor, position: int, cache: KVCache, layer_kept: list[torch.Tensor],
                    layout: Layout, action_layer: int | None) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """One cached decoding step of tokens (B, 1) at original ``position``.

        Returns logits (B, V), this step's action attention (B, M) or None, and the seconds spent on it.
        """
        h = self.language_model.model.embed_tokens(token)  # (B, 1, d)
        pos = torch.full_like(token, position)
        cos, sin = self.language_model.model.rotary_emb(h, pos)
        attention = None
        seconds = 0.0
        for i, layer in enumerate(self.layers):
            h_in = h
            h = layer(h, attention_mask=None, position_embeddings=(cos, sin), **{CACHE_KWARG: cache}, use_cache=True)
            if action_layer == i:
                t0 = time.perf_counter()
                # This step's query against the layer's cached keys (which now include itself).
                keys = cache.keys[i]
                probs = attention_rows(layer.self_attn, layer.input_layernorm(h_in), cos, sin, keys, None)  # (B,1,S)
                decoded = keys.shape[-2] - layer_kept[i].shape[1]
                kept = torch.cat([layer_kept[i], torch.full_like(layer_kept[i][:, :1], -1).expand(-1, decoded)], 1)
                attention = to_visual(probs, kept, layout)
                seconds += time.perf_counter() - t0
        logits = self.language_model.lm_head(self.language_model.model.norm(h))[:, -1]
        return logits, attention, seconds

    # ---- prediction -----------------------------------------------------------------------------
    def predict(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, proprio: torch.Tensor | None = None,
                prune: PruneSpec | None = None, use_cache: bool = True, generator: torch.Generator | None = None
                ) -> Prediction:
        """One control tick's forward: normalised actions (B, chunk_len, action_dim). Deterministic: the
        ``generator`` of the family interface is not used."""
        timings: dict[str, float] = {}
        device = self.device
        t0 = time.perf_counter()
        visual = self.encode_images(pixel_values.to(device))
        embeds, layout = self.build_inputs(visual, input_ids.to(device), proprio)
        sync(device)
        timings["vision"] = time.perf_counter() - t0
        if self.action_head is not None:
            t0 = time.perf_counter()
            res = self.run_llm(embeds, layout, prune, visual=visual)
            rows = torch.nonzero((res.kept[0] >= layout.readout[0]) & (res.kept[0] < layout.readout[1])).squeeze(1)
            actions = self.action_head(res.hidden[:, rows])
            sync(device)
            timings["prefill"], timings["decode"] = time.perf_counter() - t0, 0.0
            timings["select"] = res.score_seconds
            att = res.action_attention / res.action_queries if res.action_attention is not None else None
            return Prediction(actions, res.visual_keep, att, None, timings)
        return self._predict_tokens(embeds, layout, visual, prune, use_cache, timings)

    def _predict_tokens(self, embeds: torch.Tensor, layout: Layout, visual: torch.Tensor, prune: PruneSpec | None,
                        use_cache: bool, timings: dict[str, float]) -> Prediction:
        cfg = self.config
        device = embeds.device
        action_layer = prune.action_layer if prune is not None else None
        t0 = time.perf_counter()
        cache = KVCache(len(self.layers)) if use_cache else None
        res = self.run_llm(embeds, layout, prune, cache=cache, visual=visual)
        logits = self.language_model.lm_head(res.hidden[:, -1])
        sync(device)
        timings["prefill"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokens = [logits.argmax(-1)]
        attention_sum, queries = res.action_attention, res.action_queries
        score_seconds = res.score_seconds
        if use_cache:
            full = torch.arange(layout.length, device=device).expand(embeds.shape[0], -1)
            k = prune.layer if prune is not None else len(self.layers)
            layer_kept = [full if i < k else res.kept for i in range(len(self.layers))]
            for step in range(1, cfg.action_dim):
                logits, att, seconds = self.decode_step(tokens[-1].unsqueeze(1), layout.length + step - 1, cache,
                                                        layer_kept, layout, action_layer)
                score_seconds += seconds
                tokens.append(logits.argmax(-1))
                if att is not None:
                    attention_sum, queries = attention_sum + att, queries + 1
        else:  # reference path: rerun the whole sequence each step on the same kept visual tokens
            keep = res.visual_keep
            for step in range(1, cfg.action_dim):
                ids = torch.stack(tokens, dim=1)  # (B, step)
                ext = torch.cat([embeds, self.language_model.model.embed_tokens(ids)], dim=1)
                fixed = None if prune is None else PruneSpec(prune.layer, lambda _s, k=keep: k)
                out = self.run_llm(ext, layout.extended(step), fixed)
                tokens.append(self.language_model.lm_head(out.hidden[:, -1]).argmax(-1))
        sync(device)
        timings["decode"] = time.perf_counter() - t0
        timings["select"] = score_seconds
        token_ids = torch.stack(tokens, dim=1)  # (B, A)
        tokenizer = ActionTokenizer(cfg.action_base, cfg.n_action_bins)
        actions = torch.from_numpy(tokenizer.decode(token_ids.cpu().numpy())).float().unsqueeze(1)  # (B, 1, A)
        att = attention_sum / queries if attention_sum is not None else None
        return Prediction(actions, res.visual_keep, att, token_ids, timings)


def build_model(config: VLAConfig, seed: int | None = 0, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> VLAModel:
    """A model with seeded random weights (``device='meta'`` builds the layout only)."""
    if config.num_layers < 1:
        raise ConfigError(f"num_hidden_layers={config.num_layers} must be >= 1")
    if seed is not None and str(device) != "meta":
        torch.manual_seed(seed)
    with torch.device(device):
        model = VLAModel(config)
    return model.to(dtype=dtype).eval()
