"""Parameter files and overrides by rcl's rules: our reader against rcl's own parser (through rclpy),
value for value, and the shipped files through both."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vla_pruner_ros.cli import main
from vla_pruner_ros.param_file import ParamFileError, check_ros_args, read_param_file
from vla_pruner_ros.settings import declared_types

rclpy = pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")

ROOT = Path(__file__).resolve().parents[1]
DECLARED = declared_types()


def rcl_values(path: Path, node: str = "n") -> dict | str:
    """What rcl gives a node from this file (name -> value), or its refusal."""
    from rclpy.context import Context

    from vla_pruner_ros.ros.spin import rcl_refusal

    refusal = rcl_refusal(["--ros-args", "--params-file", str(path)])
    if refusal:
        return refusal
    context = Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        n = rclpy.create_node(node, context=context, automatically_declare_parameters_from_overrides=True)
        values = {p.name: p.value for p in n._parameters.values()
                  if p.name not in ("use_sim_time", "start_type_description_service")}
        n.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return {k: list(v) if not isinstance(v, (str, bool, int, float)) else v for k, v in values.items()}


def _same(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


SCALARS = ["y", "Yes", "OFF", "yES", "null", "~", "0x10", "-0x10", "08", "010", "1e999", "1e-400", "1_000", ".5", "5.",
           "inf", "-.inf", ".NaN", "nan", "0x1p3", "1e3", "+5", "9999999999999999999", "'5'", '"y"', "hello world",
           "5 # a comment", "''"]
LISTS = ["[x, y]", "['x', 'y']", "[1, 2.0]", "[1.0, 2.0]", "[1, '2']", "[true, y]", "[a, '']", "[on, off]",
         "[0.1, -0.25, 0.02]", "[0, -0.25, 0.02]"]


@pytest.mark.parametrize("value", SCALARS + LISTS + ["", "{b: 1, c: [u, v]}"])
def test_reader_agrees_with_rcl(tmp_path, value):
    path = tmp_path / "p.yaml"
    path.write_text(f"n:\n  ros__parameters:\n    a: {value}\n")
    theirs = rcl_values(path)
    try:
        ours = read_param_file(path, "n")
    except ParamFileError as err:
        assert isinstance(theirs, str), f"we refuse {value!r} ({err}); rcl reads {theirs}"
        assert "p.yaml:3" in str(err)  # the line
        return
    assert not isinstance(theirs, str), f"rcl refuses {value!r} ({theirs}); we read {ours}"
    assert set(ours) == set(theirs) and all(_same(ours[k], theirs[k]) for k in ours), (ours, theirs)


@pytest.mark.parametrize("value", ["[[1]]", "[]"])
def test_reader_is_stricter_than_rcl_where_no_parameter_could_use_it(tmp_path, value):
    path = tmp_path / "p.yaml"
    path.write_text(f"n:\n  ros__parameters:\n    a: {value}\n")
    from vla_pruner_ros.ros.spin import rcl_refusal

    assert rcl_refusal(["--ros-args", "--params-file", str(path)]) is None  # rcl flattens [[1]]; [] has no type
    with pytest.raises(ParamFileError, match="nested list|empty list"):
        read_param_file(path, "n")


@pytest.mark.parametrize("name", ["franka.yaml", "widowx.yaml"])
def test_shipped_files_read_alike_by_rcl_and_by_us(name):
    ours = read_param_file(ROOT / "config" / name, "vla_node", DECLARED)
    theirs = rcl_values(ROOT / "config" / name, "vla_node")
    assert not isinstance(theirs, str), theirs
    assert set(ours) == set(theirs) and all(_same(ours[k], theirs[k]) for k in ours)


def test_every_shipped_yaml_is_a_parameter_file_or_a_training_config():
    from vla_pruner_ros.train.trainer import TrainConfig

    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name.startswith("train"):
            TrainConfig.from_file(path)  # read by `vla-pruner train --config`, never by rcl
            continue
        assert rcl_values(path, "vla_node") is not None and not isinstance(rcl_values(path, "vla_node"), str), path
        read_param_file(path, "vla_node", DECLARED)


@pytest.mark.parametrize("body,expected", [
    ("action_names: [x, y, z, roll, pitch, yaw, gripper]",
     "action_names: rcl reads 'y' as a boolean (YAML 1.1), so this list mixes types, which rcl refuses; quote "
     "every item: action_names: ['x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper']"),
    ("safety:\n      workspace_min: [0, -0.25, 0.02]",
     "the list mixes integers and doubles, which rcl refuses; write every number as a double: [0.0, -0.25, 0.02]"),
    ("control:\n      rate_hz: 15",
     "control.rate_hz=15 is an integer to rcl, but the parameter is a double: write 15.0"),
    ("model:\n      head: no", "model.head=False is a boolean to rcl, but the parameter is a string: rcl reads this "
                               "YAML 1.1 word as a boolean; quote it"),
    ("pruning:\n      hybrid:\n        deadline_ms: null",
     "pruning.hybrid.deadline_ms='null' is a string to rcl, but the parameter is a double: ROS 2 parameters cannot "
     "be null; leave the line out for the default"),
    ("model:\n      unnorm_key:", "model.unnorm_key has no value (rcl refuses an empty value); write "
                                  "model.unnorm_key: '' for an empty string"),
])
def test_params_command_names_the_key_and_the_fix(tmp_path, capsys, body, expected):
    path = tmp_path / "robot.yaml"
    path.write_text(f"vla_node:\n  ros__parameters:\n    {body}\n")
    assert main(["params", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_params_command_reports_rcl_acceptance(capsys):
    assert main(["params", str(ROOT / "config" / "widowx.yaml")]) == 0
    assert "rcl's own parser accepts it" in capsys.readouterr().out


@pytest.mark.parametrize("args,expected", [
    (["-p", "model.unnorm_key:="], "rcl refuses an empty value; for an empty string write -p model.unnorm_key:=\"''\""),
    (["-p", "action_names:=[x, y]"], "quote every item"),
    (["-p", "control.rate_hz:=15"], "write 15.0"),
])
def test_overrides_by_rcl_rules(args, expected):
    with pytest.raises(ParamFileError, match=expected.replace("[", r"\[").replace(".", r"\.")):
        check_ros_args(["prog", "--ros-args", *args], DECLARED)
    assert rcl_refusal_or_type_error(args)


def rcl_refusal_or_type_error(args: list[str]) -> bool:
    """rcl refuses the override itself, or it gives a value of another type than the parameter's."""
    from vla_pruner_ros.ros.spin import rcl_refusal

    if rcl_refusal(["--ros-args", *args]):
        return True
    name, _, value = args[1].partition(":=")
    return name == "control.rate_hz" and value == "15"  # an integer: rclpy refuses it for a double parameter


def test_an_empty_string_override_written_as_rcl_wants_it():
    check_ros_args(["prog", "--ros-args", "-p", "model.unnorm_key:=''"], DECLARED)
    from vla_pruner_ros.ros.spin import rcl_refusal

    assert rcl_refusal(["--ros-args", "-p", "model.unnorm_key:=''"]) is None
