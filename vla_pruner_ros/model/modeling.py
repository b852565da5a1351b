"""OpenVLA (Prismatic) on transformers building blocks, with visual token pruning inside the LLM.

The model: fused vision backbone -> projector (fc1, GELU, fc2, GELU, fc3) -> Llama decoder with the
visual tokens right after BOS. Three action heads (``heads.py``): OpenVLA's autoregressive action tokens
(``tokens``); this project's chunked head (``chunk``: learned action query rows after the prompt, one
forward pass, causal attention plus bidirectional among the queries, an L1-regression MLP); and
OpenVLA-OFT's as published (``oft``: zeroed placeholder rows and a stop token after the prompt, attention
bidirectional over the whole sequence as OFT's transformers fork computes it, the head reading the final
hidden rows one before the placeholders, an MLP-ResNet).

Pruning (ALGORITHMS.md, "Mechanics"): layers ``0..K-1`` run on the full sequence; at layer K the
caller's selector picks visual tokens; hidden states are gathered to ``[prefix, kept visual (original
order), proprio, text, actions]``; each kept token keeps its original RoPE position; layers ``>= K``
cache only kept tokens; decoding continues in the original position space. The decoder layers are
transformers' own ``LlamaDecoderLayer`` (SDPA), driven by the loop in ``VLAModel.run_llm``.

References read (not copied): openvla/openvla ``modeling_prismatic.py``, moojink/openvla-oft
``action_heads.py``, MINT-SJTU/VLA-Pruner ``fastv_forward``.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from ..errors import InputError
from .actions import ActionTokenizer
from .attention import ATTN_IMPLEMENTATION, RowRequest, attention_rows, layer_keys, layout_mask, request_rows
from .config import VLAConfig
from .errors import ConfigError
from .heads import ProprioProjector, build_action_head
from .vision import FusedVisionBackbone

# The decoder layer's KV-cache argument: ``cache`` since transformers 5.2x (``past_key_values`` is
# deprecated there and removed in 5.40); older 5.x releases only know ``past_key_values``.
CACHE_KWARG = "cache" if "cache" in inspect.signature(LlamaDecoderLayer.forward).parameters else "past_key_values"

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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    def _query_rows(self, layout: Layout, which: str) -> torch.Tensor:
        if which == "last":
            return torch.tensor([layout.text[1] - 1])
        if which == "text":
            return torch.arange(*layout.text)
        return torch.arange(layout.visual_start, layout.text[1])  # "all": every prefill row (visual + text)

    @staticmethod
    def _allowed(kept: torch.Tensor, rows: torch.Tensor, is_action: torch.Tensor | None,
                 causal: bool = True) -> torch.Tensor | None:
        """Which keys (B, R, L') the layout rows ``rows`` attend to: causal, action rows among themselves;
        None (every key) in a bidirectional layout."""
        if not causal:
            return None
        kept_rows = kept[:, rows]  # (B, R) original indices of the query rows
        allowed = kept.unsqueeze(1) <= kept_rows.unsqueeze(2)  # (B, R, L') causal in original order
        if is_action is not None:
            allowed = allowed | (is_action[kept_rows].unsqueeze(2) & is_action[kept].unsqueeze(1))
        return allowed

    def _attention(self, layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   kept: torch.Tensor, rows: torch.Tensor, is_action: torch.Tensor | None,
                   layout: Layout) -> torch.Tensor:
        """Head-averaged attention (B, R, L') of layout rows ``rows`` at this layer, recomputed from its
        inputs (for when the rows are needed before the layer runs on these tokens)."""
        x = layer.input_layernorm(h)
        keys = layer_keys(layer.self_attn, x, cos, sin)
        return attention_rows(layer.self_attn, x[:, rows], cos[:, rows], sin[:, rows], keys,
                              self._allowed(kept, rows, is_action, layout.causal))

    def _to_visual(self, probs: torch.Tensor, kept: torch.Tensor, layout: Layout) -> torch.Tensor:
        """Sum of attention rows (B, R, L') scattered onto original visual indices (B, M); pruned ones 0."""
        per_key = probs.sum(dim=1)  # (B, L')
        vis = (kept >= layout.visual_start) & (kept < layout.visual_end)
        out = torch.zeros(kept.shape[0], layout.num_visual, dtype=per_key.dtype, device=per_key.device)
        idx = (kept - layout.visual_start).clamp(0, layout.num_visual - 1)
        return out.scatter_add_(1, idx, torch.where(vis, per_key, torch.zeros_like(per_key)))

    def run_llm(self, embeds: torch.Tensor, layout: Layout, prune: PruneSpec | None = None,
                cache: KVCache | None = None, visual: torch.Tensor | None = None) -> LLMResult:
        """Prefill (or a full no-cache pass) with optional pruning at layer ``prune.layer``.

        ``visual`` is the projector output (B, M, d) handed to the selector; defaults to the
        visual rows of ``embeds``.
        """
        b, length, _ = embeds.shape
        n_layers = len(self.layers)
        if prune is not None and not 0 <= prune.layer < n_layers:
            raise ConfigError(f"prune layer K={prune.layer} must be in [0, {n_layers - 1}] "
                             f"for this {n_layers}-layer LLM")
        device = embeds.device
        kept = torch.arange(length, device=device).expand(b, -1)  # (B, L) original row indices
        cos, sin = self.language_model.model.rotary_emb(embeds, kept)  # (B, L, hd) each
        is_action = layout.is_action(device)
        mask = layout_mask(kept, is_action, layout.causal)
        # a bidirectional layout runs SDPA unmasked and non-causal (as OFT's fork: no padding at inference)
        attn_kwargs = {} if layout.causal else {"is_causal": False}
        action_layer = prune.action_layer if prune is not None else None
        h = embeds
        attention = None
        visual_keep = None
        action_attention = None
        n_action_rows = 0
        score_seconds = 0.0
        semantic: RowRequest | None = None  # the semantic rows, answered by layer K-1 as it runs
        for layer in self.layers:  # no request left over from a forward pass that failed
            layer.self_attn.__dict__.pop("_row_requests", None)
        for i, layer in enumerate(self.layers):
            if prune is not None and i == prune.score_layer and prune.query != "none":
                t0 = time.perf_counter()
                rows = self._query_rows(layout, prune.query).to(device)
                if prune.score_layer < prune.layer:  # the layer runs on every token first: ask it
                    semantic = request_rows(layer.self_attn, RowRequest(rows, self._allowed(kept, rows, is_action,
                                                                                             layout.causal)))
                else:  # pruning before this layer runs: recompute from its inputs
                    probs = self._attention(layer, h, cos, sin, kept, rows, is_action, layout)
                    attention = probs[:, :, layout.visual_start:layout.visual_end].mean(dim=1)  # (B, M)
                score_seconds += time.perf_counter() - t0
            if semantic is not None and i == prune.layer:
                attention = semantic.probs[:, :, layout.visual_start:layout.visual_end].mean(dim=1)  # (B, M)
                score_seconds += semantic.seconds
            if prune is not None and i == prune.layer:
                t0 = time.perf_counter()
                vis_rows = h[:, layout.visual_start:layout.visual_end]
                selection = SelectionInput(layout, visual if visual is not None else embeds[:, layout.visual_start:
                                                                                            layout.visual_end],
                                           vis_rows, attention)
                visual_keep = _checked(prune.select(selection), layout.num_visual, b)
                kept = layout.kept_rows(visual_keep)
                idx = kept.unsqueeze(-1)
                h = h.gather(1, idx.expand(-1, -1, h.shape[-1]))
                cos = cos.gather(1, idx.expand(-1, -1, cos.shape[-1]))
                sin = sin.gather(1, idx.expand(-1, -1, sin.shape[-1]))
                mask = layout_mask(kept, is_action, layout.causal)
                score_seconds += time.perf_counter() - t0
            action: RowRequest | None = None
            if action_layer == i:  # the action queries' rows, answered by this layer as it runs
                t0 = time.perf_counter()
                if layout.readout[1] > layout.readout[0]:  # the rows the head decodes from
                    rows = torch.nonzero((kept[0] >= layout.readout[0]) & (kept[0] < layout.readout[1])).squeeze(1)
                else:  # the tokens head: the first action query is the last prompt row
                    rows = torch.tensor([kept.shape[1] - 1], device=device)
                action = request_rows(layer.self_attn, RowRequest(rows, self._allowed(kept, rows, is_action,
                                                                                             layout.causal)))
                n_action_rows = len(rows)
                score_seconds += time.perf_counter() - t0
            h = layer(h, attention_mask=mask, position_embeddings=(cos, sin), **{CACHE_KWARG: cache},
                      use_cache=cache is not None, **attn_kwargs)
            if action is not None:
                t0 = time.perf_counter()
                action_attention = self._to_visual(action.probs, kept, layout)
                score_seconds += time.perf_counter() - t0 + action.seconds
        h = self.language_model.model.norm(h)
        return LLMResult(h, kept, visual_keep, action_attention, n_action_rows, score_seconds, cache)

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
                attention = self._to_visual(probs, kept, layout)
                seconds += time.perf_counter() - t0
        logits = self.language_model.lm_head(self.language_model.model.norm(h))[:, -1]
        return logits, attention, seconds

    # ---- prediction -----------------------------------------------------------------------------
    def predict(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, proprio: torch.Tensor | None = None,
                prune: PruneSpec | None = None, use_cache: bool = True) -> Prediction:
        """One control tick's forward: normalised actions (B, chunk_len, action_dim)."""
        timings: dict[str, float] = {}
        device = self.device
        t0 = time.perf_counter()
        visual = self.encode_images(pixel_values.to(device))
        embeds, layout = self.build_inputs(visual, input_ids.to(device), proprio)
        _sync(device)
        timings["vision"] = time.perf_counter() - t0
        if self.action_head is not None:
            t0 = time.perf_counter()
            res = self.run_llm(embeds, layout, prune, visual=visual)
            rows = torch.nonzero((res.kept[0] >= layout.readout[0]) & (res.kept[0] < layout.readout[1])).squeeze(1)
            actions = self.action_head(res.hidden[:, rows])
            _sync(device)
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
        _sync(device)
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
        _sync(device)
        timings["decode"] = time.perf_counter() - t0
        timings["select"] = score_seconds
        token_ids = torch.stack(tokens, dim=1)  # (B, A)
        tokenizer = ActionTokenizer(cfg.action_base, cfg.n_action_bins)
        actions = torch.from_numpy(tokenizer.decode(token_ids.cpu().numpy())).float().unsqueeze(1)  # (B, 1, A)
        att = attention_sum / queries if attention_sum is not None else None
        return Prediction(actions, res.visual_keep, att, token_ids, timings)


def _checked(keep: torch.Tensor, num_visual: int, batch: int) -> torch.Tensor:
    """Validate a selector's output: (B, Mk) sorted, unique, in range."""
    if keep.dim() != 2 or keep.shape[0] != batch:
        raise ValueError(f"selector returned shape {tuple(keep.shape)}; expected (batch={batch}, kept)")
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= num_visual):
        raise ValueError(f"selector returned indices outside [0, {num_visual})")
    if keep.shape[1] > 1 and not bool((keep[:, 1:] > keep[:, :-1]).all()):
        raise ValueError("selector must return strictly increasing (sorted, unique) visual indices")
    return keep.long()


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
