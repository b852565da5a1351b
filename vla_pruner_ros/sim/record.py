"""Expert episodes recorded as ROS 2 bags (mcap), one bag per episode: what training reads and
replay consumes.

Topics: ``/camera/image`` (sensor_msgs/Image rgb8, or ``/camera/image/compressed`` jpeg), with
``--wrist`` also ``/camera/wrist/image`` (or ``.../compressed``) from the camera on the hand,
``/instruction`` (std_msgs/String), ``/ee_pose`` (geometry_msgs/PoseStamped), ``/gripper``
(std_msgs/Float64, finger opening in m), ``/expert/action`` (trajectory_msgs/JointTrajectory, one
point, the action dimension names), ``/episode`` (std_msgs/String, JSON: id, seed, task,
instruction, held_out, perturb, policy, beta; the last one also success and steps); when a learned
policy drove (``--policy``, DAgger), ``/executed/action`` holds what was executed, the expert's
action staying the label. Privileged scene state for training's
auxiliary loss (never an input of the policy): ``/scene/target`` and ``/scene/plate``
(PoseStamped), and every object as ``/scene/object/<colour>_<shape>``. Stamps are simulation time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import codecs as C
from ..episode_topics import (
    CAMERA,
    COMPRESSED,
    EE_POSE,
    EPISODE,
    EXECUTED_ACTION,
    EXPERT_ACTION,
    GRIPPER,
    INSTRUCTION,
    OBJECT_PREFIX,
    SCENE_PLATE,
    SCENE_TARGET,
    WRIST_CAMERA,
)
from ..errors import SettingsError
from ..replay.bag import BAG
from ..replay.writer import BagWriter
from ..settings import DEFAULT_ACTION_NAMES
from ..sim_vocabulary import FAMILIES
from .driver import T_START, PolicyDriver
from .env import TabletopEnv
from .expert import run_episode
from .tasks import Task, all_tasks

FRAME = "table"


@dataclass
class RecordSummary:
    episodes: int
    successes: int
    bytes_written: int
    per_family: dict[str, list[int]]  # family -> [successes, episodes]
    seconds: float

    def line(self) -> str:
        rate = self.successes / self.episodes if self.episodes else 0.0
        fams = ", ".join(f"{f} {s}/{n}" for f, (s, n) in sorted(self.per_family.items()))
        return (f"{self.episodes} episodes, success {100 * rate:.1f}% ({fams}), {self.bytes_written / 1e6:.1f} MB "
                f"written in {self.seconds:.0f} s")


def choose_tasks(family: str, split: str, episodes: int, seed: int) -> list[Task]:
    """Seeded tasks: families in turn (so ``all`` is balanced across families), a random task of each."""
    families = FAMILIES if family in (None, "all") else (family,)
    pools = {f: all_tasks(f, split) for f in families}
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        pool = pools[families[i % len(families)]]
        out.append(pool[int(rng.integers(0, len(pool)))])
    return out


IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])


@dataclass
class Dagger:
    """A learned policy drives; at each step the expert's own action is executed instead with
    probability ``beta`` (DAgger's mixing), and it is always the recorded label."""

    driver: PolicyDriver
    beta: float
    model: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise SettingsError(f"beta={self.beta}; expected the expert's share of executed steps in [0, 1]")


def record_episode(env: TabletopEnv, task: Task, seed: int, episode: int, path: Path, compressed: bool = False,
                   noise: float = 0.0, perturb: float = 0.0, dagger: Dagger | None = None) -> tuple[bool, int]:
    """Roll out the expert on (task, seed) and write the episode bag at ``path``; ``/expert/action``
    holds the expert's own actions, also under ``perturb`` or ``dagger`` (see ``expert.run_episode``)."""
    image_topic = CAMERA + COMPRESSED if compressed else CAMERA
    wrist_topic = WRIST_CAMERA + COMPRESSED if compressed else WRIST_CAMERA
    encode = C.compressed_image if compressed else C.image
    info = {"episode": episode, "seed": seed, "task": task.family, "instruction": task.instruction,
            "held_out": task.held_out, "perturb": perturb, "policy": dagger.model if dagger else None,
            "beta": dagger.beta if dagger else None}
    steps = [0]
    executed = [None]
    drive = None
    if dagger is not None:
        dagger.driver.reset(task.instruction)
        rng = np.random.default_rng([seed, 2])

        def drive(obs, action):
            policy_action, _ = dagger.driver.act(obs)  # every step, so its clock and plans go on
            executed[0] = action if rng.random() < dagger.beta else policy_action
            return executed[0]

    with BagWriter(path, "mcap") as w:
        def ns(t: float) -> int:
            return int(round(t * 1e9))

        w.write(EPISODE, C.string(BAG, json.dumps(info)), ns(T_START))
        w.write(INSTRUCTION, C.string(BAG, task.instruction), ns(T_START))

        def on_step(obs, action, _success) -> None:
            t = T_START + steps[0] * env.dt
            cameras = ((image_topic, obs.image, "camera"), (wrist_topic, obs.wrist, "wrist_camera"))
            for topic, frame, frame_id in cameras:
                if frame is not None:
                    w.write(topic, encode(BAG, frame, t, frame_id=frame_id), ns(t))
            w.write(EE_POSE, C.pose_stamped(BAG, obs.ee_position, obs.ee_orientation, t, FRAME), ns(t))
            w.write(GRIPPER, C.float64(BAG, obs.gripper), ns(t))
            # Privileged scene state for training's auxiliary loss: the target object and the plate.
            w.write(SCENE_TARGET, C.pose_stamped(BAG, env.object_position(env.target.name), IDENTITY, t, FRAME), ns(t))
            w.write(SCENE_PLATE, C.pose_stamped(BAG, np.array([*env.plate[:2], 0.0]), IDENTITY, t, FRAME), ns(t))
            for o in env.objects:  # every object: what training's counterfactual instructions point at
                w.write(f"{OBJECT_PREFIX}{o.color}_{o.shape}",
                        C.pose_stamped(BAG, env.object_position(o.name), IDENTITY, t, FRAME), ns(t))
            if action is not None:
                label = np.asarray(action)[None]
                w.write(EXPERT_ACTION, C.joint_trajectory(BAG, label, DEFAULT_ACTION_NAMES, env.dt, t, FRAME), ns(t))
                if drive is not None:
                    ran = np.asarray(executed[0])[None]
                    w.write(EXECUTED_ACTION, C.joint_trajectory(BAG, ran, DEFAULT_ACTION_NAMES, env.dt, t, FRAME),
                            ns(t))
                steps[0] += 1

        success, n = run_episode(env, task, seed, noise, on_step, perturb, drive)
        w.write(EPISODE, C.string(BAG, json.dumps({**info, "success": bool(success), "steps": n})),
                ns(T_START + steps[0] * env.dt))
    return success, n


def record(out_dir: str | Path, family: str = "all", episodes: int = 10, split: str = "train", seed: int = 0,
           compressed: bool = False, noise: float = 0.0, image_size: int = 128, progress=None,
           start_spread: float = 1.0, perturb: float = 0.0, policy: str | None = None, beta: float = 0.0,
           policy_params: dict | None = None, wrist: bool = False) -> RecordSummary:
    """``policy`` (a model path, 'embedded' or a preset): DAgger episodes, see ``Dagger``;
    ``policy_params``: its node settings (e.g. ``control.replan_steps``); ``wrist``: also record the
    wrist camera (``/camera/wrist/image``). A DAgger policy that expects two cameras needs it."""
    out_dir = Path(out_dir)
    dagger = Dagger(PolicyDriver.load(policy, policy_params), beta, policy) if policy else None
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = choose_tasks(family, split, episodes, seed)
    if dagger is not None and dagger.driver.cameras > 1 and not wrist:
        raise SettingsError(f"the policy {policy} expects {dagger.driver.cameras} cameras; record with --wrist")
    env = TabletopEnv(image_size=image_size, start_spread=start_spread, wrist=wrist)
    per_family: dict[str, list[int]] = {}
    successes, written, start = 0, 0, time.perf_counter()
    try:
        for i, task in enumerate(tasks):
            path = out_dir / f"episode_{seed:04d}_{i:05d}"
            ok, _ = record_episode(env, task, seed * 100_000 + i, i, path, compressed, noise, perturb, dagger)
            successes += int(ok)
            fam = per_family.setdefault(task.family, [0, 0])
            fam[0] += int(ok)
            fam[1] += 1
            written += sum(f.stat().st_size for f in path.iterdir())
            if progress:
                progress(i + 1, len(tasks), time.perf_counter() - start)
    finally:
        env.close()
    return RecordSummary(len(tasks), successes, written, per_family, time.perf_counter() - start)


def expert_success(episodes: int = 100, seed: int = 0, noise: float = 0.0, progress=None,
                   perturb: float = 0.0) -> dict[str, dict]:
    """Success of the scripted expert over ``episodes`` seeded episodes per family (no recording)."""
    env = TabletopEnv()
    out = {}
    try:
        for family in ("pick", "push", "place"):
            tasks = choose_tasks(family, "all", episodes, seed)
            ok = 0
            steps = []
            start = time.perf_counter()
            for i, task in enumerate(tasks):
                success, n = run_episode(env, task, seed * 100_000 + i, noise, perturb=perturb)
                ok += int(success)
                steps.append(n)
                if progress:
                    progress(i + 1, len(tasks), time.perf_counter() - start)
            out[family] = {"episodes": episodes, "successes": ok, "success_rate": ok / episodes,
                           "mean_steps": float(np.mean(steps))}
    finally:
        env.close()
    return out
