"""The pruner's temporal state: one explicit object per policy, bounded whatever the episode length.

It holds, per camera, the last ``w`` ticks of action-query attention (M-vectors), the last two
grey frames and the motion accumulator at the prior's working resolution; and, for the whole
policy, the interaction phase with its hysteresis counter, the last IoU, the tick counter, the
instruction and a short latency history (for deadline scheduling). ``reset()`` clears everything
(episode start, instruction change); ``snapshot()``/``restore()`` round-trip it through plain
JSON-friendly dicts; ``summary()`` is the small part a ROS node publishes each tick.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import PrunerConfigError

APPROACH = "approach"
INTERACTION = "interaction"
LATENCY_HISTORY = 32


@dataclass
class CameraState:
    attention: deque = field(default_factory=deque)  # newest last; (M,) float32 each
    frames: deque = field(default_factory=lambda: deque(maxlen=2))  # previous grey frames, newest last
    motion: np.ndarray | None = None  # accumulated motion energy at the working resolution

    def snapshot(self) -> dict[str, Any]:
        return {
            "attention": [a.tolist() for a in self.attention],
            "frames": [f.tolist() for f in self.frames],
            "motion": None if self.motion is None else self.motion.tolist(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], window: int) -> CameraState:
        cam = cls(attention=deque((np.asarray(a, np.float32) for a in data["attention"]), maxlen=window))
        cam.frames.extend(np.asarray(f, np.float32) for f in data["frames"])
        cam.motion = None if data["motion"] is None else np.asarray(data["motion"], np.float32)
        return cam


class TemporalState:
    """Everything a pruner remembers between ticks of one episode."""

    def __init__(self, window: int = 3) -> None:
        if window < 1:
            raise PrunerConfigError(f"window={window} must be >= 1")
        self.window = window
        self.reset()

    def reset(self, instruction: str | None = None) -> None:
        self.tick = 0
        self.instruction = instruction
        self.cameras: list[CameraState] = []
        self.phase = APPROACH
        self.phase_count = 0  # consecutive ticks the other phase's condition has held
        self.iou = 0.0
        self.keep_ratio = 1.0  # ratio used on the last tick
        self.latency: deque = deque(maxlen=LATENCY_HISTORY)  # (visual tokens kept, tick ms)

    def camera(self, index: int) -> CameraState:
        while len(self.cameras) <= index:
            self.cameras.append(CameraState(attention=deque(maxlen=self.window)))
        return self.cameras[index]

    def summary(self) -> dict[str, Any]:
        return {"tick": self.tick, "phase": self.phase, "iou": round(float(self.iou), 4),
                "keep_ratio": round(float(self.keep_ratio), 4),
                "window_fill": min((len(c.attention) for c in self.cameras), default=0),
                "instruction": self.instruction}

    def snapshot(self) -> dict[str, Any]:
        return {**self.summary(), "window": self.window, "phase_count": self.phase_count,
                "iou": float(self.iou), "keep_ratio": float(self.keep_ratio),
                "latency": [list(x) for x in self.latency], "cameras": [c.snapshot() for c in self.cameras]}

    def restore(self, data: dict[str, Any]) -> None:
        if int(data["window"]) != self.window:
            raise PrunerConfigError(f"snapshot has window={data['window']}; this state has window={self.window}")
        self.reset(data["instruction"])
        self.tick = int(data["tick"])
        self.phase, self.phase_count = str(data["phase"]), int(data["phase_count"])
        self.iou, self.keep_ratio = float(data["iou"]), float(data["keep_ratio"])
        self.latency.extend(tuple(x) for x in data["latency"])
        self.cameras = [CameraState.restore(c, self.window) for c in data["cameras"]]

    def nbytes(self) -> int:
        """Memory held by the arrays (bounded: w attention vectors, 2 frames, 1 accumulator per camera)."""
        total = 0
        for c in self.cameras:
            total += sum(a.nbytes for a in c.attention) + sum(f.nbytes for f in c.frames)
            total += 0 if c.motion is None else c.motion.nbytes
        return total
