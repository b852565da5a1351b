"""Real rclpy test harness: the node under test and a tester node in one process, spun by a
background executor, on loopback only with a domain id of this test run."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_pruner_ros.ros.node import VLANode

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
_count = [0]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period)
    return predicate()


def image_msg(rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0, stamp=None) -> Image:
    """An Image of an RGB frame in the given encoding, rows padded with ``pad`` bytes."""
    import cv2

    conv = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "rgba8": cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA),
            "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)}[encoding]
    h, w = conv.shape[:2]
    row = conv.reshape(h, -1)
    padded = np.concatenate([row, np.full((h, pad), 7, np.uint8)], axis=1) if pad else row
    msg = Image(height=h, width=w, encoding=encoding, step=padded.shape[1], is_bigendian=0,
                data=np.ascontiguousarray(padded).tobytes())
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


def compressed_msg(rgb: np.ndarray, fmt: str = "jpeg", stamp=None) -> CompressedImage:
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb[:, :, ::-1])
    assert ok
    msg = CompressedImage(format=fmt, data=buf.tobytes())
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


class Harness:
    """A VLANode with parameters, plus a tester node publishing inputs and recording outputs."""

    def __init__(self, params: dict, instruction: str | None = "pick up the red cube", start_node: bool = True,
                 compressed: bool = False, remap: dict[str, str] | None = None) -> None:
        _count[0] += 1
        self.ns = f"/t{os.getpid()}_{_count[0]}"
        self.params = {"model.path": "tiny", **params, **({"camera.compressed": True} if compressed else {})}
        self.remap = remap or {}
        self.tester = rclpy.create_node("tester", namespace=self.ns)
        t = self.tester
        self.chunks: list[JointTrajectory] = []
        self.targets: list[PoseStamped] = []
        self.grippers: list[float] = []
        self.diags: list[dict[str, str]] = []
        base = f"{self.ns}/vla_node"
        t.create_subscription(JointTrajectory, f"{base}/action_chunk", self.chunks.append, 50)
        t.create_subscription(PoseStamped, f"{base}/ee_target", self.targets.append, 50)
        t.create_subscription(Float64, f"{base}/gripper", lambda m: self.grippers.append(m.data), 50)
        t.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.image_pub = t.create_publisher(CompressedImage if compressed else Image, "image",
                                            qos_profile_sensor_data)
        self.instruction_pub = t.create_publisher(String, "instruction", LATCHED)
        self.pose_pub = t.create_publisher(PoseStamped, "ee_pose", 10)
        self.reset_client = t.create_client(Trigger, f"{base}/reset")
        self.enable_client = t.create_client(SetBool, f"{base}/enable")
        if instruction is not None:
            self.instruction_pub.publish(String(data=instruction))
        self.executor = SingleThreadedExecutor()  # rclpy's multi-threaded executor starves the planner of the GIL
        self.executor.add_node(t)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self.node: VLANode | None = None
        if start_node:
            self.start_node()

    def start_node(self) -> VLANode:
        overrides = [Parameter(k, value=v) for k, v in self.params.items()]
        cli = ["--ros-args", *[a for k, v in self.remap.items() for a in ("-r", f"{k}:={v}")]] if self.remap else None
        self.node = VLANode(namespace=self.ns, parameter_overrides=overrides, cli_args=cli)
        self.executor.add_node(self.node)
        return self.node

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.ns}/vla_node"):
                self.diags.append({kv.key: kv.value for kv in status.values} | {"_message": status.message})

    def now(self):
        return self.tester.get_clock().now().to_msg()

    def publish_frames(self, make_msg: Callable[[int], object], seconds: float, hz: float) -> int:
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            self.image_pub.publish(make_msg(n))
            n += 1
            time.sleep(1.0 / hz)
        return n

    def call(self, client, request, timeout: float = 10.0):
        assert client.wait_for_service(timeout_sec=timeout), "service not available"
        future = client.call_async(request)
        assert wait_for(future.done, timeout), "service call timed out"
        return future.result()

    def latest_diag(self, timeout: float = 5.0) -> dict[str, str]:
        n = len(self.diags)
        assert wait_for(lambda: len(self.diags) > n, timeout), "no diagnostics"
        return self.diags[-1]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        if self.node is not None:
            self.node.destroy_node()
        self.tester.destroy_node()
