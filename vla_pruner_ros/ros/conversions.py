"""rclpy's side of ``codecs.py``: the live message classes (``RCLPY``) and the system cv_bridge's image
conversion where it is importable (the same RGB arrays as ``images.image_to_rgb``)."""

from __future__ import annotations

import importlib

import numpy as np

from ..codecs import MessageKit
from ..images import ENCODINGS, MessageError, image_to_rgb

try:  # the system ROS's cv_bridge (the PyPI "cv-bridge" is ROS 1 code and is not used)
    from cv_bridge import CvBridge
except ImportError:  # pragma: no cover - depends on the machine
    CvBridge = None


def _rclpy_class(name: str) -> type:
    package, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), cls)


# uint8[] fields take bytes, byte fields a one-byte bytes value
RCLPY = MessageKit(_rclpy_class, payload=lambda a: np.ascontiguousarray(a, np.uint8).tobytes(),
                   byte=lambda v: bytes([int(v)]))


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
