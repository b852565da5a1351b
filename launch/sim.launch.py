"""The simulated arm and the pruned policy wired together: ros2 launch vla_pruner_ros sim.launch.py [family:=place]"""

from vla_pruner_ros.ros.launch_common import generate_sim


def generate_launch_description():
    return generate_sim()
