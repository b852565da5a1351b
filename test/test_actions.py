"""Action tokenizer and un-normalisation against OpenVLA's formulas."""

from __future__ import annotations

import numpy as np
import pytest

from vla_pruner_ros.model.actions import ActionNormalizer, ActionTokenizer
from vla_pruner_ros.model.errors import UnnormKeyError


def test_action_tokens_follow_openvla():
    tok = ActionTokenizer(base=32000, n_bins=256)
    assert tok.token_range == (31744, 32000)
    a = np.array([-1.0, -0.5, 0.0, 0.3, 0.999, 1.0, 7.0])
    ids = tok.encode(a)
    assert ids.min() >= 31744 and ids.max() <= 31999
    # OpenVLA decode: bin = clip(32000 - id - 1, 0, 254); value = midpoints of linspace(-1, 1, 256)
    centers = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2
    expected = centers[np.clip(32000 - ids - 1, 0, 254)]
    assert np.array_equal(tok.decode(ids), expected)
    assert np.all(np.abs(tok.decode(ids)[:6] - np.clip(a[:6], -1, 1)) <= 1 / 255 + 1e-9)
    assert tok.decode(np.array([5]))[0] == centers[254]  # a non-action id clips to the last bin


STATS = {"a": {"action": {"q01": [-1.0, 0.0], "q99": [1.0, 2.0], "mask": [True, False]}},
         "b": {"action": {"q01": [0, 0], "q99": [1, 1]}}}


def test_unnormalize_with_mask():
    norm = ActionNormalizer(STATS, "a", 2)
    out = norm.unnormalize(np.array([[0.5, 0.5], [-1.0, -1.0]]))
    assert np.allclose(out, [[0.5, 0.5], [-1.0, -1.0]])  # dim 0 spans [-1, 1]; dim 1 is masked out
    norm_b = ActionNormalizer(STATS, "b", 2)
    assert np.allclose(norm_b.unnormalize(np.array([0.0, 1.0])), [0.5, 1.0])
    assert np.allclose(norm_b.normalize(norm_b.unnormalize(np.array([0.2, -0.4]))), [0.2, -0.4])


def test_unnorm_key_errors_list_available_keys():
    with pytest.raises(UnnormKeyError, match=r"unnorm_key is needed.*\['a', 'b'\]"):
        ActionNormalizer(STATS, None, 2)
    with pytest.raises(UnnormKeyError, match=r"unnorm_key='c' is not in .*available: \['a', 'b'\]"):
        ActionNormalizer(STATS, "c", 2)
    with pytest.raises(UnnormKeyError, match="has 2 dimensions; the model has action_dim=7"):
        ActionNormalizer(STATS, "a", 7)
    assert ActionNormalizer({"only": STATS["a"]}, None, 2).key == "only"


def test_unnorm_with_real_bridge_stats(shared_data):
    import json

    stats = json.loads((shared_data / "openvla-7b" / "config.json").read_text())["norm_stats"]
    norm = ActionNormalizer(stats, "bridge_orig", 7)
    out = norm.unnormalize(np.ones(7))
    assert np.allclose(out[:6], stats["bridge_orig"]["action"]["q99"][:6])
    assert out[6] == 1.0  # gripper is masked: passed through


def test_normalize_bounds_with_a_span_floor():
    from vla_pruner_ros.model.actions import normalize_bounds

    low, high = np.array([0.0, 1.0, 0.5]), np.array([1.0, 1.0001, 0.5])
    out = normalize_bounds(np.array([0.75, 1.00005, 0.51]), low, high, floor=0.02)
    assert np.allclose(out, [0.5, 0.0, 1.0])  # (0.75-0.5)/0.5; centre of a tiny span; 0.01 over a 0.02 floor
    assert normalize_bounds(np.array([5.0]), np.array([0.0]), np.array([1.0]))[0] == 1.0  # clipped
