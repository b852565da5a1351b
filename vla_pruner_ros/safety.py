"""Safety limits applied to every action before anything reaches a controller.

Pure functions and small classes, no ROS. Actions are 7-D end-effector deltas
``(dx, dy, dz, droll, dpitch, dyaw, gripper)`` (metres, radians, gripper opening in the model's
convention). The filter clamps per-step translation and rotation, the gripper range and absolute
targets into a workspace box, and counts every limit it hits; a chunk holding NaN or inf is
rejected whole.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .errors import SettingsError, UnsafeActionError


@dataclass(frozen=True)
class SafetyConfig:
    """Attributes:
        max_translation_step: largest translation of one step (m), as the norm of (dx, dy, dz).
        max_rotation_step: largest rotation of one step (rad), per axis of (droll, dpitch, dyaw).
        gripper_min, gripper_max: gripper command range.
        workspace_min, workspace_max: box (m, in the action frame) absolute targets must stay in.
        image_timeout_s: no output when the newest image is older than this.
        pose_timeout_s: absolute targets are not computed from a pose older than this.
    """

    max_translation_step: float = 0.05
    max_rotation_step: float = 0.25
    gripper_min: float = 0.0
    gripper_max: float = 1.0
    workspace_min: tuple[float, float, float] = (-1.0, -1.0, 0.0)
    workspace_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    image_timeout_s: float = 0.5
    pose_timeout_s: float = 0.5

    def __post_init__(self) -> None:
        for name in ("max_translation_step", "max_rotation_step", "image_timeout_s", "pose_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise SettingsError(f"safety.{name}={value!r} must be a positive finite number")
        if not self.gripper_min < self.gripper_max:
            raise SettingsError(f"safety.gripper_min={self.gripper_min} must be below gripper_max={self.gripper_max}")
        if len(self.workspace_min) != 3 or len(self.workspace_max) != 3 or not all(
                lo < hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise SettingsError(f"safety.workspace_min={list(self.workspace_min)} must be below workspace_max="
                             f"{list(self.workspace_max)} on each of x, y, z")


@dataclass
class SafetyFilter:
    config: SafetyConfig = field(default_factory=SafetyConfig)
    hits: Counter = field(default_factory=Counter)

    def check_finite(self, actions: np.ndarray) -> None:
        if actions.ndim != 2 or actions.shape[1] < 7:
            raise UnsafeActionError(f"action chunk has shape {actions.shape}; expected (steps, 7) end-effector deltas")
        if not np.all(np.isfinite(actions)):
            self.hits["non_finite"] += 1
            raise UnsafeActionError("action chunk contains NaN or inf; nothing is executed from it")

    def clamp_deltas(self, actions: np.ndarray) -> np.ndarray:
        """Per-step limits on a chunk (steps, 7): translation norm, rotation per axis, gripper range."""
        self.check_finite(actions)
        cfg = self.config
        out = np.array(actions, dtype=np.float64)
        norms = np.linalg.norm(out[:, :3], axis=1)
        over = norms > cfg.max_translation_step
        if over.any():
            out[over, :3] *= (cfg.max_translation_step / norms[over])[:, None]
            self.hits["translation"] += int(over.sum())
        rot = out[:, 3:6]
        over = np.abs(rot) > cfg.max_rotation_step
        if over.any():
            out[:, 3:6] = np.clip(rot, -cfg.max_rotation_step, cfg.max_rotation_step)
            self.hits["rotation"] += int(over.any(axis=1).sum())
        grip = out[:, 6]
        over = (grip < cfg.gripper_min) | (grip > cfg.gripper_max)
        if over.any():
            out[:, 6] = np.clip(grip, cfg.gripper_min, cfg.gripper_max)
            self.hits["gripper"] += int(over.sum())
        return out

    def limit_target_step(self, previous: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray]:
        """An absolute target (position, xyzw quaternion) moved at most one step's limits from the
        previous commanded one: ``max_translation_step`` of distance and ``max_rotation_step`` of angle.
        Consecutive targets never jump, whatever the pose a chunk was integrated from."""
        (p0, q0), (p1, q1) = previous, target
        p1, q1 = np.asarray(p1, float), np.asarray(q1, float)
        step = p1 - p0
        dist = float(np.linalg.norm(step))
        if dist > self.config.max_translation_step:
            p1 = p0 + step * (self.config.max_translation_step / dist)
            self.hits["target_step"] += 1
        dot = float(np.clip(abs(np.dot(q0, q1)), -1.0, 1.0))
        angle = 2.0 * math.acos(dot)
        if angle > self.config.max_rotation_step:
            q1 = _slerp(q0, q1 if np.dot(q0, q1) >= 0 else -q1, self.config.max_rotation_step / angle)
            self.hits["target_rotation_step"] += 1
        return p1, q1

    def clamp_position(self, position: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(self.config.workspace_min), np.asarray(self.config.workspace_max)
        clamped = np.clip(position, lo, hi)
        if not np.array_equal(clamped, position):
            self.hits["workspace"] += 1
        return clamped


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (same hemisphere), t in [0, 1]."""
    dot = float(np.clip(np.dot(q0, q1), -1.0, 1.0))
    theta = math.acos(dot)
    if theta < 1e-9:
        return np.asarray(q1, float)
    q = (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)
    return q / np.linalg.norm(q)


# ---- end-effector targets from deltas -------------------------------------------------------------
def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation matrix of extrinsic x-y-z (roll, pitch, yaw) angles: Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw),
                              math.sin(yaw))
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(x, y, z, w) unit quaternion -> rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrix -> (x, y, z, w) with w >= 0."""
    t = np.trace(m)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k]) * 2
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def integrate_deltas(position: np.ndarray, orientation: np.ndarray, deltas: np.ndarray,
                     safety: SafetyFilter) -> tuple[np.ndarray, np.ndarray]:
    """Absolute targets of a chunk of (already clamped) deltas from a start pose.

    Translation deltas add in the action frame; rotation deltas compose in the action frame
    (``R_{i+1} = R(droll, dpitch, dyaw) R_i``). Each position is clamped into the workspace box.
    Returns positions (steps, 3) and quaternions (steps, 4, xyzw).
    """
    pos = np.asarray(position, dtype=np.float64)
    rot = quat_to_matrix(orientation)
    positions, quats = [], []
    for d in deltas:
        pos = safety.clamp_position(pos + d[:3])
        rot = rpy_to_matrix(*d[3:6]) @ rot
        positions.append(pos.copy())
        quats.append(matrix_to_quat(rot))
    return np.asarray(positions), np.asarray(quats)
