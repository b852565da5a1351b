"""The simulator's vocabulary: object colours and shapes, push directions, task families. The
simulator builds scenes from it and training labels patches and counterfactual instructions with it;
neither imports the other."""

from __future__ import annotations

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.70, 0.20), "blue": (0.12, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.10), "purple": (0.55, 0.20, 0.70), "orange": (0.95, 0.50, 0.08),
}
SHAPES = ("cube", "block", "cylinder")
DIRECTIONS: dict[str, tuple[float, float]] = {"left": (0.0, 1.0), "right": (0.0, -1.0), "forward": (1.0, 0.0),
                                              "backward": (-1.0, 0.0)}
FAMILIES = ("pick", "push", "place")
