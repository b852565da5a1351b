"""What happens on a control tick, without ROS: the one implementation the node, bag replay, eval and
DAgger recording share.

``ControlCore`` keeps the latest frame per camera (older unused frames are dropped and counted; gaps
in a camera's stamps are counted as missed frames), the instruction and the end-effector pose;
decides when a new chunk is due; plans it with ``VLAPolicy.step`` (the heavy part, which the node
runs on its own planner thread); applies the safety limits; and executes the chunk time-indexed: a
chunk planned from an image stamped ``t0`` executes step ``i`` at ``t0 + i * dt``, steps already
past when the chunk arrives are skipped and counted, and an optional blend mixes overlapping chunks.

Episodes. ``reset()`` and a new instruction start an episode at once for everything the controller
sees (the plan is dropped and outputs hold the last command; after a reset, frames taken before it
are refused too) but never touch the policy: a plan request carries the episode it was made for, the thread that
runs the policy clears the temporal state before the first plan of a new episode, and a plan that
finishes for an older episode is dropped, never executed. ``try_plan`` is the one way to run the
policy (``run_plan`` for synchronous callers): every failure is counted and reported through
``PlanErrors`` the same way for every caller.

Times are seconds on one clock (the node's clock live, bag time in replay, simulation time in eval).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, VLAPrunerError
from .policy import ActionChunk, Observation, VLAPolicy
from .proprio import pose_proprio
from .safety import SafetyFilter, integrate_deltas
from .settings import ControlConfig

EPS = 1e-6
LOG = logging.getLogger("vla_pruner_ros")


@dataclass
class Pose:
    position: np.ndarray  # (3,)
    orientation: np.ndarray  # (4,) x, y, z, w
    stamp: float


@dataclass
class PlanRequest:
    observation: Observation
    pose: Pose | None
    episode: int  # the episode it was made for; a plan for an older one is dropped


@dataclass
class Plan:
    """An executed-or-pending chunk: deltas after the safety limits, absolute targets if a pose was known."""

    chunk: ActionChunk
    deltas: np.ndarray  # (T, A) clamped
    positions: np.ndarray | None = None  # (T, 3)
    orientations: np.ndarray | None = None  # (T, 4)
    next_step: int = 0  # first step not yet executed or skipped
    episode: int = 0  # the episode it was planned for

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
    frames_missed: Counter = field(default_factory=Counter)  # gaps in a camera's stamps (lost before arrival)
    frames_before_reset: int = 0  # stamped before the latest reset: refused
    plan_errors: int = 0
    stale_plans: int = 0  # finished for an episode that had ended: dropped
    bad_messages: Counter = field(default_factory=Counter)  # by reason

    def as_dict(self) -> dict:
        return {"frames_received": sum(self.frames_received.values()),
                "frames_dropped": sum(self.frames_dropped.values()),
                "frames_missed": sum(self.frames_missed.values()), "frames_before_reset": self.frames_before_reset,
                "chunks": self.chunks, "steps_executed": self.steps_executed, "steps_skipped": self.steps_skipped,
                "plan_errors": self.plan_errors, "stale_plans": self.stale_plans,
                "bad_messages": sum(self.bad_messages.values())}


class PlanErrors:
    """Planning failures, counted by kind and reported alike for every caller.

    A package error (``VLAPrunerError``: bad input, a non-finite output) is reported as its one-line
    message; anything else is a bug and its first report carries the traceback. After the first of
    a kind, reports are throttled to one per ``throttle_s`` with the count since. ``active`` is True
    from a failure until the next plan succeeds (the node's diagnostics show ERROR meanwhile).
    """

    def __init__(self, log: Callable[[str], None] | None = None, throttle_s: float = 5.0) -> None:
        self.log = log or LOG.error
        self.throttle_s = throttle_s
        self.by_kind: Counter = Counter()
        self.active = False
        self.last = ""
        self._last_report: dict[str, float] = {}
        self._since: Counter = Counter()

    def record(self, err: BaseException, what: str = "no chunk from this frame") -> None:
        kind = type(err).__name__
        self.by_kind[kind] += 1
        self.active = True
        self.last = f"{kind}: {err}"
        now = time.monotonic()
        first = kind not in self._last_report
        if not first and now - self._last_report[kind] < self.throttle_s:
            self._since[kind] += 1
            return
        more = f" ({self._since[kind]} more since the last report)" if self._since[kind] else ""
        self._last_report[kind], self._since[kind] = now, 0
        if isinstance(err, VLAPrunerError):
            self.log(f"{what}: {err}{more}")
        elif first:
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip()
            self.log(f"{what}: unexpected {kind} (a bug; please report it):\n{text}")
        else:
            self.log(f"{what}: unexpected {kind}: {err}{more} (traceback logged at its first occurrence)")

    def clear(self) -> None:
        self.active = False


@dataclass
class PlanOutcome:
    """What one ``ControlCore.plan`` call did: installed a plan, failed, or finished too late."""

    plan: Plan | None = None
    error: BaseException | None = None
    stale: bool = False  # computed for an episode that ended meanwhile: dropped


class ControlCore:
    """Inputs in, chunks and per-tick commands out. Thread-safe for one planner thread (the only one
    that runs the policy) and any number of input and ticker threads."""

    def __init__(self, policy: VLAPolicy, control: ControlConfig | None = None,
                 safety: SafetyFilter | None = None, log: Callable[[str], None] | None = None) -> None:
        self.policy = policy
        self.control = control or ControlConfig()
        self.safety = safety or SafetyFilter()
        self.counters = Counters()
        self.errors = PlanErrors(log)
        self._lock = threading.Lock()
        cams = policy.model.config.num_cameras
        self._frames: list[tuple[np.ndarray, float] | None] = [None] * cams
        self._fresh: list[bool] = [False] * cams
        self._periods: list[deque] = [deque(maxlen=20) for _ in range(cams)]  # recent stamp intervals
        self._last_stamp: list[float | None] = [None] * cams
        self._instruction: str | None = None
        self._pose: Pose | None = None
        self._plan: Plan | None = None
        self._executed_since_plan = 0
        self._last_command: StepCommand | None = None
        self._last_target: tuple[np.ndarray, np.ndarray] | None = None  # the last absolute target commanded
        self._reset_stamp = -math.inf  # frames stamped before it belong to an ended episode
        self.episode = 0
        self._policy_episode = 0  # the episode the policy's temporal state belongs to (planner thread only)

    # ---- inputs -----------------------------------------------------------------------------------
    def set_image(self, camera: int, frame: np.ndarray, stamp: float) -> bool:
        """Store a camera's newest frame; False (and counted) when it was taken before the latest reset."""
        stamp = float(stamp)
        with self._lock:
            if stamp < self._reset_stamp:
                self.counters.frames_before_reset += 1
                return False
            self._count_gap(camera, stamp)
            if self._fresh[camera]:
                self.counters.frames_dropped[camera] += 1
            self._frames[camera] = (frame, stamp)
            self._fresh[camera] = True
            self.counters.frames_received[camera] += 1
            return True

    def _count_gap(self, camera: int, stamp: float) -> None:
        """Missed frames: an interval longer than 1.5 typical ones (the median of the last 20)."""
        last = self._last_stamp[camera]
        self._last_stamp[camera] = stamp
        if last is None or stamp <= last:
            return
        interval, recent = stamp - last, self._periods[camera]
        if len(recent) >= 5:
            typical = float(np.median(recent))
            if typical > 0 and interval > 1.5 * typical:
                self.counters.frames_missed[camera] += int(round(interval / typical)) - 1
                return  # a gap is not a typical interval
        recent.append(interval)

    def set_instruction(self, text: str) -> bool:
        """Set the task; a different instruction starts a new episode. Returns True if it changed."""
        text = text.strip()
        if not text:
            raise InputError("instruction is empty")
        with self._lock:
            if text == self._instruction:
                return False
            self._instruction = text
            self._new_episode(None, keep_frames=True)  # the newest frames still show the scene
        return True

    def set_pose(self, position: np.ndarray, orientation: np.ndarray, stamp: float) -> None:
        position, orientation = np.asarray(position, float), np.asarray(orientation, float)
        if not (position.shape == (3,) and orientation.shape == (4,) and np.all(np.isfinite(position))
                and np.all(np.isfinite(orientation)) and np.linalg.norm(orientation) > 1e-6):
            raise InputError(f"pose is not finite or its quaternion is zero: {position.tolist()} "
                             f"{orientation.tolist()}")
        with self._lock:
            self._pose = Pose(position, orientation / np.linalg.norm(orientation), float(stamp))

    def reset(self, now: float | None = None) -> int:
        """New episode: the current plan is dropped at once and, with ``now``, frames stamped before it
        are refused; the policy's temporal state is cleared before the next plan (by the planner).
        Returns the new episode number."""
        with self._lock:
            self._new_episode(now)
            return self.episode

    def _new_episode(self, now: float | None, keep_frames: bool = False) -> None:  # lock held
        self.episode += 1
        self._plan = None
        self._executed_since_plan = 0
        if not keep_frames:
            self._frames = [None] * len(self._frames)
            self._fresh = [False] * len(self._fresh)
            # the arm may have been moved (homed) between episodes: nothing of the old episode is commanded
            # again (no hold of its last target) or fed to the model (the proprio's gripper value starts open,
            # as in any episode, not at the old episode's last command), and the new episode's first target
            # starts from the measured pose, not from a step limit around the old episode's last target
            self._last_target = None
            self._last_command = None
        if now is not None:
            self._reset_stamp = float(now)

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
        if self.policy.model.config.proprio_dim and self.pose_age(now) > self.safety.config.pose_timeout_s:
            return ("no end-effector pose yet" if self._pose is None else
                    f"end-effector pose is {self.pose_age(now):.2f} s old (limit {self.safety.config.pose_timeout_s}"
                    " s)") + "; the model needs it as proprio"
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
                last = self._last_command.gripper if self._last_command is not None else None
                proprio = pose_proprio(pose.position, pose.orientation, last, self.policy.model.config.proprio_dim)
            return PlanRequest(Observation(frames, self._instruction, proprio, stamp), pose, self.episode)

    def compute_plan(self, request: PlanRequest) -> Plan:
        """Run the policy and the safety limits (heavy; no lock held; only ever on the planner thread).
        The first plan of a new episode starts from a cleared temporal state. Raises on bad output."""
        if request.episode != self._policy_episode:
            self.policy.reset()
            self._policy_episode = request.episode
        chunk = self.policy.step(request.observation)
        deltas = self.safety.clamp_deltas(chunk.actions)
        if self.control.gripper_threshold:
            cfg = self.safety.config
            deltas[:, 6] = np.where(deltas[:, 6] >= self.control.gripper_threshold, cfg.gripper_max, cfg.gripper_min)
        plan = Plan(chunk, deltas, episode=request.episode)
        if request.pose is not None:
            plan.positions, plan.orientations = integrate_deltas(
                request.pose.position, request.pose.orientation, deltas, self.safety)
        return plan

    def install(self, plan: Plan, now: float) -> int | None:
        """Schedule a plan at time ``now``; returns how many of its steps were already past and skipped,
        or None (counted in ``stale_plans``) when its episode has ended: it is dropped."""
        with self._lock:
            if plan.episode != self.episode:
                self.counters.stale_plans += 1
                return None
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

    def try_plan(self, request: PlanRequest, now: Callable[[], float]) -> PlanOutcome:
        """Compute and install the plan of ``request`` (``now()`` read when it is done): the one way to
        run the policy. Never raises: a failure is counted, reported through ``errors`` and returned."""
        try:
            plan = self.compute_plan(request)
        except Exception as err:  # every failure is reported the same way; a bug keeps its traceback
            self.counters.plan_errors += 1
            self.errors.record(err)
            return PlanOutcome(error=err)
        self.errors.clear()
        if self.install(plan, now()) is None:
            return PlanOutcome(stale=True)
        return PlanOutcome(plan)

    def run_plan(self, now: float) -> Plan | None:
        """Synchronous planning for offline use (replay, eval, DAgger): request, compute and install in
        one call; None when no plan was due or it failed (see ``errors``)."""
        request = self.plan_request(now)
        return None if request is None else self.try_plan(request, lambda: now).plan

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
                    position = None if plan.positions is None else plan.positions[i]
                    orientation = None if plan.orientations is None else plan.orientations[i]
                    if position is not None:
                        if self._last_target is not None:
                            # a new chunk is integrated from a measured pose that lags the commands: the
                            # target moves at most one step's limits from the last one, never jumps
                            position, orientation = self.safety.limit_target_step(self._last_target,
                                                                                  (position, orientation))
                        self._last_target = (position, orientation)
                    self._last_command = StepCommand(i, d, float(d[6]), position, orientation, hold=False)
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
