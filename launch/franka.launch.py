"""vla_node on a Franka FR3 (franka_ros2): ros2 launch vla_pruner_ros franka.launch.py [method:=... keep_ratio:=...]"""

from vla_pruner_ros.ros.launch_common import generate


def generate_launch_description():
    return generate("franka")
