"""`vla-pruner failures`: episode outcomes from eval traces, on hand-built traces."""

from __future__ import annotations

import csv
import json

import pytest

from vla_pruner_ros.cli import main
from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.sim.failures import TRACE_COLUMNS, outcome, read_trace


def step(hand=(0.0, 0.0), obj=(0.5, 0.0), plate=(0.0, 0.3), held=0, success=0, family="place", episode=0):
    values = {"family": family, "episode": episode, "seed": 1, "step": 0, "hand_z": 0.1, "object_z": 0.02,
              "opening": 0.08, "planned": 0, "hand_x": hand[0], "hand_y": hand[1], "object_x": obj[0],
              "object_y": obj[1], "plate_x": plate[0], "plate_y": plate[1], "held": held, "success": success}
    return {c: str(values.get(c, 0.0)) for c in TRACE_COLUMNS}


def test_each_outcome_from_hand_built_episodes():
    far = [step(hand=(0.0, 0.0)), step(hand=(0.3, 0.0))]  # never within 2 cm of the object at (0.5, 0)
    assert outcome("place", far) == "not reached" and outcome("pick", far) == "not reached"
    near = far + [step(hand=(0.49, 0.01))]  # 1.4 cm off, never held
    assert outcome("place", near) == "not grasped" and outcome("pick", near) == "not grasped"
    carried = near + [step(hand=(0.3, 0.2), obj=(0.3, 0.2), held=1)]  # 10 cm from the plate
    assert outcome("place", carried) == "not over plate" and outcome("pick", carried) == "not lifted"
    over = carried + [step(hand=(0.015, 0.29), obj=(0.015, 0.29), held=1)]  # 1.8 cm from its centre
    assert outcome("place", over) == "not placed"
    assert outcome("place", over + [step(success=1)]) == "success"
    pushed = [step(obj=(0.5, 0.0)), step(obj=(0.51, 0.01))]  # 1.4 cm
    assert outcome("push", pushed) == "not moved"
    assert outcome("push", pushed + [step(obj=(0.5, 0.05))]) == "off target"
    with pytest.raises(SettingsError, match="family 'stack'"):
        outcome("stack", far)


def test_cli_counts_outcomes_per_trace_and_rejects_other_files(tmp_path, capsys):
    trace = tmp_path / "trace"
    trace.mkdir()
    rows = ([step(family="pick", episode=0, success=1)]
            + [step(family="pick", episode=1, hand=h) for h in ((0.0, 0.0), (0.495, 0.0))]
            + [step(family="push", episode=0, obj=o) for o in ((0.5, 0.0), (0.5, 0.0))])
    with open(trace / "fastv_25.csv", "w", newline="") as f:
        w = csv.DictWriter(f, TRACE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    assert read_trace(trace / "fastv_25.csv") == {"pick": ["success", "not grasped"], "push": ["not moved"]}
    out = tmp_path / "failures.json"
    assert main(["failures", str(trace), "--json", str(out)]) == 0
    assert json.loads(out.read_text()) == {"fastv_25": {"pick": {"success": 1, "not grasped": 1},
                                                         "push": {"not moved": 1}}}
    assert "| fastv_25 | 1 | 0 | 1 | 0 |" in capsys.readouterr().out
    (trace / "other.csv").write_text("a,b\n1,2\n")
    assert main(["failures", str(trace)]) == 2
    assert "other.csv: not an eval trace" in capsys.readouterr().err
    assert main(["failures", str(tmp_path / "empty")]) == 2
    assert "no trace CSV in" in capsys.readouterr().err
