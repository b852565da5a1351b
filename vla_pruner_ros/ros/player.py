"""``vla-pruner play BAG``: publish a bag's camera and instruction topics into a live ROS 2 graph.

The way to drive the live node from a bag on machines without the ros2 CLI. Messages go out as
recorded (serialised bytes, original header stamps) at the recorded pace times ``rate``, with the
recorded QoS where the bag has it (cameras otherwise get sensor-data QoS, an instruction
reliable + transient local so a node started later still gets it). With ``clock`` the player also
publishes ``/clock`` in bag time: start the node with ``use_sim_time:=true`` and it follows the
bag's clock, so its watchdogs and time-indexed execution see the recorded timing.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock

from ..codecs import time_msg
from ..errors import SettingsError
from ..replay.bag import IMAGE_TYPES, STRING_TYPE, Bag
from .conversions import RCLPY

LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class PlayArgs:
    bag: str
    rate: float = 1.0
    loop: bool = False
    topics: tuple[str, ...] = ()
    clock: bool = False
    wait_s: float = 5.0  # for subscribers before the first message
    quiet: bool = False


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _qos(recorded, msgtype: str) -> QoSProfile:
    """The first recorded offered profile, mapped onto rclpy; defaults by message type."""
    default = LATCHED if msgtype == STRING_TYPE else qos_profile_sensor_data
    profiles = recorded if isinstance(recorded, (list, tuple)) else []
    if not profiles:
        return default
    p = profiles[0]
    try:
        reliable = "RELIABLE" in str(getattr(p, "reliability", "")).upper()
        transient = "TRANSIENT" in str(getattr(p, "durability", "")).upper()
        depth = int(getattr(p, "depth", 0) or default.depth or 1)
    except (TypeError, ValueError):
        return default
    return QoSProfile(depth=max(depth, 1), history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


def play(args: PlayArgs, context=None) -> int:
    """Publish the bag; returns the number of messages published."""
    if not args.rate > 0:
        raise SettingsError(f"--rate {args.rate} must be > 0")
    with Bag(args.bag) as bag:
        topics = list(args.topics) or [t.topic for t in bag.topics.values() if t.msgtype in IMAGE_TYPES
                                       or t.msgtype == STRING_TYPE]
        for t in topics:
            if t not in bag.topics:
                raise SettingsError(f"topic {t!r} is not in {args.bag}; its topics are:\n{bag.describe()}")
        messages = bag.messages(topics)
        info = {t: bag.topics[t] for t in topics}
    own = context is None
    if own:
        context = rclpy.Context()
        rclpy.init(context=context)
    node = rclpy.create_node("bag_player", context=context)
    try:
        pubs = {t: node.create_publisher(_msg_class(i.msgtype), t, _qos(i.qos, i.msgtype)) for t, i in info.items()}
        clock = node.create_publisher(Clock, "/clock", 10) if args.clock else None
        end = time.monotonic() + args.wait_s
        while time.monotonic() < end and not all(p.get_subscription_count() for p in pubs.values()):
            time.sleep(0.05)
        sent = 0
        while True:
            start, t_first = time.monotonic(), messages[0].time if messages else 0.0
            for m in messages:
                delay = start + (m.time - t_first) / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if clock is not None:
                    clock.publish(Clock(clock=time_msg(RCLPY, m.time)))
                pubs[m.topic].publish(m.raw)
                sent += 1
            if not args.loop:
                break
        time.sleep(0.2)  # let the last messages leave
        return sent
    finally:
        node.destroy_node()
        if own:
            rclpy.shutdown(context=context)
