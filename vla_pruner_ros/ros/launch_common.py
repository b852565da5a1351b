"""The launch description both robot launch files share (``launch`` is imported only when used).

Launch arguments: ``params_file``, ``model_path``, ``method``, ``keep_ratio``, ``dry_run``,
``namespace``, ``image_topic``, ``wrist_image_topic``, ``instruction_topic``. Empty
``model_path``/``method``/``keep_ratio`` keep the parameter file's values (the shipped robot files
run the package's default model). Parsing a launch file imports neither torch nor transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import SettingsError
from ..settings import DEFAULT_MODEL, SIM_CONTROL

PACKAGE = "vla_pruner_ros"
EXECUTABLE = "vla_node"


@dataclass(frozen=True)
class RobotLaunch:
    params_file: str  # under share/vla_pruner_ros/config/
    image_topic: str
    wrist_image_topic: str  # used when the node subscribes a wrist camera (camera.wrist)
    instruction_topic: str = "/vla/instruction"
    remappings: dict[str, str] = field(default_factory=dict)  # node topic -> robot topic


ROBOTS = {
    "franka": RobotLaunch(
        params_file="franka.yaml",
        image_topic="/camera/camera/color/image_raw",  # realsense2_camera's default namespace
        wrist_image_topic="/wrist_camera/wrist_camera/color/image_raw",  # a second realsense2_camera
        remappings={
            "ee_pose": "/franka_robot_state_broadcaster/current_pose",
            "~/ee_target": "/cartesian_impedance_controller/equilibrium_pose",
            "~/gripper": "/vla/gripper_command",
        }),
    "widowx": RobotLaunch(params_file="widowx.yaml", image_topic="/camera/color/image_raw",
                          wrist_image_topic="/wrist_camera/color/image_raw"),
}

ARGUMENTS = {
    "params_file": "ROS 2 parameter file of the node",
    "model_path": "checkpoint directory or preset; empty = the parameter file's model.path",
    "method": "pruning method; empty = the parameter file's",
    "keep_ratio": "visual tokens kept per camera, in (0, 1]; empty = the parameter file's",
    "dry_run": "true: start disarmed (call ~/enable to arm)",
    "namespace": "namespace of the node",
    "image_topic": "camera topic (sensor_msgs/Image)",
    "wrist_image_topic": "wrist camera topic (sensor_msgs/Image), for two-camera models (camera.wrist)",
    "instruction_topic": "instruction topic (std_msgs/String, latched)",
}


def parameter_overrides(model_path: str, method: str, keep_ratio: str, dry_run: str) -> dict:
    """Node parameters the launch arguments set on top of the parameter file (empty: the file's)."""
    overrides: dict = {"dry_run": dry_run.strip().lower() in ("true", "1", "yes", "on")}
    if model_path:
        overrides["model.path"] = model_path
    if method:
        overrides["pruning.method"] = method
    if keep_ratio:
        try:
            overrides["pruning.keep_ratio"] = float(keep_ratio)
        except ValueError:
            raise SettingsError(f"keep_ratio:={keep_ratio!r} is not a number; expected a ratio in (0, 1]") from None
    return overrides


def generate(robot: str):
    """A LaunchDescription for one robot (needs ROS 2's launch and launch_ros)."""
    import os

    from ament_index_python.packages import get_package_share_directory
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    spec = ROBOTS[robot]
    share = get_package_share_directory(PACKAGE)
    defaults = {"params_file": os.path.join(share, "config", spec.params_file), "model_path": "", "method": "",
                "keep_ratio": "", "dry_run": "true", "namespace": "", "image_topic": spec.image_topic,
                "wrist_image_topic": spec.wrist_image_topic, "instruction_topic": spec.instruction_topic}

    def node(context):
        get = {k: LaunchConfiguration(k).perform(context) for k in ARGUMENTS}
        remaps = {"image": get["image_topic"], "wrist_image": get["wrist_image_topic"],
                  "instruction": get["instruction_topic"], **spec.remappings}
        return [Node(package=PACKAGE, executable=EXECUTABLE, name="vla_node", namespace=get["namespace"],
                     output="screen", parameters=[get["params_file"], parameter_overrides(
                         get["model_path"], get["method"], get["keep_ratio"], get["dry_run"])],
                     remappings=list(remaps.items()))]

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=defaults[name], description=doc)
          for name, doc in ARGUMENTS.items()),
        OpaqueFunction(function=node),
    ])


SIM_ARGUMENTS = {
    "method": "pruning method of vla_node",
    "keep_ratio": "visual tokens kept per camera, in (0, 1]",
    "model_path": "checkpoint directory or preset for vla_node; empty = the package's default model",
    "family": "task family: pick, push or place",
    "color": "colour of the task's object",
    "shape": "shape of the task's object: cube, block or cylinder",
    "seed": "seed of the first episode",
    "action_source": "what moves the simulated arm: action_chunk (vla_node), ee_target or expert",
}


def sim_parameters(get: dict[str, str]) -> tuple[dict, dict]:
    """(sim_node, vla_node) parameters for the wired simulation: bag-time clock, armed, no download."""
    from ..model import model_inputs

    overrides = parameter_overrides(get["model_path"] or DEFAULT_MODEL, get["method"], get["keep_ratio"], "false")
    cameras, proprio = model_inputs(overrides["model.path"])
    wrist = cameras > 1  # the simulator renders the wrist camera for such a model
    sim = {"task.family": get["family"], "task.color": get["color"], "task.shape": get["shape"],
           "seed": int(get["seed"]), "action_source": get["action_source"], "realtime": False, "wrist": wrist}
    vla = {"use_sim_time": True, "dry_run": False, "pose_feedback": get["action_source"] == "ee_target" or proprio > 0,
           **SIM_CONTROL, "control.action_frame": "table", "camera.wrist": wrist, **overrides}
    return sim, vla


def generate_sim():
    """sim_node and vla_node wired together (needs ROS 2's launch and launch_ros)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    defaults = {"method": "vla_pruner", "keep_ratio": "0.25", "model_path": "", "family": "pick", "color": "red",
                "shape": "cube", "seed": "0", "action_source": "action_chunk"}

    def nodes(context):
        get = {k: LaunchConfiguration(k).perform(context) for k in SIM_ARGUMENTS}
        sim, vla = sim_parameters(get)
        return [
            Node(package=PACKAGE, executable="sim_node", name="sim_node", output="screen", parameters=[sim],
                 remappings=[("action_chunk", "/vla_node/action_chunk"), ("ee_target", "/vla_node/ee_target"),
                             ("gripper", "/vla_node/gripper")]),
            Node(package=PACKAGE, executable=EXECUTABLE, name="vla_node", output="screen", parameters=[vla]),
        ]

    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=defaults[name], description=doc)
          for name, doc in SIM_ARGUMENTS.items()),
        OpaqueFunction(function=nodes),
    ])
