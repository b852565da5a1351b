"""``vla-pruner failures DIR``: how the episodes of an ``eval --trace DIR`` run ended.

Each episode of each trace file (one per method and keep ratio) gets one outcome from the
simulator's privileged state in its rows (``TRACE_COLUMNS``):

- every family: ``success``;
- pick and place, never held: ``not reached`` (the hand never came within ``REACH`` of the object
  in x-y) or ``not grasped`` (it did, but the fingers never held it);
- pick, held: ``not lifted``;
- place, held: ``not over plate`` (never held within ``OVER_PLATE`` of the plate centre) or
  ``not placed`` (it was, but the object did not end on the plate released);
- push: ``not moved`` (the object moved less than ``MOVED``) or ``off target`` (moved, but not far
  enough along the asked direction, or too far sideways).

Read from CSV only: no simulator needed.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..errors import SettingsError

# One row per step of an ``eval --trace`` CSV: the simulator's state before the step, the executed
# action, and success after it.
TRACE_COLUMNS = ("family", "episode", "seed", "step", "hand_x", "hand_y", "hand_z", "object_x", "object_y",
                 "object_z", "plate_x", "plate_y", "opening", "held", "planned", "dx", "dy", "dz", "droll",
                 "dpitch", "dyaw", "gripper", "success")

REACH = 0.02  # m, x-y hand-object distance that counts as reaching the object
OVER_PLATE = 0.02  # m, x-y hand-plate distance that counts as over the plate (the expert's PLATE_TOL)
MOVED = 0.02  # m, object displacement below which a push did not move it

OUTCOMES = {
    "pick": ("success", "not reached", "not grasped", "not lifted"),
    "place": ("success", "not reached", "not grasped", "not over plate", "not placed"),
    "push": ("success", "not moved", "off target"),
}


def _xy(row: dict, prefix: str) -> np.ndarray:
    return np.array([float(row[f"{prefix}_x"]), float(row[f"{prefix}_y"])])


def outcome(family: str, rows: list[dict]) -> str:
    """The outcome of one episode from its trace rows (in step order)."""
    if family not in OUTCOMES:
        raise SettingsError(f"family {family!r} in the trace: unknown; expected one of {', '.join(OUTCOMES)}")
    if int(rows[-1]["success"]):
        return "success"
    if family == "push":
        moved = np.linalg.norm(_xy(rows[-1], "object") - _xy(rows[0], "object"))
        return "not moved" if moved < MOVED else "off target"
    held = [r for r in rows if int(r["held"])]
    if not held:
        closest = min(np.linalg.norm(_xy(r, "hand") - _xy(r, "object")) for r in rows)
        return "not grasped" if closest < REACH else "not reached"
    if family == "pick":
        return "not lifted"
    over = any(np.linalg.norm(_xy(r, "hand") - _xy(r, "plate")) < OVER_PLATE for r in held)
    return "not placed" if over else "not over plate"


def read_trace(path: Path) -> dict[str, list[str]]:
    """{family: [outcome per episode, in episode order]} of one trace CSV."""
    episodes: dict[tuple[str, int], list[dict]] = defaultdict(list)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"family", "episode", "hand_x", "object_x", "plate_x", "held", "success"} - set(
                reader.fieldnames or ())
            if missing:
                raise SettingsError(f"{path}: not an eval trace (no column {', '.join(sorted(missing))})")
            for row in reader:
                episodes[(row["family"], int(row["episode"]))].append(row)
    except (KeyError, TypeError, csv.Error) as err:
        raise SettingsError(f"{path}: malformed trace row ({err})") from None
    out: dict[str, list[str]] = defaultdict(list)
    for (family, _), rows in sorted(episodes.items()):
        out[family].append(outcome(family, rows))
    return dict(out)


def summarise(trace_dir: str | Path) -> dict[str, dict[str, dict[str, int]]]:
    """{trace name (method_keep): {family: {outcome: episodes}}} for every CSV in ``trace_dir``."""
    def order(path: Path) -> tuple:  # unpruned first, then by method, each from its largest keep ratio
        method, _, keep = path.stem.rpartition("_")
        return (method != "none", method, -int(keep) if keep.isdigit() else 0, path.stem)

    paths = sorted(Path(trace_dir).glob("*.csv"), key=order)
    if not paths:
        raise FileNotFoundError(f"no trace CSV in {trace_dir} (write them with vla-pruner eval --trace DIR)")
    return {p.stem: {fam: dict(Counter(outs)) for fam, outs in read_trace(p).items()} for p in paths}


def markdown(summary: dict) -> str:
    """One table per family: a row per trace, a column per outcome (episodes)."""
    lines: list[str] = []
    for family, names in OUTCOMES.items():
        rows = [(name, counts[family]) for name, counts in summary.items() if family in counts]
        if not rows:
            continue
        lines += [f"{family}:", "", "| run | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
        lines += [f"| {name} | " + " | ".join(str(c.get(o, 0)) for o in names) + " |" for name, c in rows]
        lines.append("")
    return "\n".join(lines).rstrip()
