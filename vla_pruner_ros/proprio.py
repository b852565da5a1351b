"""The robot state the policy sees (proprio): one assembly for the live core and for training data, so a
model is trained on exactly what it is fed."""

from __future__ import annotations

import numpy as np

GRIPPER_OPEN = 1.0  # the last gripper command before any: open (every episode starts open)


def pose_proprio(position: np.ndarray, orientation: np.ndarray, last_gripper: float | None = None,
                 dim: int = 8) -> np.ndarray:
    """End-effector position (3), orientation quaternion x, y, z, w (4) and the last gripper command
    (``GRIPPER_OPEN`` before any): 8 values, repeated or cut to ``dim`` for a model that takes another size."""
    values = np.concatenate([np.asarray(position, np.float64), np.asarray(orientation, np.float64),
                             [GRIPPER_OPEN if last_gripper is None else float(last_gripper)]])
    return np.resize(values, dim) if len(values) < dim else values[:dim]
