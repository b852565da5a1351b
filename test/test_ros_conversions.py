"""Image and trajectory conversions, checked against OpenCV's own colour conversions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")

from ros_harness import compressed_msg, image_msg

from vla_pruner_ros.ros import conversions as conv


@pytest.fixture
def rgb():
    return np.random.default_rng(1).integers(0, 255, (12, 17, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_round_trip(rgb, encoding, pad):
    out = conv.image_to_rgb(image_msg(rgb, encoding, pad))
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, rgb)


def test_mono8_becomes_grey_rgb(rgb):
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = conv.image_to_rgb(image_msg(rgb, "mono8", pad=2))
    assert np.array_equal(out, cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))


def test_big_endian_flag_does_not_change_8_bit_data(rgb):
    msg = image_msg(rgb, "bgr8", 1)
    msg.is_bigendian = 1
    assert np.array_equal(conv.image_to_rgb(msg), rgb)


@pytest.mark.parametrize("edit,reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "encoding"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "size"),
    (lambda m: setattr(m, "step", 5), "step"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty"),
])
def test_bad_images_name_the_problem(rgb, edit, reason):
    msg = image_msg(rgb)
    edit(msg)
    with pytest.raises(conv.MessageError) as err:
        conv.image_to_rgb(msg)
    assert err.value.reason == reason


def test_compressed_jpeg_png_and_truncated(rgb):
    assert np.array_equal(conv.compressed_to_rgb(compressed_msg(rgb, "png")), rgb)
    smooth = np.stack(np.meshgrid(np.arange(32) * 8, np.arange(24) * 10), -1)[..., [0, 1, 1]].astype(np.uint8)
    smooth[..., 2] = 200  # a gradient with a constant blue: jpeg keeps it within a few levels
    jpeg = conv.compressed_to_rgb(compressed_msg(smooth, "jpeg"))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 4
    broken = compressed_msg(rgb, "jpeg")
    broken.data = bytes(broken.data)[:20]
    with pytest.raises(conv.MessageError, match="truncated or corrupt"):
        conv.compressed_to_rgb(broken)
    broken.format = "tiff"
    with pytest.raises(conv.MessageError, match="not supported"):
        conv.compressed_to_rgb(broken)


@pytest.mark.skipif(conv.CvBridge is None, reason="the system cv_bridge is not importable here")
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_cv_bridge_and_numpy_agree(rgb, encoding):
    msg = image_msg(rgb, encoding, pad=4)
    assert np.array_equal(conv.image_to_rgb_bridge(msg), conv.image_to_rgb(msg))


def test_trajectory_and_stamps():
    actions = np.arange(14, dtype=float).reshape(2, 7)
    msg = conv.chunk_to_joint_trajectory(actions, tuple("abcdefg"), 0.25, 12.5, "base")
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 500_000_000 and msg.header.frame_id == "base"
    assert [list(p.positions) for p in msg.points] == actions.tolist()
    assert msg.points[1].time_from_start.nanosec == 250_000_000
    assert conv.stamp_to_seconds(conv.seconds_to_stamp(3.75)) == 3.75
    pose = conv.pose_stamped(np.array([1.0, 2, 3]), np.array([0, 0, 0, 1.0]), 1.0, "f")
    p, q, t = conv.pose_from_msg(pose)
    assert p.tolist() == [1, 2, 3] and q.tolist() == [0, 0, 0, 1] and t == 1.0
