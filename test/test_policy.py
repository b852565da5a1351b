"""policy.step: one tick, its validation, its state across ticks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import frames, tiny

from vla_pruner_ros.errors import InputError, SettingsError
from vla_pruner_ros.model import build_preset
from vla_pruner_ros.policy import NonFiniteActionError, Observation, PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import build_pruner


def _policy(head="chunk", cameras=1, proprio=0, method="none", **params):
    model, tok = tiny(head, cameras, proprio)
    pruner = build_pruner(method, **params)
    return VLAPolicy(model, tok, pruner, PolicyConfig(dt=0.1))


@pytest.mark.parametrize("head,shape", [("tokens", (1, 7)), ("chunk", (8, 7))])
def test_step_returns_a_chunk(head, shape):
    policy = _policy(head, method="fastv", keep_ratio=0.25)
    chunk = policy.step(Observation(frames(1), "pick up the red cube", stamp=12.5))
    assert chunk.actions.shape == shape and chunk.actions.dtype == np.float64
    assert chunk.names == ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
    assert chunk.dt == 0.1 and chunk.stamp == 12.5
    s = chunk.stats
    assert s.method == "fastv" and s.tokens_kept == [16] and s.tokens_total == [64]
    assert 0 < s.llm_flops_ratio < 1
    assert set(s.latency_ms) >= {"vision", "prefill", "decode", "select", "total"}


def test_two_cameras_and_proprio_budget_per_camera():
    policy = _policy("chunk", cameras=2, proprio=4, method="random", keep_ratio=0.5)
    chunk = policy.step(Observation(frames(2), "put the cube on the plate", np.zeros(4)))
    assert chunk.stats.tokens_kept == [32, 32]


def test_same_input_same_output_and_matches_fastv_at_keep_one():
    a = _policy("tokens").step(Observation(frames(1), "pick up the red cube"))
    b = _policy("tokens", method="fastv", keep_ratio=1.0).step(Observation(frames(1), "pick up the red cube"))
    assert np.array_equal(a.actions, b.actions)


def test_state_persists_and_resets_on_instruction_change():
    policy = _policy("chunk", method="random", keep_ratio=0.5)
    for f in frames(3):
        policy.step(Observation([f], "pick up the red cube"))
    assert policy.state.tick == 3
    policy.step(Observation(frames(1), "push the blue block"))
    assert policy.state.tick == 1 and policy.instruction == "push the blue block"
    policy.reset()
    assert policy.state.tick == 0


def test_random_pruner_episode_is_reproducible_after_reset():
    policy = _policy("chunk", method="random", keep_ratio=0.25)
    run1 = [policy.step(Observation([f], "pick up the red cube")).actions for f in frames(3)]
    policy.reset()
    run2 = [policy.step(Observation([f], "pick up the red cube")).actions for f in frames(3)]
    assert all(np.array_equal(x, y) for x, y in zip(run1, run2, strict=True))


@pytest.mark.parametrize("obs,match", [
    (Observation([np.zeros((56, 56, 3), np.float32)], "go"), "dtype float32; expected uint8"),
    (Observation([np.zeros((56, 56), np.uint8)], "go"), r"shape \(56, 56\); expected \(H, W, 3\)"),
    (Observation([np.zeros((56, 56, 4), np.uint8)], "go"), "3 RGB channels"),
    (Observation([np.zeros((0, 56, 3), np.uint8)], "go"), "empty"),
    (Observation([], "go"), "0 image"),
    (Observation([np.zeros((56, 56, 3), np.uint8)], "  "), "instruction='  ' must be a non-empty string"),
    (Observation([np.zeros((56, 56, 3), np.uint8)], "go", stamp=float("nan")), "stamp"),
])
def test_bad_observations_name_the_field(obs, match):
    with pytest.raises(InputError, match=match):
        _policy("chunk").step(obs)


def test_bad_proprio():
    policy = _policy("chunk", proprio=4)
    with pytest.raises(InputError, match="proprio is missing"):
        policy.step(Observation(frames(1), "go"))
    with pytest.raises(InputError, match=r"proprio has shape \(3,\); expected \(4,\)"):
        policy.step(Observation(frames(1), "go", np.zeros(3)))
    with pytest.raises(InputError, match="proprio contains NaN"):
        policy.step(Observation(frames(1), "go", np.array([0, np.nan, 0, 0])))


def test_nan_output_never_becomes_an_action():
    model, tok = build_preset("tiny", head="chunk")
    with torch.no_grad():
        model.action_head.fc2.bias[0] = float("nan")
    policy = VLAPolicy(model, tok)
    with pytest.raises(NonFiniteActionError, match="non-finite"):
        policy.step(Observation(frames(1), "pick up the red cube"))


def test_config_errors():
    model, tok = tiny("chunk")
    with pytest.raises(SettingsError, match="action_names has 2 names"):
        VLAPolicy(model, tok, config=PolicyConfig(action_names=("a", "b")))
    with pytest.raises(SettingsError, match="dt=0"):
        PolicyConfig(dt=0)
    with pytest.raises(SettingsError, match="below the model's 4 decoder layers"):
        VLAPolicy(model, tok, build_pruner("fastv", keep_ratio=0.5, layer=4))


def test_a_step_prints_no_deprecation_warning():
    """transformers' decoder layers are called with their current arguments (no FutureWarning for users)."""
    import warnings

    from vla_pruner_ros.model import load_model

    for head in ("tokens", "chunk", "pi0"):
        model, tok = load_model("pi0-tiny") if head == "pi0" else tiny(head)
        policy = VLAPolicy(model, tok, build_pruner("fastv", keep_ratio=0.5, layer=2))
        proprio = np.zeros(8) if head == "pi0" else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            policy.step(Observation([frames(1)[0]], "pick up the red cube", proprio))
        assert [str(w.message) for w in caught] == [], head


def test_the_prompt_is_openvlas_lower_cased_instruction_with_its_punctuation():
    """OpenVLA's prompt lower-cases the instruction and changes nothing else: the trailing "." stays."""
    policy = _policy("tokens")
    policy.step(Observation(frames(1), "Put the carrot on the plate."))
    _, tok = tiny("tokens")
    expected = tok("In: What action should the robot take to put the carrot on the plate.?\nOut:",
                   add_special_tokens=True)["input_ids"]
    assert policy._input_ids[0].tolist() == list(expected)
    assert policy._input_ids[0].tolist() != list(
        tok("In: What action should the robot take to put the carrot on the plate?\nOut:",
            add_special_tokens=True)["input_ids"])
