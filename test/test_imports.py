"""The core never imports ROS, the simulator or bag I/O."""

from __future__ import annotations

import subprocess
import sys


def test_core_import_leaves_ros_mujoco_rosbags_out():
    code = ("import sys, vla_pruner_ros.policy, vla_pruner_ros.model, vla_pruner_ros.pruning, vla_pruner_ros.cli;"
            "bad = [m for m in ('rclpy', 'mujoco', 'rosbags') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pruning_methods_and_the_policy_import_no_model_family():
    """A method sees the pruning point's types only (model/interface.py); the policy drives any family through
    model/family.py's interface. Neither imports OpenVLA's or pi0's modelling code."""
    code = ("import sys, vla_pruner_ros.pruning.hybrid, vla_pruner_ros.pruning.vla_iap,"
            "vla_pruner_ros.pruning.vla_pruner, vla_pruner_ros.pruning.divprune, vla_pruner_ros.pruning.fastv,"
            "vla_pruner_ros.pruning.random,"
            "vla_pruner_ros.policy;"
            "bad = [m for m in ('vla_pruner_ros.model.modeling', 'vla_pruner_ros.model.pi0', "
            "'vla_pruner_ros.model.checkpoint', 'transformers.models.pi0') if m in sys.modules];"
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
