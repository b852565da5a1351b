"""Generated camera frames for demos, benchmarks and tests: deterministic, cheap, not constant."""

from __future__ import annotations

import numpy as np


def moving_square_frames(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB uint8 frames (size, size, 3): a red square sliding right over a random texture."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    side = max(1, size // 4)
    frames = []
    for i in range(n):
        f = base.copy()
        x = (i * max(1, size // 16)) % max(1, size - side)
        f[size // 3: size // 3 + side, x: x + side] = (220, 30, 30)
        frames.append(f)
    return frames
