"""``vla_node``: camera + instruction in, end-effector action chunks out; a managed (lifecycle) node.

A thin rclpy shell around ``ControlCore``: callbacks store the newest frame, instruction and pose;
a planner thread (the only thread that runs the policy) plans whenever a chunk is due; a control
timer executes the chunk step by step. Lifecycle:

- ``configure``: read and validate the parameters, load the model, refuse a configuration that can
  never produce an action (cameras, proprio) with one line naming the fix; create the outputs and
  the ``~/reset`` and ``~/enable`` services;
- ``activate``: a new episode; subscriptions, the control timer and the planner start (the
  controller-facing outputs still follow ``dry_run`` and ``~/enable``);
- ``deactivate``: planning stops, subscriptions and the timer go, the last target is published
  once more and held (no new motion);
- ``cleanup``: outputs and services go and the model is freed; ``shutdown``: everything stops.

``autostart`` (default true) configures and activates at start, so ``ros2 launch`` works without a
lifecycle manager; with ``autostart: false`` the node waits for ``~/change_state``. ``/diagnostics``
is published in every state (level ERROR while planning fails, or when configure failed).

Topics are relative so they can be remapped: in ``image`` (sensor_msgs/Image, or CompressedImage
with ``camera.compressed``), ``wrist_image`` (with ``camera.wrist``), ``instruction``
(std_msgs/String, reliable + transient local), ``ee_pose`` (geometry_msgs/PoseStamped, with
``pose_feedback``); out ``~/action_chunk`` (trajectory_msgs/JointTrajectory), ``/diagnostics``; and,
armed with pose feedback, ``~/ee_trajectory`` (MultiDOFJointTrajectory), ``~/ee_target``
(PoseStamped, per control tick) and ``~/gripper`` (std_msgs/Float64); services ``~/reset``
(std_srvs/Trigger: new episode) and ``~/enable`` (std_srvs/SetBool: arm/disarm).

Run it as ``ros2 run vla_pruner_ros vla_node`` or ``python -m vla_pruner_ros.ros.node``.
"""

from __future__ import annotations

import functools
import gc
import sys
import threading
import traceback
from collections import OrderedDict, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, MultiDOFJointTrajectory

from ..codecs import camera_frame, joint_trajectory, multidof_trajectory, pose_arrays, pose_stamped, stamp_seconds
from ..control import ControlCore, Plan
from ..errors import InputError, SettingsError, VLAPrunerError
from ..images import MessageError
from ..safety import SafetyFilter
from ..settings import NodeSettings, check_against_model, declared_types, parameters, settings_from_flat
from .conversions import RCLPY, decode_image
from .spin import run_node

THROTTLE_S = 5.0
SUCCESS, FAILURE, ERROR = (TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE,
                           TransitionCallbackReturn.ERROR)

ROS_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
             str: Parameter.Type.STRING}  # of the parameters declared without a value


def _percentile(values, q: float) -> float:
    return float(np.percentile(list(values), q)) if values else 0.0


def _transition(method):
    """A lifecycle callback that reports its failure: rclpy turns an exception into ERROR silently."""

    @functools.wraps(method)
    def wrapper(self: VLANode, state: LifecycleState) -> TransitionCallbackReturn:
        name = method.__name__.removeprefix("on_")
        try:
            return method(self, state)
        except VLAPrunerError as err:
            self.transition_error = str(err)
            if self.report_transition_errors:
                self.get_logger().error(f"{name} failed: {err}")
            return FAILURE
        except Exception as err:  # a bug: its traceback goes to the log
            self.transition_error = f"{type(err).__name__}: {err}"
            self.get_logger().error(f"{name} failed with an unexpected {type(err).__name__} (a bug; please report "
                                    f"it):\n{traceback.format_exc().rstrip()}")
            return ERROR

    return wrapper


class VLANode(LifecycleNode):
    def __init__(self, node_name: str = "vla_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.transition_error: str | None = None
        self.report_transition_errors = True
        self.settings: NodeSettings | None = None
        self.policy = None
        self.core: ControlCore | None = None
        self.armed = False
        self._was_armed = False
        self._held: tuple[PoseStamped, float] | None = None
        self._outputs: list = []
        self._served: list = []
        self._inputs: list = []
        self._tick_timer = None
        self._planner: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reset_stats()
        period = self.get_parameter("diagnostics_period_s").value
        if not period > 0:
            raise SettingsError(f"diagnostics_period_s={period} must be > 0")
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        # on the steady clock: a simulation whose /clock stopped still shows why
        self.create_timer(period, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.get_parameter("autostart").value:
            self.start()

    def start(self) -> None:
        """Configure and activate now (``autostart``); a failure raises its one-line error."""
        self.report_transition_errors = False  # the caller reports it
        try:
            for step, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
                if trigger() != SUCCESS:
                    raise SettingsError(self.transition_error or f"{step} failed (see the log above)")
        finally:
            self.report_transition_errors = True

    @property
    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    # ---- parameters -------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        for name, param in parameters().items():
            # a parameter without a default is declared with its type and no value: not set unless given
            value = ROS_TYPES[param.type.kind] if param.default is None else param.default
            self.declare_parameter(name, value, ParameterDescriptor(description=param.description))

    def _read_settings(self) -> NodeSettings:
        unset = Parameter("unset", value=None)
        return settings_from_flat({name: self.get_parameter_or(name, unset).value for name in parameters()})

    def _on_set_parameters(self, params) -> SetParametersResult:
        if self.lifecycle_state != "unconfigured" and any(p.name in parameters() for p in params):
            return SetParametersResult(successful=False, reason="vla_node reads its parameters at configure; "
                                                                "cleanup (or restart) to change them")
        return SetParametersResult(successful=True)

    # ---- lifecycle --------------------------------------------------------------------------------
    @_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from ..factory import build_policy  # the model stack loads here, not at import

        self.transition_error = None
        s = self.settings = self._read_settings()
        self.policy = build_policy(s)
        mcfg = self.policy.model.config
        check_against_model(s, mcfg.num_cameras, mcfg.proprio_dim)
        self.core = ControlCore(self.policy, s.control, SafetyFilter(s.safety), log=self.get_logger().error)
        self.armed = self._was_armed = not s.dry_run
        self._held = None
        self._reset_stats()
        self.chunk_pub = self.create_lifecycle_publisher(JointTrajectory, "~/action_chunk", 10)
        self._outputs = [self.chunk_pub]
        self.traj_pub = self.target_pub = self.gripper_pub = None
        if s.pose_feedback:
            self.traj_pub = self.create_lifecycle_publisher(MultiDOFJointTrajectory, "~/ee_trajectory", 10)
            self.target_pub = self.create_lifecycle_publisher(PoseStamped, "~/ee_target", 10)
            self.gripper_pub = self.create_lifecycle_publisher(Float64, "~/gripper", 10)
            self._outputs += [self.traj_pub, self.target_pub, self.gripper_pub]
        self._served = [self.create_service(Trigger, "~/reset", self._on_reset),
                          self.create_service(SetBool, "~/enable", self._on_enable)]
        self.get_logger().info(
            f"configured: model={s.model.path} head={mcfg.head} cameras={mcfg.num_cameras} method={s.pruning.method} "
            f"keep_ratio={s.pruning.keep_ratio} rate={s.control.rate_hz} Hz")
        return SUCCESS

    @_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self.settings
        self.core.reset(self._now())  # nothing from before the node was active
        camera_qos = QoSProfile(
            depth=s.camera.qos_depth, history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if s.camera.qos_reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE)
        latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        image_type = CompressedImage if s.camera.compressed else Image
        cams = self.policy.model.config.num_cameras
        self._inputs = [self.create_subscription(image_type, topic, functools.partial(self._on_image, cam), camera_qos)
                        for cam, topic in enumerate(["image", "wrist_image"][:cams])]
        self._inputs.append(self.create_subscription(String, "instruction", self._on_instruction, latched))
        if s.pose_feedback:
            self._inputs.append(self.create_subscription(PoseStamped, "ee_pose", self._on_pose, 10))
        self._stop.clear()
        self._planner = threading.Thread(target=self._plan_loop, name="vla_planner", daemon=True)
        self._planner.start()
        self._tick_timer = self.create_timer(s.control.dt, self._on_tick)
        result = super().on_activate(state)  # the lifecycle publishers
        self.get_logger().info(f"active: {'DRY RUN (call ~/enable to arm)' if not self.armed else 'ARMED'}")
        return result

    @_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        self._publish_hold()  # the last target once more, then nothing: the controller holds it
        result = super().on_deactivate(state)
        self.get_logger().info("inactive: planning stopped, holding the last target")
        return result

    @_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("unconfigured: model freed")
        return SUCCESS

    @_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        self._release()
        return SUCCESS

    @_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity()
        self._release()
        return SUCCESS  # back to unconfigured: configure may be tried again

    def _stop_activity(self) -> None:
        """Stop planning and execution: planner joined, timer and subscriptions gone, episode ended."""
        if self.core is not None:
            self.core.reset()  # a plan still being computed belongs to an ended episode: dropped
        self._stop.set()
        self._wake.set()
        if self._planner is not None and self._planner.is_alive():
            self._planner.join(timeout=30.0)
            if self._planner.is_alive():
                self.get_logger().warning("the planner is still finishing a plan; its result will be dropped")
        self._planner = None
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = None
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []

    def _release(self) -> None:
        for pub in self._outputs:
            self.destroy_lifecycle_publisher(pub)
        for srv in self._served:
            self.destroy_service(srv)
        self._outputs, self._served = [], []
        self.policy = self.core = None
        self._held = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    # ---- inputs -----------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _reject(self, err: InputError, what: str) -> None:
        self.core.counters.bad_messages[getattr(err, "reason", "value")] += 1
        self.get_logger().warning(f"dropped {what}: {err}", throttle_duration_sec=THROTTLE_S)

    def _on_image(self, camera: int, msg) -> None:
        try:
            frame = camera_frame(msg, raw=decode_image)
        except MessageError as err:
            self._reject(err, f"camera {camera} frame")
            return
        stamp = stamp_seconds(msg.header.stamp)
        if stamp:
            self._stamps[stamp] = msg.header.stamp  # published chunks carry the exact source stamp
            while len(self._stamps) > 64:
                self._stamps.popitem(last=False)
        else:
            stamp = self._now()
        if self.core.set_image(camera, frame, stamp):
            self._wake.set()

    def _on_instruction(self, msg: String) -> None:
        try:
            changed = self.core.set_instruction(msg.data)
        except InputError as err:
            self._reject(MessageError("instruction", str(err)), "instruction")
            return
        if changed:
            self.get_logger().info(f"instruction {msg.data.strip()!r}: episode {self.core.episode}")
        self._wake.set()

    def _on_pose(self, msg: PoseStamped) -> None:
        position, orientation = pose_arrays(msg)
        try:
            self.core.set_pose(position, orientation, stamp_seconds(msg.header.stamp) or self._now())
        except InputError as err:
            self._reject(MessageError("pose", str(err)), "pose")

    def _on_reset(self, _request, response):
        episode = self.core.reset(self._now())
        self._held = None  # no hold of the old episode's target: nothing is published until the new one plans
        response.success = True
        response.message = f"episode {episode}: temporal state cleared before the next plan"
        self.get_logger().info(response.message)
        self._wake.set()
        return response

    def _on_enable(self, request, response):
        self.armed = bool(request.data)
        self._was_armed = self._was_armed or self.armed
        response.success = True
        response.message = "armed" if self.armed else "disarmed: holding the last target"
        self.get_logger().info(response.message)
        return response

    # ---- planning (the planner thread: the only one that runs the policy) ---------------------------
    def _plan_loop(self) -> None:
        core = self.core
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                request = core.plan_request(self._now())
                if request is None:
                    continue
                outcome = core.try_plan(request, self._now)
                if outcome.plan is not None and not self._stop.is_set():
                    self._record(outcome.plan)
                    self._publish_plan(outcome.plan)
            except Exception as err:  # a bug outside the policy: reported like any planning failure
                if not self.context.ok():  # a signal shut the process's context down: nothing to publish to
                    break
                core.counters.plan_errors += 1
                core.errors.record(err, "planner")

    def _record(self, plan: Plan) -> None:
        self._last_stats = plan.chunk.stats
        self._tick_ms.append(plan.chunk.stats.latency_ms["total"])
        self._age_ms.append(1000.0 * (self._now() - plan.t0))

    def _publish_plan(self, plan: Plan) -> None:
        frame = self.settings.control.action_frame
        msg = joint_trajectory(RCLPY, plan.deltas, plan.chunk.names, plan.chunk.dt, plan.t0, frame)
        exact = self._stamps.get(plan.t0)
        if exact is not None:
            msg.header.stamp = exact
        self.chunk_pub.publish(msg)
        if self.armed and self.traj_pub is not None and plan.positions is not None:
            self.traj_pub.publish(multidof_trajectory(RCLPY, plan.positions, plan.orientations, plan.chunk.dt, plan.t0,
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
            if self._was_armed:  # disarmed: hold the last target
                self._publish_hold()
            return
        if cmd is None or cmd.position is None:
            self._publish_hold()
            return
        target = pose_stamped(RCLPY, cmd.position, cmd.orientation, now, self.settings.control.action_frame)
        self._held = (target, cmd.gripper)
        self.target_pub.publish(target)
        self.gripper_pub.publish(Float64(data=cmd.gripper))

    def _publish_hold(self) -> None:
        """The last target again, stamped now (a controller's watchdog sees a live node holding)."""
        if self._held is not None and self.target_pub is not None:
            target = self._held[0]
            target.header.stamp = self.get_clock().now().to_msg()
            self.target_pub.publish(target)
            self.gripper_pub.publish(Float64(data=self._held[1]))

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

    def _reset_stats(self) -> None:
        self._tick_ms: deque = deque(maxlen=200)
        self._age_ms: deque = deque(maxlen=200)
        self._last_stats = None
        self._ticks = 0
        self._missed_ticks = 0
        self._last_tick: float | None = None
        self._tick_times: deque = deque(maxlen=100)
        self._stamps: OrderedDict[float, object] = OrderedDict()  # float stamp -> exact header stamp

    # ---- diagnostics ------------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, str]:
        values = {"lifecycle_state": self.lifecycle_state}
        core = self.core
        if core is None:
            return {**values, "configure_error": self.transition_error or ""}
        now = self._now()
        c = core.counters
        st = self.policy.state.summary()
        values.update({
            "method": self.settings.pruning.method, "keep_ratio": f"{st['keep_ratio']:.3f}",
            "phase": st["phase"], "episode": str(core.episode), "tick": str(st["tick"]),
            "window_fill": str(st["window_fill"]),
            "tokens_kept": str(sum(self._last_stats.tokens_kept)) if self._last_stats else "",
            "tokens_total": str(sum(self._last_stats.tokens_total)) if self._last_stats else "",
            "tick_ms_p50": f"{_percentile(self._tick_ms, 50):.1f}",
            "tick_ms_p95": f"{_percentile(self._tick_ms, 95):.1f}",
            "image_to_chunk_ms_p50": f"{_percentile(self._age_ms, 50):.1f}",
            "image_to_chunk_ms_p95": f"{_percentile(self._age_ms, 95):.1f}",
            "input_age_s": f"{core.image_age(now):.3f}",
            "control_ticks": str(self._ticks), "missed_ticks": str(self._missed_ticks),
            "control_rate_hz": f"{self.control_rate():.2f}",
            "limits_hit": str(sum(core.safety.hits.values())),
            **{f"limit_{k}": str(v) for k, v in sorted(core.safety.hits.items())},
            **{k: str(v) for k, v in c.as_dict().items()},
            **{f"bad_{k}": str(v) for k, v in sorted(c.bad_messages.items())},
            **{f"error_{k}": str(v) for k, v in sorted(core.errors.by_kind.items())},
            "last_error": core.errors.last,
            "armed": str(self.armed).lower(), "dry_run": str(self.settings.dry_run).lower(),
            "instruction": core.instruction or "",
        })
        return values

    def _status(self) -> tuple[bytes, str]:
        state = self.lifecycle_state
        if self.core is None:
            if self.transition_error:
                return DiagnosticStatus.ERROR, f"{state}: configure failed: {self.transition_error}"
            return DiagnosticStatus.WARN, f"{state}: waiting for configure"
        if state != "active":
            return DiagnosticStatus.WARN, f"{state}: not planning"
        if self.core.errors.active:
            return DiagnosticStatus.ERROR, f"planning fails: {self.core.errors.last}"
        blocked = self.core.blocked(self._now())
        return (DiagnosticStatus.OK, "running") if blocked is None else (DiagnosticStatus.WARN, f"waiting: {blocked}")

    def _publish_diagnostics(self) -> None:
        level, message = self._status()
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: policy", hardware_id="vla_pruner_ros",
            message=message, values=[KeyValue(key=k, value=v) for k, v in self.diagnostics().items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def destroy_node(self) -> None:
        self._stop_activity()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(VLANode, "vla_node", args, declared_types())


if __name__ == "__main__":
    sys.exit(main())
