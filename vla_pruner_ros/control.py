"""What happens on a control tick, without ROS: the one implementation the node and bag replay share.

``ControlCore`` keeps the latest frame per camera (older unused frames are dropped and counted),
the instruction (a change starts a new episode) and the end-effector pose; decides when a new
chunk is due; plans it with ``VLAPolicy.step`` (the heavy part, which the node runs off its
executor thread); applies the safety limits; and executes the chunk time-indexed: a chunk planned
from an image stamped ``t0`` executes step ``i`` at ``t0 + i * dt``, steps already past when the
chunk arrives are skipped and counted, and an optional blend mixes overlapping chunks.

Times are seconds on one clock (the node's clock live, bag time in replay).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .policy import ActionChunk, NonFiniteActionError, Observation, VLAPolicy
from .safety import SafetyFilter, UnsafeActionError, integrate_deltas

EPS = 1e-6


@dataclass(frozen=True)
class ControlConfig:
    """Attributes:
        rate_hz: control tick rate; one action step per tick.
        replan_steps: executed steps after which a new chunk is planned; 0 = the chunk length
            (open-loop execution of whole chunks, as OpenVLA-OFT does).
        blend: weight of the older chunk where a new chunk overlaps it (0 = the new chunk replaces it).
        action_frame: frame id of published actions and targets.
        gripper_threshold: > 0: the gripper command becomes binary after the safety limits, fully open
            (``gripper_max``) at or above it and closed (``gripper_min``) below, as OpenVLA's evaluations
            binarise it; 0: the model's continuous value goes out as it is (a half-closed gripper).
    """

    rate_hz: float = 5.0
    replan_steps: int = 0
    blend: float = 0.0
    action_frame: str = "base_link"
    gripper_threshold: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, (int, float)) or not 0 < self.rate_hz <= 1000:
            raise ValueError(f"control.rate_hz={self.rate_hz!r} must be in (0, 1000]")
        if isinstance(self.replan_steps, bool) or not isinstance(self.replan_steps, int) or self.replan_steps < 0:
            raise ValueError(f"control.replan_steps={self.replan_steps!r} must be an integer >= 0 (0 = chunk length)")
        if not 0.0 <= float(self.blend) < 1.0:
            raise ValueError(f"control.blend={self.blend!r} must be in [0, 1)")
        if isinstance(self.gripper_threshold, bool) or not isinstance(self.gripper_threshold, (int, float)) or \
                not 0.0 <= self.gripper_threshold < 1.0:
            raise ValueError(f"control.gripper_threshold={self.gripper_threshold!r} must be in [0, 1) "
                             "(0 = continuous gripper commands)")

    @property
    def dt(self) -> float:
        return 1.0 / float(self.rate_hz)


@dataclass
class Pose:
    position: np.ndarray  # (3,)
    orientation: np.ndarray  # (4,) x, y, z, w
    stamp: float


@dataclass
class PlanRequest:
    observation: Observation
    pose: Pose | None


@dataclass
class Plan:
    """An executed-or-pending chunk: deltas after the safety limits, absolute targets if a pose was known."""

    chunk: ActionChunk
    deltas: np.ndarray  # (T, A) clamped
    positions: np.ndarray | None = None  # (T, 3)
    orientations: np.ndarray | None = None  # (T, 4)
    next_step: int = 0  # first step not yet executed or skipped

    @property
    def t0(self) -> float:
        return self.chunk.stamp

    def time_of(self, i: int) -> float:
        return self.t0 + i * self.chunk.dt


@dataclass
class StepCommand:
    """What the controller-facing outputs carry on one control tick."""

    index: int  # step index within the plan
    delta: np.ndarray  # (A,)
    gripper: float
    position: np.ndarray | None  # absolute target, when a pose is known
    orientation: np.ndarray | None
    hold: bool  # True: repeat the last command (no new motion)


@dataclass
class Counters:
    frames_received: Counter = field(default_factory=Counter)  # per camera
    frames_dropped: Counter = field(default_factory=Counter)  # overwritten before any plan used them
    chunks: int = 0
    steps_executed: int = 0
    steps_skipped: int = 0  # past due when their chunk arrived
    plan_errors: int = 0
    bad_messages: Counter = field(default_factory=Counter)  # by reason

    def as_dict(self) -> dict:
        return {"frames_received": sum(self.frames_received.values()),
                "frames_dropped": sum(self.frames_dropped.values()), "chunks": self.chunks,
                "steps_executed": self.steps_executed, "steps_skipped": self.steps_skipped,
                "plan_errors": self.plan_errors, "bad_messages": sum(self.bad_messages.values())}


class ControlCore:
    """Inputs in, chunks and per-tick commands out. Thread-safe for one planner and one ticker."""

    def __init__(self, policy: VLAPolicy, control: ControlConfig | None = None,
                 safety: SafetyFilter | None = None) -> None:
        self.policy = policy
        self.control = control or ControlConfig()
        self.safety = safety or SafetyFilter()
        self.counters = Counters()
        self._lock = threading.Lock()
        self._frames: list[tuple[np.ndarray, float] | None] = [None] * policy.model.config.num_cameras
        self._fresh: list[bool] = [False] * len(self._frames)
        self._instruction: str | None = None
        self._pose: Pose | None = None
        self._plan: Plan | None = None
        self._executed_since_plan = 0
        self._last_command: StepCommand | None = None
        self.episode = 0

    # ---- inputs -----------------------------------------------------------------------------------
    def set_image(self, camera: int, frame: np.ndarray, stamp: float) -> None:
        with self._lock:
            if self._fresh[camera]:
                self.counters.frames_dropped[camera] += 1
            self._frames[camera] = (frame, float(stamp))
            self._fresh[camera] = True
            self.counters.frames_received[camera] += 1

    def set_instruction(self, text: str) -> bool:
        """Set the task; a different instruction starts a new episode. Returns True if it changed."""
        text = text.strip()
        if not text:
            raise ValueError("instruction is empty")
        with self._lock:
            if text == self._instruction:
                return False
            self._instruction = text
        self.reset()
        return True

    def set_pose(self, position: np.ndarray, orientation: np.ndarray, stamp: float) -> None:
        position, orientation = np.asarray(position, float), np.asarray(orientation, float)
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(orientation))
                and np.linalg.norm(orientation) > 1e-6):
            raise ValueError(f"pose is not finite or its quaternion is zero: {position.tolist()} "
                             f"{orientation.tolist()}")
        with self._lock:
            self._pose = Pose(position, orientation / np.linalg.norm(orientation), float(stamp))

    def reset(self) -> None:
        """New episode: the policy's temporal state and the current plan are cleared."""
        with self._lock:
            self.policy.reset()
            self._plan = None
            self._executed_since_plan = 0
            self.episode += 1

    @property
    def instruction(self) -> str | None:
        return self._instruction

    @property
    def plan(self) -> Plan | None:
        return self._plan

    @property
    def last_command(self) -> StepCommand | None:
        return self._last_command

    def image_age(self, now: float) -> float:
        stamps = [f[1] for f in self._frames if f is not None]
        return now - min(stamps) if len(stamps) == len(self._frames) else math.inf

    def pose_age(self, now: float) -> float:
        return math.inf if self._pose is None else now - self._pose.stamp

    def blocked(self, now: float) -> str | None:
        """Why nothing may be planned or commanded now (None = free to go)."""
        if self._instruction is None:
            return "no instruction"
        age = self.image_age(now)
        if math.isinf(age):
            return "no image yet"
        if age > self.safety.config.image_timeout_s:
            return f"image is {age:.2f} s old (limit {self.safety.config.image_timeout_s} s)"
        return None

    # ---- planning ---------------------------------------------------------------------------------
    def replan_due(self, now: float) -> bool:
        """No plan, ``replan_steps`` of it executed, or its last step's time is over (e.g. after a stall)."""
        plan = self._plan
        if plan is None:
            return True
        steps = len(plan.deltas)
        every = self.control.replan_steps or steps
        return (self._executed_since_plan >= every or plan.next_step >= steps
                or now >= plan.time_of(steps) - EPS)

    def plan_request(self, now: float) -> PlanRequest | None:
        """The inputs of the next plan if one is due, allowed, and a camera has a frame no plan has used
        yet (a plan is never computed twice from the same frames); marks the frames as used."""
        with self._lock:
            if self.blocked(now) is not None or not self.replan_due(now) or not any(self._fresh):
                return None
            frames = [f[0] for f in self._frames]
            stamp = min(f[1] for f in self._frames)
            self._fresh = [False] * len(self._fresh)
            pose = self._pose if self.pose_age(now) <= self.safety.config.pose_timeout_s else None
            proprio = None
            if self.policy.model.config.proprio_dim and pose is not None:
                proprio = _pose_proprio(pose, self.policy.model.config.proprio_dim, self._last_command)
            return PlanRequest(Observation(frames, self._instruction, proprio, stamp), pose)

    def compute_plan(self, request: PlanRequest) -> Plan:
        """Run the policy and the safety limits (heavy; no lock held). Raises on bad output."""
        chunk = self.policy.step(request.observation)
        deltas = self.safety.clamp_deltas(chunk.actions)
        if self.control.gripper_threshold:
            cfg = self.safety.config
            deltas[:, 6] = np.where(deltas[:, 6] >= self.control.gripper_threshold, cfg.gripper_max, cfg.gripper_min)
        plan = Plan(chunk, deltas)
        if request.pose is not None:
            plan.positions, plan.orientations = integrate_deltas(
                request.pose.position, request.pose.orientation, deltas, self.safety)
        return plan

    def install(self, plan: Plan, now: float) -> int:
        """Schedule a plan at time ``now``; returns how many of its steps were already past and skipped."""
        with self._lock:
            old = self._plan
            skipped = 0
            while skipped < len(plan.deltas) and plan.time_of(skipped) < now - plan.chunk.dt + EPS:
                skipped += 1
            plan.next_step = skipped
            if old is not None and self.control.blend > 0:
                _blend(old, plan, self.control.blend)
            self._plan = plan
            self._executed_since_plan = 0
            self.counters.chunks += 1
            self.counters.steps_skipped += skipped
            return skipped

    def run_plan(self, now: float) -> Plan | None:
        """Synchronous planning for offline use: request, compute and install in one call."""
        request = self.plan_request(now)
        if request is None:
            return None
        try:
            plan = self.compute_plan(request)
        except (UnsafeActionError, NonFiniteActionError):
            self.counters.plan_errors += 1
            raise
        self.install(plan, now)
        return plan

    # ---- control tick -----------------------------------------------------------------------------
    def command(self, now: float) -> StepCommand | None:
        """The step to execute at ``now``; a hold of the last command when there is no new step or the
        inputs are stale; None before any command exists."""
        with self._lock:
            plan = self._plan
            if self.blocked(now) is None and plan is not None:
                i = int(math.floor((now - plan.t0) / plan.chunk.dt + EPS))
                if plan.next_step <= i < len(plan.deltas):
                    self.counters.steps_skipped += i - plan.next_step
                    plan.next_step = i + 1
                    self._executed_since_plan += 1
                    self.counters.steps_executed += 1
                    d = plan.deltas[i]
                    self._last_command = StepCommand(
                        i, d, float(d[6]), None if plan.positions is None else plan.positions[i],
                        None if plan.orientations is None else plan.orientations[i], hold=False)
                    return self._last_command
            if self._last_command is None:
                return None
            last = self._last_command
            return StepCommand(last.index, np.zeros_like(last.delta), last.gripper, last.position, last.orientation,
                               hold=True)


def _blend(old: Plan, new: Plan, weight_old: float) -> None:
    """Mix the old plan's remaining steps into the new plan's steps at the same times."""
    for i in range(new.next_step, len(new.deltas)):
        t = new.time_of(i)
        j = int(round((t - old.t0) / old.chunk.dt))
        if old.next_step <= j < len(old.deltas) and abs(old.time_of(j) - t) < new.chunk.dt / 2:
            new.deltas[i] = weight_old * old.deltas[j] + (1 - weight_old) * new.deltas[i]
            if new.positions is not None and old.positions is not None:
                new.positions[i] = weight_old * old.positions[j] + (1 - weight_old) * new.positions[i]


def _pose_proprio(pose: Pose, dim: int, last: StepCommand | None) -> np.ndarray:
    """The policy's proprio: end-effector position (3), orientation quaternion x, y, z, w (4) and the
    last gripper command (1 = open before any command): 8 values, padded or cut to ``dim``."""
    values = np.concatenate([pose.position, pose.orientation, [last.gripper if last is not None else 1.0]])
    return np.resize(values, dim) if len(values) < dim else values[:dim]
