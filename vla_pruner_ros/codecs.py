"""ROS messages <-> arrays: one home for the node, the simulator node, the bag player, replay, bag
writing and training.

Decoding reads fields only, so it works on rclpy's messages and on the dataclasses ``rosbags``
deserialises alike. Building takes a ``MessageKit``, which names where the message classes come from:
``ros/conversions.py`` has rclpy's (live ROS), ``replay/bag.py`` the Jazzy typestore's (bags). Every field
is passed explicitly, as ``rosbags``' dataclasses require. This module imports neither ROS nor rosbags.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .images import compressed_to_rgb, image_to_rgb


class MessageKit:
    """Message classes by full type name (``sensor_msgs/msg/Image``) and the two field conventions that
    differ between rclpy and rosbags: a ``uint8[]`` payload, and the ``byte`` type."""

    def __init__(self, lookup: Callable[[str], type], payload: Callable[[np.ndarray], Any],
                 byte: Callable[[int], Any]) -> None:
        self._lookup = lookup
        self._classes: dict[str, type] = {}
        self.payload = payload
        self.byte = byte

    def __call__(self, name: str) -> type:
        if name not in self._classes:
            self._classes[name] = self._lookup(name)
        return self._classes[name]


# ---- decoding ---------------------------------------------------------------------------------------
def stamp_seconds(stamp) -> float:
    """builtin_interfaces/Time (or Duration) -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def pose_arrays(msg) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/PoseStamped -> position (3,) and orientation quaternion (x, y, z, w)."""
    p, o = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w])


def camera_frame(msg, raw: Callable[[Any], np.ndarray] = image_to_rgb) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> (H, W, 3) uint8 RGB, told apart by their fields (a
    CompressedImage has ``format``, an Image ``encoding``). ``raw`` decodes an Image (the node may pass the
    system cv_bridge's conversion); errors are ``images.MessageError``."""
    return compressed_to_rgb(msg) if hasattr(msg, "format") else raw(msg)


# ---- building ---------------------------------------------------------------------------------------
def _split(t: float) -> tuple[int, int]:
    sec = math.floor(t)
    return int(sec), int(round((t - sec) * 1e9)) % 1_000_000_000


def time_msg(kit: MessageKit, t: float):
    sec, nanosec = _split(t)
    return kit("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def duration_msg(kit: MessageKit, t: float):
    sec, nanosec = _split(t)
    return kit("builtin_interfaces/msg/Duration")(sec=sec, nanosec=nanosec)


def header(kit: MessageKit, t: float, frame_id: str = ""):
    return kit("std_msgs/msg/Header")(stamp=time_msg(kit, t), frame_id=frame_id)


def joint_trajectory(kit: MessageKit, actions: np.ndarray, names: tuple[str, ...], dt: float, t: float,
                     frame_id: str):
    """An action chunk: one point per step, positions = the action, time_from_start = i * dt."""
    point = kit("trajectory_msgs/msg/JointTrajectoryPoint")
    empty = np.zeros(0)
    return kit("trajectory_msgs/msg/JointTrajectory")(
        header=header(kit, t, frame_id), joint_names=list(names),
        points=[point(positions=np.asarray(row, np.float64), velocities=empty, accelerations=empty, effort=empty,
                      time_from_start=duration_msg(kit, i * dt)) for i, row in enumerate(actions)])


def multidof_trajectory(kit: MessageKit, positions: np.ndarray, orientations: np.ndarray, dt: float, t: float,
                        frame_id: str, joint: str = "end_effector"):
    """Absolute end-effector targets, one transform per step."""
    g = "geometry_msgs/msg/"
    point = kit("trajectory_msgs/msg/MultiDOFJointTrajectoryPoint")
    points = []
    for i, (p, q) in enumerate(zip(positions, orientations, strict=True)):
        tf = kit(g + "Transform")(translation=kit(g + "Vector3")(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                                  rotation=kit(g + "Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                                 w=float(q[3])))
        points.append(point(transforms=[tf], velocities=[], accelerations=[],
                            time_from_start=duration_msg(kit, i * dt)))
    return kit("trajectory_msgs/msg/MultiDOFJointTrajectory")(header=header(kit, t, frame_id), joint_names=[joint],
                                                              points=points)


def pose_stamped(kit: MessageKit, position: np.ndarray, orientation: np.ndarray, t: float, frame_id: str):
    g = "geometry_msgs/msg/"
    x, y, z = (float(v) for v in position)
    qx, qy, qz, qw = (float(v) for v in orientation)
    pose = kit(g + "Pose")(position=kit(g + "Point")(x=x, y=y, z=z),
                           orientation=kit(g + "Quaternion")(x=qx, y=qy, z=qz, w=qw))
    return kit(g + "PoseStamped")(header=header(kit, t, frame_id), pose=pose)


def image(kit: MessageKit, rgb: np.ndarray, t: float, encoding: str = "rgb8", pad: int = 0,
          frame_id: str = "camera"):
    """sensor_msgs/Image of an RGB frame in rgb8 or bgr8, rows padded with ``pad`` bytes."""
    data = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    h, w = data.shape[:2]
    rows = np.ascontiguousarray(data).reshape(h, w * 3)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return kit("sensor_msgs/msg/Image")(header=header(kit, t, frame_id), height=h, width=w, encoding=encoding,
                                        is_bigendian=0, step=rows.shape[1], data=kit.payload(rows.reshape(-1)))


def compressed_image(kit: MessageKit, rgb: np.ndarray, t: float, fmt: str = "jpeg", frame_id: str = "camera"):
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError(f"cannot encode a frame as {fmt}")
    return kit("sensor_msgs/msg/CompressedImage")(header=header(kit, t, frame_id), format=fmt,
                                                  data=kit.payload(np.frombuffer(buf.tobytes(), np.uint8)))


def string(kit: MessageKit, text: str):
    return kit("std_msgs/msg/String")(data=text)


def float64(kit: MessageKit, value: float):
    return kit("std_msgs/msg/Float64")(data=float(value))


def diagnostics(kit: MessageKit, t: float, name: str, values: dict[str, Any], level: int = 0, message: str = "",
                hardware_id: str = "vla_pruner_ros"):
    d = "diagnostic_msgs/msg/"
    status = kit(d + "DiagnosticStatus")(level=kit.byte(level), name=name, message=message, hardware_id=hardware_id,
                                         values=[kit(d + "KeyValue")(key=k, value=str(v)) for k, v in values.items()])
    return kit(d + "DiagnosticArray")(header=header(kit, t), status=[status])
