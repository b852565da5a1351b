"""Training data from recorded simulator bags: per step the camera frame, the instruction, the
proprio (end-effector pose + last gripper command, as ``ControlCore`` builds it at run time) and
the expert's next ``chunk_len`` actions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codecs import camera_frame, pose_arrays
from ..episode_topics import (
    EE_POSE,
    EPISODE,
    EXECUTED_ACTION,
    EXPERT_ACTION,
    GRIPPER,
    IMAGE_TOPICS,
    INSTRUCTION,
    OBJECT_PREFIX,
    SCENE_PLATE,
    SCENE_TARGET,
    SCENE_TOPICS,
    WRIST_TOPICS,
)
from ..model.vision import resize_frame
from ..proprio import GRIPPER_OPEN, pose_proprio
from ..replay.bag import Bag, BagError

# An object below the table top has fallen off it (a push can knock one over the edge); the simulator
# has no floor, so from then on its position runs off to metres below and would swamp the scene loss.
OFF_TABLE_Z = -0.02


@dataclass
class Episode:
    name: str
    instruction: str
    images: np.ndarray  # (T, S, S, 3) uint8 at the training resolution
    proprio: np.ndarray  # (T, 8)
    actions: np.ndarray  # (T, 7) expert action taken at each frame (the last frame: hold)
    held_out: bool
    success: bool
    # (T, 5) privileged scene state relative to the end effector: target object xyz - ee xyz,
    # plate xy - ee xy (metres); None for bags recorded without /scene/* topics.
    scene: np.ndarray | None = None
    # "<colour> <shape>" -> (T, 3) position of every object of the scene (metres; empty without the
    # /scene/object/* topics)
    objects: dict[str, np.ndarray] = field(default_factory=dict)
    wrist: np.ndarray | None = None  # (T, S, S, 3) uint8 wrist camera frames; None if not recorded

    def frames(self, t: int, cameras: int) -> list[np.ndarray]:
        """Step t's frames of the first ``cameras`` cameras (front, wrist)."""
        if cameras > 1 and self.wrist is None:
            raise BagError(f"{self.name} has no wrist camera frames; a {cameras}-camera model needs episodes "
                           "recorded with `vla-pruner sim record --wrist`")
        return [self.images[t]] if cameras == 1 else [self.images[t], self.wrist[t]]


def load_episode(path: Path, image_size: int, resize: str = "cv2_cubic") -> Episode:
    with Bag(path) as bag:
        image_topic = next((t for t in IMAGE_TOPICS if t in bag.topics), None)
        wrist_topic = next((t for t in WRIST_TOPICS if t in bag.topics), None)
        needed = [INSTRUCTION, EE_POSE, GRIPPER, EXPERT_ACTION, EPISODE]
        missing = [t for t in needed if t not in bag.topics]
        if image_topic is None or missing:
            raise BagError(f"{path} is not a recorded simulator episode (missing {missing or list(IMAGE_TOPICS)}); "
                           f"its topics are:\n{bag.describe()}")
        optional = [t for t in bag.topics if t in SCENE_TOPICS or t.startswith(OBJECT_PREFIX) or t == EXECUTED_ACTION]
        msgs = bag.messages([image_topic, *([wrist_topic] if wrist_topic else []), *needed, *optional])
    by_topic: dict[str, list] = {}
    for m in msgs:
        by_topic.setdefault(m.topic, []).append(m)

    def decode(topic: str) -> list[np.ndarray]:  # resized exactly as the policy resizes camera frames
        return [resize_frame(camera_frame(m.msg), image_size, resize) for m in by_topic[topic]]

    frames = decode(image_topic)
    wrist = None
    if wrist_topic:
        wrist = decode(wrist_topic)
        if len(wrist) != len(frames):
            raise BagError(f"{path}: {len(wrist)} frames on {wrist_topic} but {len(frames)} on {image_topic}; "
                           "expected one wrist frame per front frame")
        wrist = np.stack(wrist)
    poses = [pose_arrays(m.msg) for m in by_topic[EE_POSE]]
    actions = np.array([m.msg.points[0].positions for m in by_topic[EXPERT_ACTION]], np.float32)
    # The proprio ControlCore gives the policy: pose and the last gripper command (1 = open at first),
    # the executed one where a learned policy drove.
    executed = actions
    if EXECUTED_ACTION in by_topic:
        executed = np.array([m.msg.points[0].positions for m in by_topic[EXECUTED_ACTION]], np.float32)
    last_grip = np.concatenate([[GRIPPER_OPEN], executed[:, 6]])
    proprio = np.array([pose_proprio(*pose, last_grip[min(i, len(last_grip) - 1)]) for i, pose in enumerate(poses)],
                       np.float32)
    n = len(frames)
    if len(actions) == n - 1:  # the last frame has no action: hold still with the last gripper command
        actions = np.concatenate([actions, [[0, 0, 0, 0, 0, 0, actions[-1, 6]]]]).astype(np.float32)
    info = json.loads(by_topic[EPISODE][-1].msg.data)

    def positions(topic: str) -> np.ndarray:  # (n, 3) of a PoseStamped topic, one per frame
        return np.array([pose_arrays(m.msg)[0] for m in by_topic[topic][:n]], np.float32)

    objects = {t[len(OBJECT_PREFIX):].replace("_", " "): positions(t)
               for t in by_topic if t.startswith(OBJECT_PREFIX) and len(by_topic[t]) >= n}
    scene = None
    if all(len(by_topic.get(t, [])) >= n for t in SCENE_TOPICS):
        ee = proprio[:n, :3]
        plate = positions(SCENE_PLATE)
        scene = np.concatenate([positions(SCENE_TARGET) - ee, plate[:, :2] - ee[:, :2]], axis=1)
    return cut_at_fall(Episode(path.name, by_topic[INSTRUCTION][0].msg.data, np.stack(frames), proprio[:n],
                               actions[:n], bool(info.get("held_out", False)), bool(info.get("success", False)),
                               scene, objects, wrist))


def cut_at_fall(e: Episode) -> Episode:
    """The episode up to (not including) the first frame where an object is off the table (OFF_TABLE_Z)."""
    falls = [int(np.argmax(p[:, 2] < OFF_TABLE_Z)) for p in e.objects.values() if (p[:, 2] < OFF_TABLE_Z).any()]
    if not falls:
        return e
    n = max(1, min(falls))
    return Episode(e.name, e.instruction, e.images[:n], e.proprio[:n], e.actions[:n], e.held_out, e.success,
                   None if e.scene is None else e.scene[:n], {k: p[:n] for k, p in e.objects.items()},
                   None if e.wrist is None else e.wrist[:n])


def load_episodes(data_dir: str | Path, image_size: int, progress=None, resize: str = "cv2_cubic") -> list[Episode]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BagError(f"{data_dir} is not a directory of recorded episodes")
    paths = sorted(p for p in data_dir.iterdir() if (p / "metadata.yaml").exists())
    if not paths:
        raise BagError(f"{data_dir} holds no episode bags (folders with metadata.yaml); record some with "
                       "`vla-pruner sim record`")
    out = []
    for i, p in enumerate(paths):
        out.append(load_episode(p, image_size, resize))
        if progress:
            progress(i + 1, len(paths), 1.0)
    return out


def bounds(x: np.ndarray) -> dict[str, list]:
    return {"q01": np.quantile(x, 0.01, axis=0).tolist(), "q99": np.quantile(x, 0.99, axis=0).tolist(),
            "mean": x.mean(0).tolist(), "std": x.std(0).tolist(), "min": x.min(0).tolist(), "max": x.max(0).tolist()}


def norm_stats(episodes: list[Episode], key: str = "sim_tabletop") -> dict:
    """OpenVLA-style statistics; the gripper (absolute, already 0..1) is not normalised (mask False)."""
    actions = np.concatenate([e.actions for e in episodes])
    proprio = np.concatenate([e.proprio for e in episodes])
    action = bounds(actions)
    action["mask"] = [True] * (actions.shape[1] - 1) + [False]
    return {key: {"action": action, "proprio": bounds(proprio), "num_trajectories": len(episodes),
                  "num_transitions": int(len(actions))}}


def chunk_targets(actions: np.ndarray, t: int, chunk_len: int) -> np.ndarray:
    """The next ``chunk_len`` actions from step t; past the end: no motion, the last gripper command."""
    out = np.zeros((chunk_len, actions.shape[1]), np.float32)
    take = actions[t:t + chunk_len]
    out[:len(take)] = take
    out[len(take):, -1] = actions[-1, -1]
    return out
