"""Reading ROS 2 bags with ``rosbags``: a bag directory (metadata.yaml + .db3/.mcap) or a bare
``.mcap``/``.db3`` file. Errors name the path, the topic and what is there instead."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from rosbags.typesys import Stores, get_typestore

from ..codecs import MessageKit
from ..errors import VLAPrunerError

IMAGE_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}
STRING_TYPE = "std_msgs/msg/String"
TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
POSE_TYPE = "geometry_msgs/msg/PoseStamped"

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
# The Jazzy typestore's message classes, for the builders in codecs.py (uint8[] as numpy arrays, byte as int)
BAG = MessageKit(TYPESTORE.types.__getitem__, payload=lambda a: np.array(a, np.uint8).reshape(-1), byte=int)


class BagError(VLAPrunerError):
    """A bag that cannot be used as asked; the message says why and what is there."""


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_ns: int  # bag (log) timestamp
    time: float  # replay time (s): the header stamp when set, else the log time
    raw: bytes
    msg: Any = None  # deserialised lazily


@dataclass
class TopicInfo:
    topic: str
    msgtype: str
    count: int
    qos: Any = None  # offered QoS profiles as recorded (rosbags' representation), if any


class Bag:
    """An open bag: its topics, and its messages in replay-time order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path} does not exist")
        try:
            self.reader = Reader(self.path)
            self.reader.open()
        except (ReaderError, KeyError, ValueError, OSError) as err:
            kind = "a bag directory" if self.path.is_dir() else "a .mcap or .db3 file"
            raise BagError(f"{self.path} is not a readable ROS 2 bag ({kind}): {err}") from None
        except Exception as err:  # storage plugins raise their own types on corrupt files
            raise BagError(f"{self.path} cannot be read as a ROS 2 bag: {type(err).__name__}: {err}") from None
        self.topics: dict[str, TopicInfo] = {}
        for conn in self.reader.connections:
            qos = getattr(getattr(conn, "ext", None), "offered_qos_profiles", None)
            info = self.topics.get(conn.topic)
            count = (info.count if info else 0) + int(conn.msgcount)
            self.topics[conn.topic] = TopicInfo(conn.topic, conn.msgtype, count, qos)
        self.reordered = 0

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        rows = [f"  {t.topic}  [{t.msgtype}]  {t.count} message(s)" for t in sorted(self.topics.values(),
                                                                                  key=lambda x: x.topic)]
        return "\n".join(rows) if rows else "  (no topics)"

    def pick(self, wanted: str | None, types: set[str], role: str, required: bool = True) -> str | None:
        """The topic for a role: the one asked for, or the only topic of a matching type."""
        if wanted:
            if wanted not in self.topics:
                raise BagError(f"{role} topic {wanted!r} is not in {self.path}; its topics are:\n{self.describe()}")
            if self.topics[wanted].msgtype not in types:
                raise BagError(f"{role} topic {wanted!r} has type {self.topics[wanted].msgtype}; expected one of "
                               f"{sorted(types)}")
            return wanted
        candidates = sorted(t.topic for t in self.topics.values() if t.msgtype in types)
        if len(candidates) == 1:
            return candidates[0]
        if not required and not candidates:
            return None
        if not candidates:
            raise BagError(f"{self.path} has no {role} topic (types {sorted(types)}); its topics are:\n"
                           f"{self.describe()}")
        named = [t for t in candidates if role in t.rsplit("/", 1)[-1]]
        if len(named) == 1:  # e.g. /instruction beside another String topic such as /episode
            return named[0]
        raise BagError(f"{self.path} has several {role} topics {candidates}; choose one with --{role}-topic")

    def messages(self, topics: list[str], start: float | None = None, end: float | None = None) -> list[BagMessage]:
        """Messages of ``topics`` sorted by replay time (stable); counts how many were out of order."""
        conns = [c for c in self.reader.connections if c.topic in topics]
        out: list[BagMessage] = []
        try:
            for conn, log_ns, raw in self.reader.messages(connections=conns):
                msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
                header = getattr(msg, "header", None)
                t = header.stamp.sec + 1e-9 * header.stamp.nanosec if header is not None else 0.0
                out.append(BagMessage(conn.topic, conn.msgtype, log_ns, t or log_ns * 1e-9, bytes(raw), msg))
        except Exception as err:  # a truncated file surfaces as many different errors
            raise BagError(f"{self.path} is truncated or corrupt: {type(err).__name__}: {err}") from None
        latest = float("-inf")
        for m in out:
            if m.time < latest:
                self.reordered += 1
            latest = max(latest, m.time)
        out.sort(key=lambda m: m.time)
        for topic in topics:
            if self.topics[topic].count and not any(m.topic == topic for m in out):
                raise BagError(f"topic {topic!r} is listed with {self.topics[topic].count} message(s) but none could "
                               "be read (a QoS-metadata or storage mismatch?); nothing was replayed")
        if start is not None or end is not None:
            t0 = out[0].time if out else 0.0
            window = [m for m in out if (start is None or m.time - t0 >= start) and (end is None or m.time - t0 <= end)]
            if not window:
                raise BagError(f"no messages between --start {start} and --end {end} (bag seconds)")
            # The instruction in force at the window's start carries over (the latest one before it).
            carried = {m.topic: m for m in out if m.msgtype == STRING_TYPE and m.time < window[0].time}
            for m in carried.values():
                m.time = window[0].time
            out = sorted([*carried.values(), *window], key=lambda m: m.time)
        return out
