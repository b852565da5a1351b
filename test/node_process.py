"""The node as users start it: ``python -m vla_pruner_ros.ros.node --ros-args ...`` in its own process,
and a tester node in this process (its own rclpy context and domain) that feeds it and records it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = 120 + os.getpid() % 60  # away from the in-process harness's domains
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def node_env() -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def start(args: list[str], module: str = "vla_pruner_ros.ros.node") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=node_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def interrupt(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str]:
    """SIGINT, as Ctrl-C or ros2 launch sends it: the exit status and everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -9, out
    return proc.returncode, out


def frame(i: int, size: int = 128) -> np.ndarray:
    """A synthetic camera frame: a bright square drifting across a textured background."""
    rng = np.random.default_rng(0)
    img = rng.integers(40, 90, (size, size, 3), dtype=np.uint8)
    x = 10 + (3 * i) % (size - 40)
    img[40:70, x:x + 30] = (220, 40, 40)
    return img


class Tester:
    """Publishes camera frames, poses and instructions to the node's topics and records its chunks
    (with their arrival time on this process's clock) and diagnostics."""

    def __init__(self, topics: dict[str, str] | None = None, node: str = "/vla_node") -> None:
        t = {"image": "/image", "wrist_image": "/wrist_image", "ee_pose": "/ee_pose", "instruction": "/instruction",
             "action_chunk": f"{node}/action_chunk", **(topics or {})}
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        self.node = rclpy.create_node("tester", context=self.context)
        n = self.node
        self.chunks: list[tuple[float, JointTrajectory]] = []
        self.diags: list[tuple[str, dict[str, str]]] = []
        n.create_subscription(JointTrajectory, t["action_chunk"], lambda m: self.chunks.append((self.now(), m)), 100)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.image_pubs = [n.create_publisher(Image, t[k], qos_profile_sensor_data) for k in ("image", "wrist_image")]
        self.pose_pub = n.create_publisher(PoseStamped, t["ee_pose"], 10)
        self.instruction_pub = n.create_publisher(String, t["instruction"], LATCHED)
        self.reset_client = n.create_client(Trigger, f"{node}/reset")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self._node_name = node

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(f"{self._node_name}: "):
                self.diags.append((st.message, {kv.key: kv.value for kv in st.values}))

    def publish_inputs(self, i: int, cameras: int = 2, pose: bool = True, stamp=None) -> None:
        stamp = stamp or self.node.get_clock().now().to_msg()
        img = frame(i)
        for pub in self.image_pubs[:cameras]:
            msg = Image(height=img.shape[0], width=img.shape[1], encoding="rgb8", step=img.shape[1] * 3,
                        data=img.tobytes())
            msg.header.stamp = stamp
            pub.publish(msg)
        if pose:
            p = PoseStamped()
            p.header.stamp = stamp
            p.header.frame_id = "base"
            p.pose.position.x, p.pose.position.z, p.pose.orientation.w = 0.4, 0.3, 1.0
            self.pose_pub.publish(p)

    def feed_until(self, done, seconds: float, hz: float = 10.0, **kwargs) -> bool:
        """Publish inputs at ``hz`` until ``done()`` or ``seconds`` pass."""
        end, i = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            if done():
                return True
            self.publish_inputs(i, **kwargs)
            i += 1
            time.sleep(1.0 / hz)
        return done()

    def reset(self, timeout: float = 10.0) -> tuple[float, float]:
        """Call ~/reset; (time the request was sent, time the answer came) on this process's clock."""
        assert self.reset_client.wait_for_service(timeout_sec=timeout)
        sent = self.now()
        future = self.reset_client.call_async(Trigger.Request())
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            time.sleep(0.005)
        assert future.done() and future.result().success
        return sent, self.now()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def launch_params_file(path: Path, node: str, params: dict) -> Path:
    """A dict of parameters written as launch_ros writes one for a Node action (``yaml.dump`` of
    ``{<node or /**>: {ros__parameters: params}}``), for the command line it builds."""
    import yaml

    path.write_text(yaml.dump({node: {"ros__parameters": params}}, default_flow_style=False))
    return path
