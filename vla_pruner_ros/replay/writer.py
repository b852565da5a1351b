"""Writing ROS 2 bags with ``rosbags``: messages built from the Jazzy typestore, written to a
temporary path and renamed into place only when complete (nothing half-written is left)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import SettingsError
from .bag import TYPESTORE

T = TYPESTORE.types
STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def time_msg(t: float):
    sec = math.floor(t)
    return T["builtin_interfaces/msg/Time"](sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def duration_msg(t: float):
    sec = math.floor(t)
    return T["builtin_interfaces/msg/Duration"](sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000)


def header(t: float, frame_id: str = ""):
    return T["std_msgs/msg/Header"](stamp=time_msg(t), frame_id=frame_id)


def image(rgb: np.ndarray, t: float, encoding: str = "rgb8", pad: int = 0, frame_id: str = "camera"):
    """sensor_msgs/Image of an RGB frame in rgb8 or bgr8, rows padded with ``pad`` bytes."""
    data = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    h, w = data.shape[:2]
    rows = np.ascontiguousarray(data).reshape(h, w * 3)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return T["sensor_msgs/msg/Image"](header=header(t, frame_id), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=rows.shape[1], data=rows.reshape(-1).copy())


def compressed_image(rgb: np.ndarray, t: float, fmt: str = "jpeg", frame_id: str = "camera"):
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ValueError(f"cannot encode a frame as {fmt}")
    return T["sensor_msgs/msg/CompressedImage"](header=header(t, frame_id), format=fmt,
                                                data=np.frombuffer(buf.tobytes(), np.uint8).copy())


def string(text: str):
    return T["std_msgs/msg/String"](data=text)


def joint_trajectory(actions: np.ndarray, names: tuple[str, ...], dt: float, t: float, frame_id: str):
    point = T["trajectory_msgs/msg/JointTrajectoryPoint"]
    return T["trajectory_msgs/msg/JointTrajectory"](
        header=header(t, frame_id), joint_names=list(names),
        points=[point(positions=np.asarray(row, np.float64), velocities=np.zeros(0), accelerations=np.zeros(0),
                      effort=np.zeros(0), time_from_start=duration_msg(i * dt)) for i, row in enumerate(actions)])


def pose_stamped(position: np.ndarray, orientation: np.ndarray, t: float, frame_id: str):
    g = "geometry_msgs/msg/"
    pose = T[g + "Pose"](position=T[g + "Point"](*map(float, position)),
                         orientation=T[g + "Quaternion"](*map(float, orientation)))
    return T[g + "PoseStamped"](header=header(t, frame_id), pose=pose)


def diagnostics(t: float, name: str, values: dict[str, Any], level: int = 0, message: str = ""):
    d = "diagnostic_msgs/msg/"
    status = T[d + "DiagnosticStatus"](level=level, name=name,
                                       message=message, hardware_id="vla_pruner_ros",
                                       values=[T[d + "KeyValue"](key=k, value=str(v)) for k, v in values.items()])
    return T[d + "DiagnosticArray"](header=header(t), status=[status])


class BagWriter:
    """Write a bag to ``path`` (a bag directory) atomically: it is built in a hidden sibling folder and
    moved into place by ``close()``; ``abort()`` (or an exception inside ``with``) removes it."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGE:
            raise SettingsError(f"storage={storage!r}; expected one of {sorted(STORAGE)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; not overwriting it")
        self.staging = self.path.parent / f".{self.path.name}.partial"
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self.tmp = self.staging / self.path.name
        self.writer = Writer(self.tmp, version=9, storage_plugin=STORAGE[storage])
        self.writer.open()
        self.connections: dict[str, Any] = {}

    def connection(self, topic: str, msgtype: str, qos=()):
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE,
                                                                 offered_qos_profiles=qos or ())
        return self.connections[topic]

    def write(self, topic: str, msg, t_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.writer.write(self.connection(topic, msgtype), int(t_ns), TYPESTORE.serialize_cdr(msg, msgtype))

    def write_raw(self, topic: str, msgtype: str, raw: bytes, t_ns: int) -> None:
        self.writer.write(self.connection(topic, msgtype), int(t_ns), raw)

    def close(self) -> Path:
        self.writer.close()
        if self.path.exists():
            raise FileExistsError(f"{self.path} appeared while writing; the new bag is left at {self.tmp}")
        self.tmp.rename(self.path)
        self.staging.rmdir()
        return self.path

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def float64(value: float):
    return T["std_msgs/msg/Float64"](data=float(value))
