"""Pruning mechanics of the model: exactness at keep 1.0, equality with an independent reference,
KV-cached decoding, and the action-query attention used by temporal methods."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny
from reference_llama import ReferenceLlama, allowed_mask

from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.model.interface import PruneSpec
from vla_pruner_ros.model.tokenizer import encode_prompt
from vla_pruner_ros.pruning import TemporalState, build_pruner

TOL = 1e-4  # float32 model vs float64 reference, hidden states of unit scale


def _inputs(model, tokenizer, seed: int = 0, instruction: str = "pick up the red cube"):
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(1, cfg.num_cameras, 6, cfg.image_size, cfg.image_size, generator=g)
    ids = torch.tensor([encode_prompt(tokenizer, cfg.prompt_template.format(instruction=instruction), None)])
    proprio = torch.randn(1, cfg.proprio_dim, generator=g) if cfg.proprio_dim else None
    return px, ids, proprio


def _all_tokens(inp):
    return torch.arange(inp.layout.num_visual).unsqueeze(0)


@pytest.mark.parametrize("head", ["tokens", "chunk"])
@pytest.mark.parametrize("cameras", [1, 2])
def test_keep_all_reproduces_unpruned_exactly(head, cameras):
    model, tok = tiny(head, cameras, 4 if head == "chunk" else 0)
    px, ids, pr = _inputs(model, tok)
    with torch.no_grad():
        ref = model.predict(px, ids, pr)
        for layer in (1, 2, 3):
            out = model.predict(px, ids, pr, PruneSpec(layer, _all_tokens, "last", action_layer=2))
            assert torch.equal(out.actions, ref.actions), f"layer {layer}"
            if head == "tokens":
                assert torch.equal(out.token_ids, ref.token_ids)


def _reference_forward(ref: ReferenceLlama, embeds, layout, k: int, keep_ratio: float, extra=None):
    """Reference pruned forward: returns (final normed hidden (T', d), kept original rows, last-row scores)."""
    h = embeds[0].double()
    if extra is not None:
        h = torch.cat([h, extra.double()], dim=0)
    n = h.shape[0]
    orig = torch.arange(n)
    act = torch.arange(*layout.actions) if layout.actions[1] > layout.actions[0] else None
    allowed = allowed_mask(orig, act)
    for i in range(k):
        if i == k - 1:
            probs = ref.attention_probs(i, h, orig, allowed).mean(0)  # (T, T), heads averaged
            scores = probs[layout.text[1] - 1, layout.visual_start:layout.visual_end]
        h = ref.layer(i, h, orig, allowed)
    keep = []
    for start, end in layout.visual:
        lo, hi = start - layout.visual_start, end - layout.visual_start
        m = round(keep_ratio * (hi - lo))
        keep.append(torch.topk(scores[lo:hi], m).indices.sort().values + lo)
    kept = torch.cat([orig[:layout.visual_start], torch.cat(keep) + layout.visual_start, orig[layout.visual_end:]])
    h, pos = h[kept], orig[kept]
    allowed = allowed_mask(pos, act)
    for i in range(k, len(ref.layers)):
        h = ref.layer(i, h, pos, allowed)
    return h, kept


@pytest.mark.parametrize("head,cameras,k,keep", [
    ("tokens", 1, 3, 0.25), ("tokens", 2, 1, 0.5), ("chunk", 1, 2, 0.25), ("chunk", 2, 3, 0.125),
])
def test_pruned_forward_matches_reference(head, cameras, k, keep):
    model, tok = tiny(head, cameras, 4 if head == "chunk" else 0)
    px, ids, pr = _inputs(model, tok, seed=1)
    ref = ReferenceLlama(model.language_model)
    spec = build_pruner("fastv", keep_ratio=keep, layer=k).prune_spec(model.config, TemporalState())
    with torch.no_grad():
        visual = model.encode_images(px)
        embeds, layout = model.build_inputs(visual, ids, pr)
        out = model.run_llm(embeds, layout, spec, visual=visual)
        h_ref, kept_ref = _reference_forward(ref, embeds, layout, k, keep)
        assert torch.equal(out.kept[0], kept_ref)
        assert torch.allclose(out.hidden[0].double(), ref.norm(h_ref), atol=TOL)
        pred = model.predict(px, ids, pr, spec)
        if head == "chunk":
            rows = torch.nonzero((kept_ref >= layout.actions[0]) & (kept_ref < layout.actions[1])).squeeze(1)
            assert len(rows) == model.config.num_action_queries
            actions = model.action_head(ref.norm(h_ref)[rows].float().unsqueeze(0))
            assert torch.allclose(pred.actions, actions, atol=TOL)
        else:
            # Greedy decoding without a cache, every step recomputed by the reference.
            tokens = []
            for _ in range(model.config.action_dim):
                extra = model.language_model.model.embed_tokens(torch.tensor(tokens)) if tokens else None
                h, _ = _reference_forward(ref, embeds, layout, k, keep, extra)
                logits = ref.logits(h[-1])
                tokens.append(int(logits.argmax()))
            assert pred.token_ids[0].tolist() == tokens


@pytest.mark.parametrize("cameras,k,keep", [(1, 3, 0.25), (2, 2, 0.125), (1, 1, 0.5)])
def test_kv_cached_decoding_equals_uncached(cameras, k, keep):
    model, tok = tiny("tokens", cameras)
    for seed in range(3):
        px, ids, _ = _inputs(model, tok, seed=seed)
        with torch.no_grad():
            spec = build_pruner("fastv", keep_ratio=keep, layer=k).prune_spec(model.config, TemporalState())
            cached = model.predict(px, ids, None, spec, use_cache=True)
            uncached = model.predict(px, ids, None, spec, use_cache=False)
        assert torch.equal(cached.visual_keep, uncached.visual_keep)
        assert cached.token_ids.tolist() == uncached.token_ids.tolist()


def _scatter(probs_rows, kept, layout):
    out = torch.zeros(layout.num_visual, dtype=torch.float64)
    for col, orig in enumerate(kept.tolist()):
        if layout.visual_start <= orig < layout.visual_end:
            out[orig - layout.visual_start] += probs_rows[:, col].sum()
    return out


@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_action_attention_matches_reference(head):
    """Mean attention of the action queries at a middle layer, scattered to original visual indices."""
    model, tok = tiny(head, 1, 4 if head == "chunk" else 0)
    px, ids, pr = _inputs(model, tok, seed=2)
    k, a, keep = 1, 2, 0.25
    ref = ReferenceLlama(model.language_model)
    base = build_pruner("fastv", keep_ratio=keep, layer=k).prune_spec(model.config, TemporalState())
    spec = PruneSpec(base.layer, base.select, base.query, action_layer=a)
    with torch.no_grad():
        pred = model.predict(px, ids, pr, spec)
        visual = model.encode_images(px)
        embeds, layout = model.build_inputs(visual, ids, pr)
        act = torch.arange(*layout.actions) if head == "chunk" else None
        total = torch.zeros(layout.num_visual, dtype=torch.float64)
        steps = 1 if head == "chunk" else model.config.action_dim
        for step in range(steps):
            extra = None
            if step:
                extra = model.language_model.model.embed_tokens(pred.token_ids[0, :step])
            h = embeds[0].double() if extra is None else torch.cat([embeds[0].double(), extra.double()])
            _, kept = _reference_forward(ref, embeds, layout, k, keep, extra)
            orig = torch.arange(h.shape[0])
            allowed = allowed_mask(orig, act)
            for i in range(k):
                h = ref.layer(i, h, orig, allowed)
            h, pos = h[kept], kept
            allowed = allowed_mask(pos, act)
            for i in range(k, a):
                h = ref.layer(i, h, pos, allowed)
            probs = ref.attention_probs(a, h, pos, allowed).mean(0)  # (T', T')
            rows = torch.isin(pos, act) if head == "chunk" else torch.arange(len(pos)) == len(pos) - 1
            total += _scatter(probs[rows], kept, layout)
        n_queries = model.config.num_action_queries if head == "chunk" else steps
        expected = total / n_queries
    assert pred.action_attention.shape == (1, layout.num_visual)
    assert torch.allclose(pred.action_attention[0].double(), expected, atol=1e-5)
    pruned = torch.ones(layout.num_visual, dtype=torch.bool)
    pruned[pred.visual_keep[0]] = False
    assert torch.all(pred.action_attention[0][pruned] == 0)


def test_prune_layer_out_of_range_is_rejected():
    model, tok = tiny("tokens")
    px, ids, _ = _inputs(model, tok)
    with pytest.raises(SettingsError, match="prune layer K=9"):
        model.predict(px, ids, None, PruneSpec(9, _all_tokens))


def test_selector_output_is_validated():
    model, tok = tiny("tokens")
    px, ids, _ = _inputs(model, tok)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.predict(px, ids, None, PruneSpec(1, lambda s: torch.tensor([[3, 1, 2]])))
    with pytest.raises(ValueError, match="outside"):
        model.predict(px, ids, None, PruneSpec(1, lambda s: torch.tensor([[0, 1000]])))
