"""The pruner registry and the contract every method keeps, end to end on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import frames, tiny

from vla_pruner_ros.policy import Observation, PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import PRUNERS, PrunerConfigError, UnknownPrunerError, budget, build_pruner


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UnknownPrunerError, match=r"unknown pruning method 'fastvv'; valid methods: \['divprune', "):
        build_pruner("fastvv")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(PrunerConfigError, match=r"no parameter\(s\) \['gamma'\]; valid parameters: \['keep_ratio'"):
        build_pruner("fastv", gamma=0.8)
    with pytest.raises(PrunerConfigError, match=r"'window'"):
        build_pruner("vla_pruner", windw=3)


@pytest.mark.parametrize("method,params,match", [
    ("random", {"keep_ratio": 0.0}, r"keep_ratio=0.0 must be in \(0, 1\]"),
    ("random", {"keep_ratio": 1.5}, r"keep_ratio=1.5 must be in \(0, 1\]"),
    ("random", {"keep_ratio": "half"}, r"keep_ratio='half' must be in \(0, 1\]"),
    ("fastv", {"layer": 0}, "fastv needs layer >= 1"),
    ("vla_pruner", {"semantic_query": "first"}, r"semantic_query='first'; expected one of \('all', 'text', 'last'\)"),
    ("vla_pruner", {"window": 0}, "window=0 must be a positive integer"),
    ("vla_pruner", {"gamma": 1.2}, r"gamma=1.2 must be in \(0, 1\]"),
    ("vla_iap", {"theta": -0.1}, r"theta=-0.1 must be in \(0, 1\]"),
    ("vla_iap", {"morph_kernel": 4}, "morph_kernel=4 must be odd"),
    ("hybrid", {"deadline_ms": -5}, "deadline_ms=-5 must be a positive number"),
    ("hybrid", {"interaction_keep_ratio": 2.0}, r"interaction_keep_ratio=2.0 must be in \(0, 1\]"),
])
def test_invalid_parameters_are_named(method, params, match):
    with pytest.raises(PrunerConfigError, match=match):
        build_pruner(method, **params)


def test_paper_defaults():
    vp = build_pruner("vla_pruner").config
    assert (vp.layer, vp.window, vp.gamma, vp.semantic_query) == (3, 3, 0.8, "last")  # the authors' advice
    iap = build_pruner("vla_iap").config
    assert (iap.theta, iap.temporal_weight, iap.layer) == (0.05, 0.5, 0)
    assert build_pruner("fastv").config.layer == 3 and build_pruner("divprune").config.layer == 0


def test_action_layer_defaults_to_the_middle_and_is_checked():
    model, tok = tiny("chunk")
    assert build_pruner("vla_pruner").action_layer(preset_like(32)) == 15
    with pytest.raises(PrunerConfigError, match="action_layer=7 must be below the model's 4 layers"):
        VLAPolicy(model, tok, build_pruner("vla_pruner", keep_ratio=0.5, layer=1, action_layer=7))


def preset_like(layers: int):
    from vla_pruner_ros.model import preset

    cfg = preset("tiny")
    return cfg.replace(text_config={**cfg.text_config, "num_hidden_layers": layers})


def _params(method: str, keep: float) -> dict:
    if method == "none":
        return {}
    params = {"keep_ratio": keep}
    if method in ("fastv", "vla_pruner", "hybrid"):
        params["layer"] = 2  # the tiny model has 4 layers
    return params


@pytest.mark.parametrize("method", sorted(PRUNERS))
@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_every_method_for_20_ticks(method, head, monkeypatch):
    """Exact budget from the first tick, indices unique and in range, bounded state, resets clear history."""
    model, tok = tiny(head, 2)
    keeps: list[torch.Tensor | None] = []
    predict = model.predict

    def spy(*args, **kwargs):
        out = predict(*args, **kwargs)
        keeps.append(out.visual_keep)
        return out

    monkeypatch.setattr(model, "predict", spy)
    policy = VLAPolicy(model, tok, build_pruner(method, **_params(method, 0.25)))
    window = int(getattr(policy.pruner.config, "window", 0))
    sizes = []
    video = frames(20, seed=3)
    for tick, f in enumerate(video):
        chunk = policy.step(Observation([f, f[::-1].copy()], "pick up the red cube"))
        s = chunk.stats
        assert s.tick == tick
        expected = [budget(s.keep_ratio, 64)] * 2
        assert s.tokens_kept == expected, (tick, s.keep_ratio)
        if method != "none":
            assert s.keep_ratio == 0.25  # every tick; hybrid too: its interaction budget is the same by default
        keep = keeps[-1]
        if keep is not None:
            idx = keep[0]
            assert len(torch.unique(idx)) == len(idx) and int(idx.min()) >= 0 and int(idx.max()) < 128
        sizes.append(policy.state.nbytes())
    if window:
        assert len(policy.state.cameras) == 2 and all(len(c.attention) == window for c in policy.state.cameras)
    assert max(sizes[5:]) == sizes[-1] == max(sizes), "state must stop growing"
    snapshot = policy.state_dict()
    assert snapshot["tick"] == 20
    restored = VLAPolicy(model, tok, build_pruner(method, **_params(method, 0.25)))
    restored.load_state_dict(snapshot)
    assert restored.state_dict() == snapshot
    policy.reset()
    assert policy.state.tick == 0 and policy.state.nbytes() == 0 and policy.state.phase == "approach"
    for f in video[:2]:
        policy.step(Observation([f, f], "pick up the red cube"))
    policy.step(Observation([video[2]] * 2, "push the blue block"))
    assert policy.state.tick == 1 and policy.state.instruction == "push the blue block"
    assert all(len(c.attention) <= 1 for c in policy.state.cameras)


@pytest.mark.parametrize("method", ["random", "fastv", "vla_pruner", "hybrid"])
def test_a_warm_up_is_the_policys_and_the_same_for_every_method(method):
    model, tok = tiny("chunk")
    params = {**_params(method, 0.25), "layer": 2} if method != "random" else _params(method, 0.25)
    cold = VLAPolicy(model, tok, build_pruner(method, **params))
    kept = [cold.step(Observation([f], "pick up the red cube")).stats.tokens_kept[0] for f in frames(5)]
    assert kept == [16] * 5  # the budget from the first tick: no per-method warm-up
    warm = VLAPolicy(model, tok, build_pruner(method, **params), PolicyConfig(warmup_ticks=3))
    kept = [warm.step(Observation([f], "pick up the red cube")).stats.tokens_kept[0] for f in frames(5)]
    assert kept == [64, 64, 64, 16, 16]
    warm.reset()
    assert warm.step(Observation([frames(1)[0]], "pick up the red cube")).stats.tokens_kept == [64]


def test_warm_up_ticks_equal_the_unpruned_model():
    model, tok = tiny("tokens")
    pruned = VLAPolicy(model, tok, build_pruner("vla_pruner", keep_ratio=0.25, layer=2), PolicyConfig(warmup_ticks=3))
    plain = VLAPolicy(model, tok)
    for f in frames(3):
        a = pruned.step(Observation([f], "pick up the red cube")).actions
        b = plain.step(Observation([f], "pick up the red cube")).actions
        assert np.array_equal(a, b)
    assert len(pruned.state.cameras[0].attention) == 3  # the history filled during the warm-up


def test_vla_pruner_without_history_keeps_the_semantic_top_tokens():
    """An episode's first tick has no action history: the selection is the semantic top-M~, the same
    tokens FastV keeps when both read the last prompt row at the same layer."""
    model, tok = tiny("chunk")
    keeps = {}
    for method, params in (("vla_pruner", {"semantic_query": "last"}), ("fastv", {})):
        policy = VLAPolicy(model, tok, build_pruner(method, keep_ratio=0.25, layer=2, **params))
        keeps[method] = policy.step(Observation([frames(1)[0]], "pick up the red cube")).kept_tokens[0]
    assert len(keeps["fastv"]) == 16 and np.array_equal(keeps["vla_pruner"], keeps["fastv"])


def test_random_is_seeded_per_episode():
    model, tok = tiny("chunk")
    policy = VLAPolicy(model, tok, build_pruner("random", keep_ratio=0.25, seed=1))
    run1 = [policy.step(Observation([f], "pick up the red cube")).actions for f in frames(3)]
    policy.reset()
    run2 = [policy.step(Observation([f], "pick up the red cube")).actions for f in frames(3)]
    assert all(np.array_equal(x, y) for x, y in zip(run1, run2, strict=True))


def test_hybrid_deadline_lowers_the_keep_ratio_online():
    model, tok = tiny("chunk")
    pruner = build_pruner("hybrid", keep_ratio=0.5, layer=2, deadline_ms=1e-3, min_keep_ratio=0.1)
    policy = VLAPolicy(model, tok, pruner)
    stats = [policy.step(Observation([f], "pick up the red cube")).stats for f in frames(6)]
    assert stats[0].keep_ratio == 0.5  # no latency measured yet
    assert stats[3].keep_ratio == 0.1 and stats[3].tokens_kept == [budget(0.1, 64)]  # an unmeetable deadline
    assert len(policy.state.latency) == 6
    relaxed = VLAPolicy(model, tok, build_pruner("hybrid", keep_ratio=0.5, layer=2, deadline_ms=1e6))
    assert [relaxed.step(Observation([f], "go")).stats.keep_ratio for f in frames(5)][3:] == [0.5, 0.5]


def test_hybrid_asks_for_prefill_rows_only_where_it_reads_them():
    """hybrid reads the prefill attention on an episode's first tick only (no action history yet), unless
    semantic_candidates or a phase-dependent budget need it: on the other ticks the layer is not asked."""
    from conftest import frames, tiny

    from vla_pruner_ros.policy import Observation, PolicyConfig, VLAPolicy

    model, tok = tiny("chunk")
    for params, queries in (({}, ["last", "none", "none"]), ({"semantic_candidates": True}, ["last"] * 3),
                            ({"interaction_keep_ratio": 0.1}, ["last"] * 3)):
        pruner = build_pruner("hybrid", keep_ratio=0.25, layer=2, **params)
        policy = VLAPolicy(model, tok, pruner, PolicyConfig(dt=0.1))
        seen = []
        for t, frame in enumerate(frames(3)):
            seen.append(pruner.tick_query(policy.state))
            chunk = policy.step(Observation([frame], "pick up the red cube", stamp=float(t)))
            assert chunk.stats.tokens_kept == [16]
        assert seen == queries, params
        policy.reset()
        assert pruner.tick_query(policy.state) == "last"  # a new episode has no history again


@pytest.mark.parametrize("share, expected", [(0.5, [16, 16]), (0.75, [8, 24]), (0.25, [24, 8]), (1.0, [1, 31])])
def test_hybrid_moves_budget_between_cameras_never_the_total(share, expected):
    model, tok = tiny("chunk", 2)
    policy = VLAPolicy(model, tok, build_pruner("hybrid", keep_ratio=0.25, layer=2, last_camera_share=share))
    for t, frame in enumerate(frames(2)):
        stats = policy.step(Observation([frame, frame], "pick up the red cube", stamp=float(t))).stats
        assert stats.tokens_kept == expected and sum(stats.tokens_kept) == 2 * budget(0.25, 64)
