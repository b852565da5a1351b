"""Message <-> array conversions. Image decoding is numpy (``vla_pruner_ros.images``) or the system
cv_bridge when importable; both give the same RGB uint8 arrays."""

from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Pose, PoseStamped, Quaternion, Transform, Vector3
from trajectory_msgs.msg import (
    JointTrajectory,
    JointTrajectoryPoint,
    MultiDOFJointTrajectory,
    MultiDOFJointTrajectoryPoint,
)

from ..images import ENCODINGS, MessageError, compressed_to_rgb, image_to_rgb  # noqa: F401 (re-exported)

try:  # the system ROS's cv_bridge (the PyPI "cv-bridge" is ROS 1 code and is not used)
    from cv_bridge import CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    CvBridge = None

def image_to_rgb_bridge(msg) -> np.ndarray:
    """The same conversion through the system cv_bridge (only when it is importable)."""
    if CvBridge is None:
        raise RuntimeError("cv_bridge is not importable on this machine")
    return np.ascontiguousarray(CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))


def decode_image(msg) -> np.ndarray:
    """Image message -> RGB array: the system cv_bridge if present (same result), else numpy."""
    if CvBridge is not None and msg.encoding.lower() in ENCODINGS:
        try:
            return image_to_rgb_bridge(msg)
        except Exception as err:
            raise MessageError("bridge", f"cv_bridge could not convert the image: {err}") from None
    return image_to_rgb(msg)


def stamp_to_seconds(stamp) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def seconds_to_stamp(t: float) -> Time:
    sec = math.floor(t)
    return Time(sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def seconds_to_duration(t: float) -> Duration:
    sec = math.floor(t)
    return Duration(sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def chunk_to_joint_trajectory(actions: np.ndarray, names: tuple[str, ...], dt: float, stamp: float,
                              frame_id: str) -> JointTrajectory:
    """One point per step: positions = the action, time_from_start = i * dt; stamp = the source image's."""
    msg = JointTrajectory()
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.joint_names = list(names)
    for i, row in enumerate(actions):
        msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in row],
                                               time_from_start=seconds_to_duration(i * dt)))
    return msg


def targets_to_multidof(positions: np.ndarray, orientations: np.ndarray, dt: float, stamp: float,
                        frame_id: str, joint: str = "end_effector") -> MultiDOFJointTrajectory:
    msg = MultiDOFJointTrajectory()
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.joint_names = [joint]
    for i, (p, q) in enumerate(zip(positions, orientations, strict=True)):
        tf = Transform(translation=Vector3(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                       rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
        msg.points.append(MultiDOFJointTrajectoryPoint(transforms=[tf], time_from_start=seconds_to_duration(i * dt)))
    return msg


def pose_stamped(position: np.ndarray, orientation: np.ndarray, stamp: float, frame_id: str) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp = seconds_to_stamp(stamp)
    msg.header.frame_id = frame_id
    msg.pose = Pose()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in orientation)
    return msg


def pose_from_msg(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray, float]:
    p, o = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([o.x, o.y, o.z, o.w]), stamp_to_seconds(msg.header.stamp)
