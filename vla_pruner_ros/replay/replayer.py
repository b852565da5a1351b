"""Offline replay: recorded episodes through the pruned policy, with the node's own tick logic.

Control ticks follow bag time at ``control.rate_hz`` from the first camera frame. Before each tick
every message up to that time is fed to the same ``ControlCore`` the live node uses (newest frame,
instruction, pose); then a chunk is planned if one is due (synchronously: offline there is no
sleeping, inference takes what it takes) and the tick's step is executed. A new instruction starts
a new episode, and so does a gap in the camera stream longer than ``episode_gap_s`` (the offline
``~/reset``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codecs import camera_frame, pose_arrays
from ..control import ControlCore
from ..errors import InputError, VLAPrunerError
from ..factory import build_policy
from ..images import MessageError
from ..policy import TickStats
from ..safety import SafetyFilter
from ..settings import NodeSettings
from .bag import BagMessage


class ReplayError(VLAPrunerError):
    """The bag cannot be replayed as asked (message names the reason)."""


@dataclass
class ChunkRecord:
    tick: int
    t: float  # tick time (bag s)
    stamp: float  # source image stamp (bag s)
    episode: int
    actions: np.ndarray  # (T, A) after the safety limits
    stats: TickStats
    kept_tokens: list[np.ndarray] | None
    frame_index: int
    state: dict[str, Any]


@dataclass
class MethodRun:
    method: str
    chunks: list[ChunkRecord] = field(default_factory=list)
    executed: list[tuple[float, int, np.ndarray]] = field(default_factory=list)  # (t, episode, step delta)
    tick_log: list[dict[str, Any]] = field(default_factory=list)  # per control tick: what happened
    ticks: int = 0
    episodes: int = 0
    warnings: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass
class ReplayInput:
    """What replay reads from a bag: time-ordered messages and the topics' roles."""

    messages: list[BagMessage]
    image_topic: str
    instruction_topic: str | None
    instruction: str | None = None  # used when the bag has no instruction topic
    pose_topic: str | None = None
    episode_gap_s: float = 1.0
    size_change: str = "resize"  # resize | stop
    wrist_topic: str | None = None  # the second camera, for two-camera models


def frames_of(inp: ReplayInput) -> list[tuple[float, np.ndarray | None]]:
    """(time, RGB frame or None if undecodable) of every camera message, in order."""
    out = []
    for m in inp.messages:
        if m.topic == inp.image_topic:
            try:
                out.append((m.time, camera_frame(m.msg)))
            except MessageError:
                out.append((m.time, None))
    return out


class _Feeder:
    """Hands a bag's messages to a ``ControlCore`` as the node's callbacks would: frames decoded (a
    systematic decoding error stops the replay, a bad frame is dropped and counted), a camera gap longer
    than ``episode_gap_s`` starts an episode, size changes resized or refused; problems go to ``warnings``."""

    def __init__(self, inp: ReplayInput, core: ControlCore, wrist_topic: str | None, warnings: list[str],
                 t0: float) -> None:
        self.inp, self.core, self.wrist_topic, self.warnings, self.t0 = inp, core, wrist_topic, warnings, t0
        self.frame_index, self.bad = -1, 0
        self.last_image_t: float | None = None
        self.shape: tuple | None = None

    def _dropped(self, what: str, m: BagMessage, err: Exception) -> None:
        self.bad += 1
        if self.bad <= 3:
            self.warnings.append(f"{what} at {m.time - self.t0:.3f} s dropped: {err}")

    def feed(self, m: BagMessage) -> None:
        inp, core, at = self.inp, self.core, m.time - self.t0
        if m.topic == inp.image_topic:
            self.frame_index += 1
            try:
                frame = camera_frame(m.msg)
            except MessageError as err:
                if err.reason in ("encoding", "format") and self.shape is None:
                    raise ReplayError(f"{inp.image_topic}: {err}") from None  # systematic, not one bad frame
                self._dropped("frame", m, err)
                return
            shape = self.shape
            if shape is not None and frame.shape != shape:
                if inp.size_change == "stop":
                    raise ReplayError(f"frame size changed from {shape[1]}x{shape[0]} to "
                                      f"{frame.shape[1]}x{frame.shape[0]} at {at:.3f} s (camera.size_change: stop)")
                self.warnings.append(f"frame size changed from {shape[1]}x{shape[0]} to {frame.shape[1]}x"
                                     f"{frame.shape[0]} at {at:.3f} s; frames are resized to the model")
            self.shape = frame.shape
            if self.last_image_t is not None and m.time - self.last_image_t > inp.episode_gap_s:
                core.reset()
            self.last_image_t = m.time
            core.set_image(0, frame, m.time)
        elif m.topic == self.wrist_topic:
            try:
                core.set_image(1, camera_frame(m.msg), m.time)
            except MessageError as err:
                self._dropped("wrist frame", m, err)
        elif m.topic == inp.instruction_topic:
            try:
                core.set_instruction(m.msg.data)
            except InputError as err:
                self.warnings.append(f"instruction at {at:.3f} s ignored: {err}")
        elif m.topic == inp.pose_topic:
            try:
                core.set_pose(*pose_arrays(m.msg), m.time)
            except InputError as err:
                self.warnings.append(f"pose at {at:.3f} s ignored: {err}")


def replay_method(inp: ReplayInput, settings: NodeSettings, model, tokenizer, method: str, keep_ratio: float | None,
                  progress=None) -> MethodRun:
    pruning = settings.pruning
    if method:
        pruning = dataclasses.replace(pruning, method=method)
    if keep_ratio is not None:
        pruning = dataclasses.replace(pruning, keep_ratio=keep_ratio)
    policy = build_policy(dataclasses.replace(settings, pruning=pruning), model, tokenizer)
    cams = policy.model.config.num_cameras
    if cams > 2 or (cams == 2 and inp.wrist_topic is None):
        raise ReplayError(f"the model expects {cams} cameras; replay feeds the image topic"
                          + (" and a wrist topic (--wrist-topic; none found in the bag)" if cams == 2 else " only"))
    wrist_topic = inp.wrist_topic if cams == 2 else None
    run = MethodRun(policy.pruner.name)
    t, t0 = 0.0, 0.0
    core = ControlCore(policy, settings.control, SafetyFilter(settings.safety),
                       log=lambda message: run.warnings.append(f"at {t - t0:.3f} s: {message}"))
    images = [m for m in inp.messages if m.topic == inp.image_topic]
    if not images:
        raise ReplayError(f"no frames on {inp.image_topic!r} in the replayed range")
    dt = settings.control.dt
    t0, t_end = images[0].time, images[-1].time
    n_ticks = int(np.floor((t_end - t0) / dt + 1e-9)) + 1
    if inp.instruction_topic is None:
        if not inp.instruction:
            raise ReplayError("the bag has no instruction topic; pass the task with --instruction")
        core.set_instruction(inp.instruction)
    feeder = _Feeder(inp, core, wrist_topic, run.warnings, t0)
    i = 0
    start = time.perf_counter()
    for k in range(n_ticks):
        t = t0 + k * dt
        while i < len(inp.messages) and inp.messages[i].time <= t + 1e-9:
            feeder.feed(inp.messages[i])
            i += 1
        plan = core.run_plan(t)
        if plan is not None:
            run.chunks.append(ChunkRecord(k, t, plan.t0, core.episode, plan.deltas.copy(), plan.chunk.stats,
                                          plan.chunk.kept_tokens, feeder.frame_index, policy.state.summary()))
        cmd = core.command(t)
        if cmd is not None and not cmd.hold:
            run.executed.append((t, core.episode, cmd.delta.copy()))
        run.tick_log.append({"t": t, "episode": core.episode, "planned": plan is not None,
                             "step": -1 if cmd is None else cmd.index, "hold": bool(cmd is None or cmd.hold),
                             "blocked": core.blocked(t) or "", **policy.state.summary()})
        run.ticks = k + 1
        if progress:
            progress(k + 1, n_ticks, time.perf_counter() - start)
    if feeder.bad > 3:
        run.warnings.append(f"... {feeder.bad} undecodable frames in all")
    run.episodes = core.episode
    run.counters = {**core.counters.as_dict(), "limits_hit": sum(core.safety.hits.values()), "bad_frames": feeder.bad}
    run.wall_s = time.perf_counter() - start
    return run
