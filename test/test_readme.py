"""Every command block of the README, run as written (a README command that fails is a bug).

Shell blocks run with bash in a scratch directory that links the repository's ``config/``,
``vla_pruner_ros/`` and ``.venv/`` (so outputs do not land in the checkout), with the virtual
environment's ``bin`` first on PATH, as after ``source .venv/bin/activate``. Exceptions, each
checked another way: the test-suite command is what CI runs (``.ci/run`` runs it verbatim);
``ros2`` commands need the ros2 CLI, which the PyPI wheels lack (skipped with the reason when it is
absent); the training recipe takes hours, so its commands are parsed by the real argument parser
and their files checked, not run. Python blocks are executed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines dropped."""
    text = block.replace("\\\n", " ")
    return [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


BASH = blocks("bash")
SETUP_RUN, SETUP_TEST = BASH[0].strip(), BASH[1].strip()
RECIPE = next(b for b in BASH if "vla-pruner train" in b)
NODE = next(b for b in BASH if "vla_pruner_ros.ros.node" in b)
ROS2 = [b for b in BASH if b.lstrip().startswith("ros2 ")]
RUNNABLE = [b for b in BASH if b not in (BASH[0], BASH[1], RECIPE, NODE, *ROS2)]


@pytest.fixture
def scratch(tmp_path) -> Path:
    for name in ("config", "vla_pruner_ros", ".venv"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _env() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(60 + os.getpid() % 40)}


def _bash(command: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{command}"], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_the_readme_starts_with_the_two_setup_commands():
    first = README.index("```bash")
    assert README[:first].count("```") == 0
    assert commands(SETUP_RUN) == ["bash scripts/setup.sh && .venv/bin/vla-pruner demo"]
    assert commands(SETUP_TEST) == ["bash scripts/setup.sh --dev && .venv/bin/python -m pytest test -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert SETUP_TEST in ci  # CI runs the second command verbatim (so this suite is that command)


def test_first_setup_command_installs_and_runs_the_main_job():
    out = _bash(SETUP_RUN, ROOT, timeout=900)  # idempotent: on a set-up machine it only checks
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "setup: done" in out.stdout and "hybrid" in out.stdout and "wrote demo_out/replay_bag" in out.stdout


@pytest.mark.parametrize("block", RUNNABLE, ids=[commands(b)[0][:60] for b in RUNNABLE])
def test_shell_block_runs_as_written(scratch, block):
    out = _bash(block, scratch)
    assert out.returncode == 0, f"{block}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr


def test_node_command_starts_the_node():
    pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")
    (command,) = commands(NODE)
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    end = time.monotonic() + 120
    while time.monotonic() < end and proc.poll() is None:
        line = proc.stdout.readline()
        lines.append(line)
        if "active: DRY RUN" in line:
            break
    assert any("active: DRY RUN" in line for line in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in "".join(lines) + rest, "".join(lines) + rest


@pytest.mark.skipif(shutil.which("ros2") is None, reason="the ros2 CLI is not installed (not in the PyPI wheels)")
@pytest.mark.parametrize("block", ROS2)
def test_ros2_block_runs_as_written(block):  # pragma: no cover - needs a system ROS 2
    proc = subprocess.Popen(["bash", "-c", commands(block)[0]], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    time.sleep(20)
    assert proc.poll() is None, proc.communicate()[0]
    for command in commands(block)[1:]:
        assert _bash(command, ROOT, timeout=60).returncode == 0
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_training_recipe_parses_and_names_existing_files():
    import shlex

    from vla_pruner_ros.cli import build_parser

    parser = build_parser()
    seen = set()
    for command in commands(RECIPE):
        argv = shlex.split(command, comments=True)
        if argv[:1] == ["cp"]:
            assert argv[-1] == "vla_pruner_ros/weights/sim_tabletop" and (ROOT / argv[-1]).is_dir()
            continue
        assert argv[0] == "vla-pruner", command
        args = parser.parse_args(argv[1:])  # exits (fails the test) on a wrong flag or value
        seen.add(args.command)
        config = getattr(args, "config", None)
        if config:
            assert (ROOT / config).is_file(), config
    assert {"sim", "train", "probe", "eval"} <= seen


@pytest.mark.parametrize("block", blocks("python"))
def test_python_block_runs(scratch, block):
    out = subprocess.run([sys.executable, "-c", block], cwd=scratch, env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
