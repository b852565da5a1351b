"""Safety limits, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.safety import (
    SafetyConfig,
    SafetyFilter,
    UnsafeActionError,
    integrate_deltas,
    matrix_to_quat,
    quat_to_matrix,
    rpy_to_matrix,
)


def test_per_step_limits_clamp_and_count():
    f = SafetyFilter(SafetyConfig(max_translation_step=0.05, max_rotation_step=0.25))
    chunk = np.array([[0.03, 0.04, 0.0, 0.1, -0.1, 0.0, 0.5],  # within limits
                      [0.3, 0.4, 0.0, 0.5, 0.0, -0.9, 1.7]])  # 0.5 m, two rotations, gripper too high
    out = f.clamp_deltas(chunk)
    assert np.allclose(out[0], chunk[0])
    assert np.allclose(out[1, :3], [0.03, 0.04, 0.0]) and np.isclose(np.linalg.norm(out[1, :3]), 0.05)
    assert np.allclose(out[1, 3:6], [0.25, 0.0, -0.25]) and out[1, 6] == 1.0
    assert f.hits == {"translation": 1, "rotation": 1, "gripper": 1}


def test_non_finite_chunks_are_rejected():
    f = SafetyFilter()
    with pytest.raises(UnsafeActionError, match="NaN or inf"):
        f.clamp_deltas(np.array([[0, 0, np.nan, 0, 0, 0, 0]]))
    with pytest.raises(UnsafeActionError, match=r"shape \(7,\)"):
        f.clamp_deltas(np.zeros(7))
    assert f.hits["non_finite"] == 1


def test_workspace_box_and_integration():
    f = SafetyFilter(SafetyConfig(workspace_min=(-0.1, -0.1, 0.0), workspace_max=(0.1, 0.1, 0.2)))
    deltas = np.array([[0.05, 0, 0, 0, 0, math.pi / 2, 1], [0.05, 0, 0, 0, 0, 0, 1], [0.05, 0, 0, 0, 0, 0, 1]])
    pos, quat = integrate_deltas(np.array([0.0, 0, 0.1]), np.array([0, 0, 0, 1.0]), deltas, f)
    assert np.allclose(pos[:, 0], [0.05, 0.1, 0.1]) and f.hits["workspace"] == 1
    # One quarter turn about z from identity: quaternion (0, 0, sin 45°, cos 45°).
    assert np.allclose(quat[0], [0, 0, math.sqrt(0.5), math.sqrt(0.5)])


def test_rotation_conversions_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rpy_to_matrix(*rng.uniform(-3, 3, size=3))
        assert np.allclose(quat_to_matrix(matrix_to_quat(m)), m, atol=1e-9)
        assert np.allclose(m @ m.T, np.eye(3), atol=1e-9)


@pytest.mark.parametrize("kwargs,match", [
    ({"max_translation_step": 0}, "max_translation_step=0 must be a positive finite number"),
    ({"gripper_min": 1.0, "gripper_max": 0.0}, "gripper_min=1.0 must be below gripper_max=0.0"),
    ({"workspace_min": (0, 0, 1), "workspace_max": (1, 1, 0)}, "workspace_min"),
    ({"image_timeout_s": float("inf")}, "image_timeout_s"),
])
def test_bad_safety_config(kwargs, match):
    with pytest.raises(SettingsError, match=match):
        SafetyConfig(**kwargs)
