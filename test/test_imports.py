"""The core never imports ROS, the simulator or bag I/O."""

from __future__ import annotations

import subprocess
import sys


def test_core_import_leaves_ros_mujoco_rosbags_out():
    code = ("import sys, vla_pruner_ros.policy, vla_pruner_ros.model, vla_pruner_ros.pruning, vla_pruner_ros.cli;"
            "bad = [m for m in ('rclpy', 'mujoco', 'rosbags') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
