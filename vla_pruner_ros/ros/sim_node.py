"""``sim_node``: the MuJoCo tabletop standing in for the arm and its camera.

Publishes ``image`` (sensor_msgs/Image rgb8; with ``wrist: true`` also ``wrist_image`` from the
camera on the hand) and ``ee_pose`` (PoseStamped) every control step,
``instruction`` (latched String) at each reset and ``~/status`` (String, JSON: episode, seed, task,
step, success, done) after every step. Actions come from ``action_source``:

- ``action_chunk``: vla_node's ``action_chunk`` (JointTrajectory of deltas), executed time-indexed
  (step i of a chunk stamped t0 at t0 + i * dt);
- ``ee_target``: vla_node's ``ee_target`` (PoseStamped) and ``gripper`` (Float64), for an armed node
  with pose feedback;
- ``expert``: the scripted expert (no model), to exercise the ROS side on its own.

With ``realtime: false`` it steps as fast as it can and publishes ``/clock`` (run vla_node with
``use_sim_time: true``); with ``realtime: true`` it steps at ``rate_hz`` of wall time. ``~/reset``
(std_srvs/Trigger) starts a new episode with the current ``task.*`` and ``seed`` parameters (which
may be changed at run time); the seed advances by one after each episode.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ..codecs import pose_arrays, pose_stamped, stamp_seconds, time_msg
from ..errors import SettingsError
from ..safety import matrix_to_quat, quat_to_matrix
from ..sim.env import TabletopEnv
from ..sim.expert import Expert
from ..sim.tasks import DIRECTIONS, FAMILIES, Task
from .conversions import RCLPY
from .spin import run_node

LATCHED = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
SOURCES = ("action_chunk", "ee_target", "expert")
T_START = 1.0


class SimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sim_node", **kwargs)
        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("task.family", "pick"), ("task.color", "red"), ("task.shape", "cube"), ("task.direction", "left"),
            ("seed", 0), ("rate_hz", 5.0), ("image_size", 128), ("action_source", "action_chunk"),
            ("realtime", False), ("frame_id", "table"), ("episodes", 0), ("start_delay_s", 1.0),
            ("wrist", False))}
        if p["action_source"] not in SOURCES:
            raise SettingsError(f"action_source={p['action_source']!r}; expected one of {list(SOURCES)}")
        if p["task.family"] not in FAMILIES:
            raise SettingsError(f"task.family={p['task.family']!r}; expected one of {list(FAMILIES)}")
        self.source, self.realtime, self.frame = p["action_source"], p["realtime"], p["frame_id"]
        self.max_episodes = int(p["episodes"])
        self._env_args = dict(image_size=int(p["image_size"]), control_hz=float(p["rate_hz"]), wrist=bool(p["wrist"]))
        self.env: TabletopEnv | None = None  # created, reset and stepped on the sim thread (its GL context)
        self.image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.wrist_pub = self.create_publisher(Image, "wrist_image", qos_profile_sensor_data) if p["wrist"] else None
        self.pose_pub = self.create_publisher(PoseStamped, "ee_pose", 10)
        self.instruction_pub = self.create_publisher(String, "instruction", LATCHED)
        # Reliable + transient local with a deep history: a late subscriber still gets the whole episode.
        self.status_qos = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST,
                                     reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status_pub = self.create_publisher(String, "~/status", self.status_qos)
        self.start_delay = float(p["start_delay_s"])
        self.clock_pub = None if self.realtime else self.create_publisher(Clock, "/clock", 10)
        if self.source == "action_chunk":
            self.create_subscription(JointTrajectory, "action_chunk", self._on_chunk, 10)
        elif self.source == "ee_target":
            self.create_subscription(PoseStamped, "ee_target", self._on_target, 10)
            self.create_subscription(Float64, "gripper", self._on_gripper, 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._lock = threading.Lock()
        self._chunk: tuple[float, np.ndarray] | None = None
        self._target: tuple[np.ndarray, np.ndarray] | None = None
        self._gripper = 1.0
        self.episode = -1
        self.done = True
        self.success = False
        self._stop = threading.Event()
        self._reset_requested = threading.Event()
        self._reset_requested.set()
        self._reset_done = threading.Event()
        self._task()  # a bad task parameter fails now
        self._thread = threading.Thread(target=self._run, name="sim_loop", daemon=True)
        self._thread.start()

    # ---- episodes ---------------------------------------------------------------------------------
    def _task(self) -> Task:
        g = self.get_parameter
        direction = g("task.direction").value if g("task.family").value == "push" else ""
        if direction and direction not in DIRECTIONS:
            raise SettingsError(f"task.direction={direction!r}; expected one of {list(DIRECTIONS)}")
        return Task(g("task.family").value, g("task.color").value, g("task.shape").value, direction)

    def _reset_episode(self) -> None:
        with self._lock:
            self.episode += 1
            self.seed = int(self.get_parameter("seed").value) + self.episode
            self.task = self._task()
            self.obs = self.env.reset(self.seed, self.task)
            self.expert = Expert(self.env, 0.0, self.seed)
            self.sim_time, self.success, self.done = T_START, False, False
            self._chunk, self._target, self._gripper = None, None, 1.0
        self.instruction_pub.publish(String(data=self.task.instruction))
        self._publish_observation()

    def _on_reset(self, _request, response):
        self._reset_done.clear()
        self._reset_requested.set()
        if not self._reset_done.wait(30.0):
            response.success, response.message = False, "the simulation did not reset within 30 s"
            return response
        response.success = True
        response.message = f"episode {self.episode}: {self.task.instruction!r} seed {self.seed}"
        return response

    # ---- actions ----------------------------------------------------------------------------------
    def _on_chunk(self, msg: JointTrajectory) -> None:
        actions = np.array([p.positions for p in msg.points], dtype=float)
        if actions.ndim != 2 or actions.shape[1] < 7 or not np.all(np.isfinite(actions)):
            self.get_logger().warning(f"ignored an action chunk of shape {actions.shape}", throttle_duration_sec=5)
            return
        with self._lock:
            self._chunk = (stamp_seconds(msg.header.stamp), actions)

    def _on_target(self, msg: PoseStamped) -> None:
        position, orientation = pose_arrays(msg)
        with self._lock:
            self._target = (position, orientation)

    def _on_gripper(self, msg: Float64) -> None:
        self._gripper = float(np.clip(msg.data, 0.0, 1.0))

    def _action(self) -> np.ndarray | None:
        """The action for this step, or None to wait (no command yet: the arm holds still)."""
        if self.source == "expert":
            return self.expert.act()
        with self._lock:
            if self.source == "action_chunk":
                if self._chunk is None:
                    return None
                t0, actions = self._chunk
                i = int(np.floor((self.sim_time - t0) / self.env.dt + 1e-6))
                return actions[i] if 0 <= i < len(actions) else None
            if self._target is None:
                return None
            position, orientation = self._target
        pos, quat = self.env.target_pose()
        rel = quat_to_matrix(orientation) @ quat_to_matrix(quat).T
        q = matrix_to_quat(rel)
        rpy = 2.0 * q[:3]  # small-angle rotation vector of the relative rotation
        return np.array([*(position - pos), *rpy, self._gripper])

    # ---- loop -------------------------------------------------------------------------------------
    def _publish_observation(self) -> None:
        t = self.sim_time
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=time_msg(RCLPY, t)))
        for pub, img, frame in ((self.image_pub, self.obs.image, "camera"),
                                (self.wrist_pub, self.obs.wrist, "wrist_camera")):
            if pub is None:
                continue
            msg = Image(height=img.shape[0], width=img.shape[1], encoding="rgb8", step=img.shape[1] * 3,
                        data=img.tobytes())
            msg.header.stamp, msg.header.frame_id = time_msg(RCLPY, t), frame
            pub.publish(msg)
        self.pose_pub.publish(pose_stamped(RCLPY, self.obs.ee_position, self.obs.ee_orientation, t, self.frame))

    def _publish_status(self) -> None:
        status = {"episode": self.episode, "seed": self.seed, "task": self.task.family,
                  "instruction": self.task.instruction, "step": self.env.steps, "success": bool(self.success),
                  "done": bool(self.done), "time": round(self.sim_time, 3), **self.env.state()}
        self.status_pub.publish(String(data=json.dumps(status)))

    def step_once(self) -> bool:
        """One control step if an action is available; returns whether the simulation advanced."""
        if self.done:
            return False
        action = self._action()
        if action is None:
            if self.source != "expert" and self.clock_pub is not None:
                self._publish_observation()  # keep the clock and the camera alive while waiting
            return False
        self.obs, self.success, self.done = self.env.step(action)
        self.sim_time += self.env.dt
        self._publish_observation()
        self._publish_status()
        return True

    def _run(self) -> None:
        self.env = TabletopEnv(**self._env_args)
        period = self.env.dt
        self._stop.wait(self.start_delay)  # let subscribers (vla_node, recorders) discover us first
        while not self._stop.is_set():
            if self._reset_requested.is_set():
                self._reset_requested.clear()
                self._reset_episode()
                self._reset_done.set()
            start = time.monotonic()
            advanced = self.step_once()
            if self.done and self.max_episodes and self.episode + 1 >= self.max_episodes:
                self._stop.wait(0.05)
                continue
            wait = period - (time.monotonic() - start) if self.realtime else (0.0 if advanced else 0.02)
            if wait > 0:
                self._stop.wait(wait)
        self.env.close()

    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(SimNode, "sim_node", args)


if __name__ == "__main__":
    sys.exit(main())
