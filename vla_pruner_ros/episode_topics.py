"""The topics of a recorded simulator episode: written by ``sim/record.py``, read by ``train/dataset.py``
and the replay examples. One home, so the writer and the readers cannot drift apart."""

from __future__ import annotations

CAMERA = "/camera/image"  # sensor_msgs/Image rgb8 (or CAMERA + "/compressed": jpeg)
WRIST_CAMERA = "/camera/wrist/image"  # the optional second camera, on the hand
COMPRESSED = "/compressed"
IMAGE_TOPICS = (CAMERA, CAMERA + COMPRESSED)
WRIST_TOPICS = (WRIST_CAMERA, WRIST_CAMERA + COMPRESSED)
INSTRUCTION = "/instruction"  # std_msgs/String
EE_POSE = "/ee_pose"  # geometry_msgs/PoseStamped
GRIPPER = "/gripper"  # std_msgs/Float64, finger opening (m)
EXPERT_ACTION = "/expert/action"  # trajectory_msgs/JointTrajectory: the label of every step
EXECUTED_ACTION = "/executed/action"  # DAgger episodes: what was executed (the labels stay the expert's)
EPISODE = "/episode"  # std_msgs/String, JSON: task, seed, and at the end success and steps
SCENE_TARGET, SCENE_PLATE = "/scene/target", "/scene/plate"  # privileged positions for the auxiliary loss
SCENE_TOPICS = (SCENE_TARGET, SCENE_PLATE)
OBJECT_PREFIX = "/scene/object/"  # + "<colour>_<shape>": every object, for counterfactual instructions
