"""Task families, instruction templates and the held-out combinations used for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SettingsError
from ..sim_vocabulary import COLORS, DIRECTIONS, FAMILIES, SHAPES

STEP_LIMITS = {"pick": 40, "push": 45, "place": 60}

# Held out of training, used for evaluation: (family, colour, shape).
HELD_OUT = {("pick", "yellow", "cylinder"), ("pick", "purple", "cube"), ("push", "green", "cube"),
            ("push", "orange", "block"), ("place", "red", "block"), ("place", "blue", "cylinder")}


@dataclass(frozen=True)
class Task:
    family: str
    color: str
    shape: str
    direction: str = ""  # push only

    @property
    def instruction(self) -> str:
        obj = f"the {self.color} {self.shape}"
        if self.family == "pick":
            return f"pick up {obj}"
        if self.family == "push":
            return f"push {obj} to the {self.direction}"
        return f"put {obj} on the plate"

    @property
    def held_out(self) -> bool:
        return (self.family, self.color, self.shape) in HELD_OUT

    @property
    def step_limit(self) -> int:
        return STEP_LIMITS[self.family]


def all_tasks(family: str | None = None, split: str = "all") -> list[Task]:
    """Every task of a family (or all); ``split``: train (not held out), eval (held out) or all."""
    if split not in ("all", "train", "eval"):
        raise SettingsError(f"split={split!r}; expected all, train or eval")
    families = FAMILIES if family in (None, "all") else (family,)
    for f in families:
        if f not in FAMILIES:
            raise SettingsError(f"task family {f!r} is unknown; expected one of {list(FAMILIES)}")
    out = []
    for f in families:
        for color in COLORS:
            for shape in SHAPES:
                for direction in (DIRECTIONS if f == "push" else [""]):
                    t = Task(f, color, shape, direction)
                    if split == "all" or (split == "eval") == t.held_out:
                        out.append(t)
    return out
