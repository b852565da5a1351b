"""Image and trajectory conversions, checked against OpenCV's own colour conversions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")

from ros_harness import compressed_msg, image_msg

from vla_pruner_ros import codecs, images
from vla_pruner_ros.replay.bag import BAG
from vla_pruner_ros.ros import conversions as conv
from vla_pruner_ros.ros.conversions import RCLPY


@pytest.fixture
def rgb():
    return np.random.default_rng(1).integers(0, 255, (12, 17, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_round_trip(rgb, encoding, pad):
    out = images.image_to_rgb(image_msg(rgb, encoding, pad))
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, rgb)


def test_mono8_becomes_grey_rgb(rgb):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = images.image_to_rgb(image_msg(rgb, "mono8", pad=2))
    assert np.array_equal(out, cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))


def test_big_endian_flag_does_not_change_8_bit_data(rgb):
    msg = image_msg(rgb, "bgr8", 1)
    msg.is_bigendian = 1
    assert np.array_equal(images.image_to_rgb(msg), rgb)


@pytest.mark.parametrize("edit,reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "encoding"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "size"),
    (lambda m: setattr(m, "step", 5), "step"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty"),
])
def test_bad_images_name_the_problem(rgb, edit, reason):
    msg = image_msg(rgb)
    edit(msg)
    with pytest.raises(images.MessageError) as err:
        images.image_to_rgb(msg)
    assert err.value.reason == reason


def test_compressed_jpeg_png_and_truncated(rgb):
    assert np.array_equal(images.compressed_to_rgb(compressed_msg(rgb, "png")), rgb)
    smooth = np.stack(np.meshgrid(np.arange(32) * 8, np.arange(24) * 10), -1)[..., [0, 1, 1]].astype(np.uint8)
    smooth[..., 2] = 200  # a gradient with a constant blue: jpeg keeps it within a few levels
    jpeg = images.compressed_to_rgb(compressed_msg(smooth, "jpeg"))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 4
    broken = compressed_msg(rgb, "jpeg")
    broken.data = bytes(broken.data)[:20]
    with pytest.raises(images.MessageError, match="truncated or corrupt"):
        images.compressed_to_rgb(broken)
    broken.format = "tiff"
    with pytest.raises(images.MessageError, match="not supported"):
        images.compressed_to_rgb(broken)


@pytest.mark.skipif(conv.CvBridge is None, reason="the system cv_bridge is not importable here")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_cv_bridge_and_numpy_agree(rgb, encoding):
    msg = image_msg(rgb, encoding, pad=4)
    assert np.array_equal(conv.image_to_rgb_bridge(msg), images.image_to_rgb(msg))


@pytest.mark.parametrize("kit", [RCLPY, BAG], ids=["rclpy", "rosbags"])
def test_trajectory_and_stamps(kit):
    """The same builders make live messages and bag messages (codecs.py)."""
    actions = np.arange(14, dtype=float).reshape(2, 7)
    msg = codecs.joint_trajectory(kit, actions, tuple("abcdefg"), 0.25, 12.5, "base")
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 500_000_000 and msg.header.frame_id == "base"
    assert [list(p.positions) for p in msg.points] == actions.tolist()
    assert msg.points[1].time_from_start.nanosec == 250_000_000
    assert codecs.stamp_seconds(codecs.time_msg(kit, 3.75)) == 3.75
    pose = codecs.pose_stamped(kit, np.array([1.0, 2, 3]), np.array([0, 0, 0, 1.0]), 1.0, "f")
    p, q = codecs.pose_arrays(pose)
    assert p.tolist() == [1, 2, 3] and q.tolist() == [0, 0, 0, 1] and codecs.stamp_seconds(pose.header.stamp) == 1.0


@pytest.mark.parametrize("kit", [RCLPY, BAG], ids=["rclpy", "rosbags"])
def test_images_built_by_either_kit_decode_to_the_frame(rgb, kit):
    for msg in (codecs.image(kit, rgb, 1.0, "bgr8", pad=2), codecs.compressed_image(kit, rgb, 1.0, "png")):
        assert np.array_equal(codecs.camera_frame(msg), rgb)


def test_diagnostics_level_is_a_byte_for_rclpy_and_an_int_in_bags():
    live = codecs.diagnostics(RCLPY, 1.0, "n", {"a": 1}, level=2)
    bag = codecs.diagnostics(BAG, 1.0, "n", {"a": 1}, level=2)
    assert live.status[0].level == b"\x02" and bag.status[0].level == 2
    assert live.status[0].values[0].value == bag.status[0].values[0].value == "1"
