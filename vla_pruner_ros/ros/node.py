"""``vla_node``: camera + instruction in, end-effector action chunks out.

A thin rclpy shell around ``ControlCore``: callbacks store the newest frame, instruction and pose;
a planner thread (off the executor) runs the policy on the newest frame whenever a chunk is due;
a control timer executes the chunk step by step. Topics are relative so they can be remapped:

- in: ``image`` (sensor_msgs/Image, or CompressedImage with ``camera.compressed``), ``wrist_image``
  (with ``camera.wrist``), ``instruction`` (std_msgs/String, reliable + transient local),
  ``ee_pose`` (geometry_msgs/PoseStamped, with ``pose_feedback``);
- out: ``~/action_chunk`` (trajectory_msgs/JointTrajectory), ``/diagnostics``; and, once armed and
  with pose feedback, ``~/ee_trajectory`` (MultiDOFJointTrajectory), ``~/ee_target``
  (PoseStamped, per control tick) and ``~/gripper`` (std_msgs/Float64);
- services: ``~/reset`` (std_srvs/Trigger: new episode), ``~/enable`` (std_srvs/SetBool: arm/disarm).

Run it as ``ros2 run vla_pruner_ros vla_node`` or ``python -m vla_pruner_ros.ros.node``.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ..control import ControlCore, Plan
from ..policy import NonFiniteActionError
from ..safety import SafetyFilter, UnsafeActionError
from ..settings import NodeSettings, SettingsError, build_policy, flat_defaults, settings_from_flat
from .conversions import (
    MessageError,
    chunk_to_joint_trajectory,
    compressed_to_rgb,
    decode_image,
    pose_from_msg,
    pose_stamped,
    stamp_to_seconds,
    targets_to_multidof,
)
from .spin import run_node

THROTTLE_S = 5.0


def _percentile(values, q: float) -> float:
    return float(np.percentile(list(values), q)) if values else 0.0


class VLANode(Node):
    def __init__(self, node_name: str = "vla_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.settings = self._declare_parameters()
        s = self.settings
        self.policy = build_policy(s)  # the model loads before any timer exists
        cams = self.policy.model.config.num_cameras
        wanted = 2 if s.camera.wrist else 1
        if cams != wanted:
            raise SettingsError(f"camera.wrist={s.camera.wrist} gives {wanted} camera(s); the model expects {cams}")
        self.core = ControlCore(self.policy, s.control, SafetyFilter(s.safety))
        self.armed = not s.dry_run
        self._was_armed = self.armed
        self._held: tuple[PoseStamped, float] | None = None
        self._tick_ms: deque = deque(maxlen=200)
        self._age_ms: deque = deque(maxlen=200)
        self._last_stats = None
        self._ticks = 0
        self._missed_ticks = 0
        self._last_tick: float | None = None
        self._tick_times: deque = deque(maxlen=100)
        self._stamps: OrderedDict[float, object] = OrderedDict()  # float stamp -> exact header stamp

        camera_qos = QoSProfile(
            depth=s.camera.qos_depth, history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if s.camera.qos_reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE)
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        image_type = CompressedImage if s.camera.compressed else Image
        for cam, topic in enumerate(["image", "wrist_image"][:cams]):
            self.create_subscription(image_type, topic, lambda m, c=cam: self._on_image(c, m), camera_qos)
        self.create_subscription(String, "instruction", self._on_instruction, latched)
        if s.pose_feedback:
            self.create_subscription(PoseStamped, "ee_pose", self._on_pose, 10)

        self.chunk_pub = self.create_publisher(JointTrajectory, "~/action_chunk", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.traj_pub = self.target_pub = self.gripper_pub = None
        if s.pose_feedback:
            self.traj_pub = self.create_publisher(MultiDOFJointTrajectory, "~/ee_trajectory", 10)
            self.target_pub = self.create_publisher(PoseStamped, "~/ee_target", 10)
            self.gripper_pub = self.create_publisher(Float64, "~/gripper", 10)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._wake = threading.Event()
        self._stop = threading.Event()
        self._planner = threading.Thread(target=self._plan_loop, name="vla_planner", daemon=True)
        self._planner.start()
        self.create_timer(s.control.dt, self._on_tick)
        self.create_timer(s.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"ready: model={s.model.path} head={self.policy.model.config.head} method={s.pruning.method} "
            f"keep_ratio={s.pruning.keep_ratio} rate={s.control.rate_hz} Hz "
            f"{'DRY RUN (call ~/enable to arm)' if s.dry_run else 'ARMED'}")

    # ---- parameters -------------------------------------------------------------------------------
    def _declare_parameters(self) -> NodeSettings:
        values = {}
        for name, (default, description) in flat_defaults().items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
            values[name] = self.get_parameter(name).value
        return settings_from_flat(values)

    def _on_set_parameters(self, params) -> SetParametersResult:
        if any(p.name in flat_defaults() for p in params):
            return SetParametersResult(successful=False, reason="vla_node reads its parameters at start-up; "
                                                                "restart it to change them")
        return SetParametersResult(successful=True)

    # ---- inputs -----------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, err: MessageError, what: str) -> None:
        self.core.counters.bad_messages[err.reason] += 1
        self.get_logger().warning(f"dropped {what}: {err}", throttle_duration_sec=THROTTLE_S)

    def _on_image(self, camera: int, msg) -> None:
        try:
            frame = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else decode_image(msg)
        except MessageError as err:
            self._reject(err, f"camera {camera} frame")
            return
        stamp = stamp_to_seconds(msg.header.stamp)
        if stamp:
            self._stamps[stamp] = msg.header.stamp  # published chunks carry the exact source stamp
            while len(self._stamps) > 64:
                self._stamps.popitem(last=False)
        else:
            stamp = self._now()
        self.core.set_image(camera, frame, stamp)
        self._wake.set()

    def _on_instruction(self, msg: String) -> None:
        try:
            changed = self.core.set_instruction(msg.data)
        except ValueError as err:
            self._reject(MessageError("instruction", str(err)), "instruction")
            return
        if changed:
            self.get_logger().info(f"instruction {msg.data.strip()!r}: episode {self.core.episode}")
        self._wake.set()

    def _on_pose(self, msg: PoseStamped) -> None:
        position, orientation, stamp = pose_from_msg(msg)
        try:
            self.core.set_pose(position, orientation, stamp or self._now())
        except ValueError as err:
            self._reject(MessageError("pose", str(err)), "pose")

    def _on_reset(self, _request, response):
        self.core.reset()
        response.success = True
        response.message = f"episode {self.core.episode}: temporal state cleared"
        self.get_logger().info(response.message)
        return response

    def _on_enable(self, request, response):
        self.armed = bool(request.data)
        self._was_armed = self._was_armed or self.armed
        response.success = True
        response.message = "armed" if self.armed else "disarmed: holding the last target"
        self.get_logger().info(response.message)
        return response

    # ---- planning (off the executor) --------------------------------------------------------------
    def _plan_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            request = self.core.plan_request(self._now())
            if request is None:
                continue
            try:
                plan = self.core.compute_plan(request)
            except (ValueError, NonFiniteActionError, UnsafeActionError) as err:
                self.core.counters.plan_errors += 1
                self.get_logger().error(f"no chunk from this frame: {err}", throttle_duration_sec=THROTTLE_S)
                continue
            now = self._now()
            self.core.install(plan, now)
            self._last_stats = plan.chunk.stats
            self._tick_ms.append(plan.chunk.stats.latency_ms["total"])
            self._age_ms.append(1000.0 * (now - plan.t0))
            self._publish_plan(plan)

    def _publish_plan(self, plan: Plan) -> None:
        frame = self.settings.control.action_frame
        msg = chunk_to_joint_trajectory(plan.deltas, plan.chunk.names, plan.chunk.dt, plan.t0, frame)
        exact = self._stamps.get(plan.t0)
        if exact is not None:
            msg.header.stamp = exact
        self.chunk_pub.publish(msg)
        if self.armed and self.traj_pub is not None and plan.positions is not None:
            self.traj_pub.publish(targets_to_multidof(plan.positions, plan.orientations, plan.chunk.dt, plan.t0,
                                                      frame))

    # ---- control tick -----------------------------------------------------------------------------
    def _on_tick(self) -> None:
        self._wake.set()
        now = self._now()
        self._count_tick(now)
        cmd = self.core.command(now)
        if self.target_pub is None:
            return
        if not self.armed:
            if self._was_armed and self._held is not None:  # disarmed: hold the last target
                self.target_pub.publish(self._held[0])
                self.gripper_pub.publish(Float64(data=self._held[1]))
            return
        if cmd is None or cmd.position is None:
            if self._held is not None:
                self.target_pub.publish(self._held[0])
                self.gripper_pub.publish(Float64(data=self._held[1]))
            return
        target = pose_stamped(cmd.position, cmd.orientation, now, self.settings.control.action_frame)
        self._held = (target, cmd.gripper)
        self.target_pub.publish(target)
        self.gripper_pub.publish(Float64(data=cmd.gripper))

    def _count_tick(self, now: float) -> None:
        """Ticks and missed ticks (a gap of more than 1.5 periods since the previous tick)."""
        dt = self.settings.control.dt
        if self._last_tick is not None and now - self._last_tick > 1.5 * dt:
            self._missed_ticks += int(round((now - self._last_tick) / dt)) - 1
        self._last_tick = now
        self._ticks += 1
        self._tick_times.append(now)

    def control_rate(self) -> float:
        t = self._tick_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    # ---- diagnostics ------------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, str]:
        now = self._now()
        c = self.core.counters
        st = self.policy.state.summary()
        values = {
            "method": self.settings.pruning.method, "keep_ratio": f"{st['keep_ratio']:.3f}",
            "phase": st["phase"], "episode": str(self.core.episode), "tick": str(st["tick"]),
            "window_fill": str(st["window_fill"]),
            "tokens_kept": str(sum(self._last_stats.tokens_kept)) if self._last_stats else "",
            "tokens_total": str(sum(self._last_stats.tokens_total)) if self._last_stats else "",
            "tick_ms_p50": f"{_percentile(self._tick_ms, 50):.1f}",
            "tick_ms_p95": f"{_percentile(self._tick_ms, 95):.1f}",
            "image_to_chunk_ms_p50": f"{_percentile(self._age_ms, 50):.1f}",
            "image_to_chunk_ms_p95": f"{_percentile(self._age_ms, 95):.1f}",
            "input_age_s": f"{self.core.image_age(now):.3f}",
            "control_ticks": str(self._ticks), "missed_ticks": str(self._missed_ticks),
            "control_rate_hz": f"{self.control_rate():.2f}",
            "limits_hit": str(sum(self.core.safety.hits.values())),
            **{f"limit_{k}": str(v) for k, v in sorted(self.core.safety.hits.items())},
            **{k: str(v) for k, v in c.as_dict().items()},
            **{f"bad_{k}": str(v) for k, v in sorted(c.bad_messages.items())},
            "armed": str(self.armed).lower(), "dry_run": str(self.settings.dry_run).lower(),
            "instruction": self.core.instruction or "",
        }
        return values

    def _publish_diagnostics(self) -> None:
        values = self.diagnostics()
        blocked = self.core.blocked(self._now())
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK if blocked is None else DiagnosticStatus.WARN,
            name=f"{self.get_fully_qualified_name()}: policy", hardware_id="vla_pruner_ros",
            message="running" if blocked is None else f"waiting: {blocked}",
            values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._planner.is_alive():
            self._planner.join(timeout=10.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    from ..model.errors import ModelError
    from ..pruning.errors import PrunerError

    return run_node(VLANode, "vla_node", (SettingsError, ModelError, PrunerError, FileNotFoundError, ValueError), args)


if __name__ == "__main__":
    sys.exit(main())
