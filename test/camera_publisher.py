"""A camera in its own process: publishes RGB frames on <namespace>/image at a rate, prints how many."""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main() -> None:
    namespace, hz, seconds, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    rclpy.init()
    node = rclpy.create_node("camera", namespace=namespace)
    pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    data = np.random.default_rng(0).integers(0, 255, size * size * 3, dtype=np.uint8).tobytes()
    msg = Image(height=size, width=size, encoding="rgb8", step=size * 3, data=data)
    time.sleep(1.0)  # discovery
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        sent += 1
        time.sleep(max(0.0, start + sent / hz - time.monotonic()))
    print(sent, flush=True)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
