"""vla_node on a WidowX 250 (BridgeData conventions): ros2 launch vla_pruner_ros widowx.launch.py"""

from vla_pruner_ros.ros.launch_common import generate


def generate_launch_description():
    return generate("widowx")
