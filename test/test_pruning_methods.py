"""The pruner registry and the contract every method keeps."""

from __future__ import annotations

import pytest
import torch
from conftest import frames, tiny

from vla_pruner_ros.model.modeling import Layout, SelectionInput
from vla_pruner_ros.policy import Observation, VLAPolicy
from vla_pruner_ros.pruning import PRUNERS, PrunerConfigError, UnknownPrunerError, budget, build_pruner


def test_unknown_method_lists_valid_ones():
    with pytest.raises(UnknownPrunerError, match=r"unknown pruning method 'fastvv'; valid methods: \['fastv', "):
        build_pruner("fastvv")


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(PrunerConfigError, match=r"no parameter\(s\) \['gamma'\]; valid parameters: \['keep_ratio'"):
        build_pruner("fastv", gamma=0.8)


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, "half"])
def test_keep_ratio_outside_range(value):
    with pytest.raises(PrunerConfigError, match="keep_ratio=.* must be in \\(0, 1\\]"):
        build_pruner("random", keep_ratio=value)


def test_fastv_needs_a_layer_before_pruning():
    with pytest.raises(PrunerConfigError, match="fastv needs layer >= 1"):
        build_pruner("fastv", layer=0)


def test_budget_rounds_and_keeps_one():
    assert budget(0.25, 256) == 64 and budget(0.125, 256) == 32 and budget(0.001, 64) == 1 and budget(1.0, 7) == 7


def _selection(m=64, cams=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    layout = Layout(1 + m * cams + 10, tuple((1 + c * m, 1 + (c + 1) * m) for c in range(cams)), None,
                    (1 + m * cams, 1 + m * cams + 10), (1 + m * cams + 10,) * 2)
    att = torch.rand(1, m * cams, generator=g)
    return SelectionInput(layout, torch.randn(1, m * cams, 8, generator=g), torch.randn(1, m * cams, 8, generator=g),
                          att)


@pytest.mark.parametrize("method", sorted(PRUNERS))
@pytest.mark.parametrize("keep", [0.5, 0.125])
def test_contract_sorted_unique_in_range_per_camera_budget(method, keep):
    pruner = build_pruner(method) if method == "none" else build_pruner(method, keep_ratio=keep)
    inp = _selection(cams=2)
    keep_idx = pruner._select_all(inp)
    expected = 128 if method == "none" else 2 * budget(keep, 64)
    assert keep_idx.shape == (1, expected)
    assert bool((keep_idx[:, 1:] > keep_idx[:, :-1]).all())
    assert int(keep_idx.min()) >= 0 and int(keep_idx.max()) < 128
    per_cam = torch.bincount(keep_idx[0] // 64, minlength=2)
    assert per_cam.tolist() == [expected // 2] * 2


def test_fastv_keeps_the_most_attended_tokens():
    inp = _selection(cams=1)
    keep_idx = build_pruner("fastv", keep_ratio=0.25)._select_all(inp)
    top = torch.topk(inp.attention[0], 16).indices.sort().values
    assert torch.equal(keep_idx[0], top)
    assert inp.attention[0, keep_idx[0]].min() >= inp.attention[0].sort(descending=True).values[15]


def test_random_differs_from_fastv_and_is_seeded():
    inp = _selection()
    a = build_pruner("random", keep_ratio=0.25, seed=1)._select_all(inp)
    b = build_pruner("random", keep_ratio=0.25, seed=1)._select_all(inp)
    c = build_pruner("random", keep_ratio=0.25, seed=2)._select_all(inp)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("method", sorted(PRUNERS))
@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_every_method_runs_ticks_and_snapshots_state(method, head):
    model, tok = tiny(head, 1)
    pruner = build_pruner(method) if method == "none" else build_pruner(method, keep_ratio=0.25)
    policy = VLAPolicy(model, tok, pruner)
    for f in frames(4):
        chunk = policy.step(Observation([f], "pick up the red cube"))
        assert chunk.stats.tokens_kept == [64 if method == "none" else 16]
    snapshot = pruner.state_dict()
    assert snapshot["tick"] == 4 and snapshot["method"] == method
    again = build_pruner(method) if method == "none" else build_pruner(method, keep_ratio=0.25)
    again.load_state_dict(snapshot)
    assert again.state_dict() == snapshot
