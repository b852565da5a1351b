"""The core never imports ROS, the simulator or bag I/O."""

from __future__ import annotations

import subprocess
import sys


def test_core_import_leaves_ros_mujoco_rosbags_out():
    code = ("import sys, vla_pruner_ros.policy, vla_pruner_ros.model, vla_pruner_ros.pruning, vla_pruner_ros.cli;"
            "bad = [m for m in ('rclpy', 'mujoco', 'rosbags') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pruning_methods_and_the_policy_import_no_model_family():
    """A method sees the pruning point's types only (model/interface.py); the policy drives any family through
    model/family.py's interface. Neither imports OpenVLA's or pi0's modelling code."""
    code = ("import sys, vla_pruner_ros.pruning.hybrid, vla_pruner_ros.pruning.vla_iap,"
            "vla_pruner_ros.pruning.vla_pruner, vla_pruner_ros.pruning.divprune, vla_pruner_ros.pruning.fastv,"
            "vla_pruner_ros.pruning.random,"
            "vla_pruner_ros.policy;"
            "bad = [m for m in ('vla_pruner_ros.model.modeling', 'vla_pruner_ros.model.pi0', "
            "'vla_pruner_ros.model.checkpoint', 'transformers.models.pi0') if m in sys.modules];"
            "print(bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def _imports(path) -> set[str]:
    """Modules a source file imports, resolved to absolute package names."""
    import ast

    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(path.parents[2]).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(f"{base}.{node.module}" if base and node.module else base or node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_sim_and_train_do_not_import_each_other():
    """The simulator and training share the episode topics and the vocabulary through their own modules
    (episode_topics.py, sim_vocabulary.py), not through each other."""
    from pathlib import Path

    pkg = Path(__file__).resolve().parents[1] / "vla_pruner_ros"
    for here, other in (("sim", "train"), ("train", "sim")):
        for path in sorted((pkg / here).glob("*.py")):
            bad = sorted(m for m in _imports(path) if m == f"vla_pruner_ros.{other}" or
                         m.startswith(f"vla_pruner_ros.{other}."))
            assert not bad, f"{path.name} in {here}/ imports {bad}"


def test_every_code_folder_is_a_package_that_a_plain_install_ships():
    """setup.py ships the packages find_packages finds: a folder of modules without __init__.py would be left
    out of a non-editable install (only data folders may lack one)."""
    from pathlib import Path

    from setuptools import find_packages

    root = Path(__file__).resolve().parents[1]
    found = set(find_packages(str(root), include=["vla_pruner_ros", "vla_pruner_ros.*"]))
    for folder in (root / "vla_pruner_ros").rglob("*"):
        if folder.is_dir() and any(folder.glob("*.py")) and "__pycache__" not in folder.parts:
            name = ".".join(folder.relative_to(root).parts)
            assert name in found, f"{name} has Python modules but no __init__.py: a plain pip install leaves it out"
