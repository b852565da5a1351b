"""Launch files and parameter files: everything they name exists and is declared by the node."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.model import model_inputs
from vla_pruner_ros.ros.launch_common import ARGUMENTS, EXECUTABLE, PACKAGE, ROBOTS, parameter_overrides
from vla_pruner_ros.settings import (
    DEFAULT_MODEL,
    check_against_model,
    load_param_file,
    parameters,
    settings_from_flat,
)

ROOT = Path(__file__).resolve().parents[1]
NODE_TOPICS = {"image", "wrist_image", "instruction", "ee_pose", "~/action_chunk", "~/ee_trajectory", "~/ee_target",
               "~/gripper"}


def test_package_executable_and_files_exist():
    assert re.search(rf"<name>{PACKAGE}</name>", (ROOT / "package.xml").read_text())
    setup = (ROOT / "setup.py").read_text()
    assert f'"{EXECUTABLE} = vla_pruner_ros.ros.node:main"' in setup
    assert (ROOT / "scripts" / "ros" / EXECUTABLE).exists()
    for robot in ROBOTS:
        launch = ROOT / "launch" / f"{robot}.launch.py"
        tree = ast.parse(launch.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "generate"]
        assert [c.args[0].value for c in calls] == [robot]


@pytest.mark.parametrize("robot", sorted(ROBOTS))
def test_parameter_files_run_the_default_model_as_shipped(robot):
    spec = ROBOTS[robot]
    values = load_param_file(ROOT / "config" / spec.params_file)  # rcl's rules
    assert set(values) <= set(parameters()), sorted(set(values) - set(parameters()))
    settings = settings_from_flat(values)  # every value valid
    assert settings.dry_run is True and settings.model.path == DEFAULT_MODEL  # no download, disarmed
    cameras, proprio = model_inputs(DEFAULT_MODEL)
    check_against_model(settings, cameras, proprio)  # the file works with the default model as it is
    launched = settings_from_flat({**values, **parameter_overrides("", "", "", "true")})
    assert launched == settings  # empty launch arguments keep the file's values
    assert set(parameter_overrides("/x", "fastv", "0.5", "false")) <= set(parameters())
    assert set(spec.remappings) <= NODE_TOPICS


def test_a_configuration_that_can_never_act_is_refused_with_the_fix():
    values = load_param_file(ROOT / "config" / "widowx.yaml")
    cameras, proprio = model_inputs(DEFAULT_MODEL)
    with pytest.raises(SettingsError, match="camera.wrist=false gives 1 camera.*: set camera.wrist: true"):
        check_against_model(settings_from_flat({**values, "camera.wrist": False}), cameras, proprio)
    with pytest.raises(SettingsError, match="needs the end-effector pose as proprio.*set pose_feedback: true"):
        check_against_model(settings_from_flat({**values, "pose_feedback": False}), cameras, proprio)
    with pytest.raises(SettingsError, match="expects 1: set camera.wrist: false"):
        check_against_model(settings_from_flat(values), 1, 0)  # a one-camera checkpoint such as OpenVLA-7B


def test_widowx_follows_bridge_conventions():
    s = settings_from_flat(load_param_file(ROOT / "config" / "widowx.yaml"))
    assert (s.safety.max_translation_step, s.safety.max_rotation_step, s.control.rate_hz) == (0.05, 0.25, 5.0)
    assert (s.safety.gripper_min, s.safety.gripper_max) == (0.0, 1.0)
    assert "unnorm_key: bridge_orig" in (ROOT / "config" / "widowx.yaml").read_text()  # the OpenVLA-7B note
    f = settings_from_flat(load_param_file(ROOT / "config" / "franka.yaml"))
    assert f.control.action_frame == "fr3_link0" and f.pose_feedback and f.control.rate_hz == 15.0


def test_parsing_the_launch_files_imports_neither_torch_nor_transformers():
    code = """
import runpy, sys
from vla_pruner_ros.ros import launch_common
for robot in ('franka', 'widowx', 'sim'):
    runpy.run_path(f'launch/{robot}.launch.py')
launch_common.parameter_overrides('', 'fastv', '0.5', 'true')
launch_common.sim_parameters({'family': 'pick', 'color': 'red', 'shape': 'cube', 'seed': '0',
                              'action_source': 'action_chunk', 'model_path': '', 'method': 'fastv',
                              'keep_ratio': '0.25'})
print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_launch_arguments_are_the_documented_ones():
    assert set(ARGUMENTS) == {"params_file", "model_path", "method", "keep_ratio", "dry_run", "namespace",
                              "image_topic", "wrist_image_topic", "instruction_topic"}


def test_pip_install_puts_the_package_where_ros_finds_it(tmp_path, monkeypatch):
    # --ignore-installed: never touch the installation this test runs from
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--ignore-installed", "--no-deps",
                          "--no-build-isolation", "--prefix", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "share/ament_index/resource_index/packages" / PACKAGE).exists()
    for f in ("package.xml", "launch/franka.launch.py", "launch/widowx.launch.py", "launch/sim.launch.py",
              "config/franka.yaml",
              "config/widowx.yaml", "config/pruning.yaml"):
        assert (tmp_path / "share" / PACKAGE / f).exists(), f
    wrapper = tmp_path / "lib" / PACKAGE / EXECUTABLE
    assert wrapper.exists() and os.access(wrapper, os.X_OK)
    from ament_index_python.packages import get_package_share_directory

    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path}:{os.environ.get('AMENT_PREFIX_PATH', '')}")
    assert get_package_share_directory(PACKAGE) == str(tmp_path / "share" / PACKAGE)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None,
                    reason="launch_ros is not installed (not on PyPI; it comes with a system ROS 2)")
@pytest.mark.parametrize("robot", [*sorted(ROBOTS), "sim"])
def test_launch_description_builds(robot):
    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location(robot, ROOT / "launch" / f"{robot}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.generate_launch_description(), LaunchDescription)


def test_sim_launch_wiring_uses_declared_parameters():
    from vla_pruner_ros.ros.launch_common import SIM_ARGUMENTS, sim_parameters

    get = {"method": "vla_pruner", "keep_ratio": "0.25", "model_path": "", "family": "place", "color": "red",
           "shape": "cube", "seed": "3", "action_source": "action_chunk"}
    assert set(get) == set(SIM_ARGUMENTS)
    sim, vla = sim_parameters(get)
    assert set(vla) - {"use_sim_time"} <= set(parameters())
    settings_from_flat({k: v for k, v in vla.items() if k != "use_sim_time"})  # valid values
    assert sim["realtime"] is False and vla["use_sim_time"] is True and vla["dry_run"] is False
    assert '"sim_node = vla_pruner_ros.ros.sim_node:main"' in (ROOT / "setup.py").read_text()
    assert (ROOT / "scripts" / "ros" / "sim_node").exists() and (ROOT / "launch" / "sim.launch.py").exists()


def test_sim_launch_drives_the_simulated_arm_as_eval_does():
    from vla_pruner_ros.ros.launch_common import sim_parameters
    from vla_pruner_ros.sim.driver import sim_settings

    sim, vla = sim_parameters({"family": "place", "color": "red", "shape": "block", "seed": "3",
                               "action_source": "action_chunk", "model_path": "", "method": "fastv",
                               "keep_ratio": "0.25"})
    launched = settings_from_flat({k: v for k, v in vla.items() if k != "use_sim_time"})
    evaluated = sim_settings("embedded")
    assert launched.control.replan_steps == evaluated.control.replan_steps == 2
    assert launched.control.rate_hz == evaluated.control.rate_hz == 5.0
    assert sim["task.family"] == "place" and sim["seed"] == 3 and launched.pruning.method == "fastv"
