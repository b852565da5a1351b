"""Camera message payloads -> RGB arrays, without ROS: works on rclpy messages and on the
dataclasses rosbags deserialises alike. Every rejection raises ``MessageError`` naming the problem."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError

# encoding -> (channels in the data, indices of R, G, B among them)
ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}


class MessageError(InputError):
    """A message that cannot be used; the node logs it, counts it and drops it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB, honouring ``step`` (row padding)."""
    enc = msg.encoding.lower()
    if enc not in ENCODINGS:
        raise MessageError("encoding", f"image encoding {msg.encoding!r} is not supported; expected one of "
                                       f"{sorted(ENCODINGS)}")
    channels, order = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise MessageError("empty", f"image is empty ({w} x {h})")
    if step < w * channels:
        raise MessageError("step", f"image step {step} is smaller than width {w} x {channels} bytes")
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if data.size != step * h:
        raise MessageError("size", f"image data has {data.size} bytes; step {step} x height {h} = {step * h}")
    # 8-bit encodings have no byte order, so is_bigendian does not change them.
    rows = data.reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(rows, 3, axis=2)
    return np.ascontiguousarray(rows[:, :, list(order)])


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise MessageError("empty", "compressed image has no data")
    fmt = msg.format.lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise MessageError("format", f"compressed format {msg.format!r} is not supported; expected jpeg or png")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise MessageError("decode", f"compressed image ({data.size} bytes, {msg.format!r}) is truncated or corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
