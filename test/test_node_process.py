"""vla_node as users start it, in its own process: every shipped parameter file through rcl, the
command lines the launch files produce, one-line start-up errors, resets and instruction changes
while plans are computed, malformed input, and SIGINT; never a traceback."""

from __future__ import annotations

import json
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="the ROS 2 wheels (the 'ros' extra) are not installed")

from node_process import ROOT, Tester, interrupt, launch_params_file, start  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from vla_pruner_ros.ros.launch_common import ROBOTS, SIM_ARGUMENTS, parameter_overrides, sim_parameters  # noqa: E402


@pytest.fixture
def tester():
    made = []

    def make(**kwargs) -> Tester:
        made.append(Tester(**kwargs))
        return made[-1]

    yield make
    for t in made:
        t.close()


def _stopped_cleanly(proc) -> str:
    rc, out = interrupt(proc)
    assert rc == 0, out[-3000:]
    assert "Traceback" not in out, out[-6000:]
    return out


@pytest.mark.parametrize("name", ["franka.yaml", "widowx.yaml"])
def test_each_shipped_parameter_file_alone_starts_the_node_and_gives_chunks(tester, name):
    proc = start(["--ros-args", "--params-file", f"config/{name}"])
    t = tester()
    t.instruction_pub.publish(String(data="pick up the red cube"))
    try:
        ok = t.feed_until(lambda: len(t.chunks) >= 2 or proc.poll() is not None, 90.0)  # both files: 2 cameras + pose
        assert ok and proc.poll() is None, interrupt(proc)[1][-3000:]
        msg = t.chunks[0][1]
        assert msg.joint_names == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"] and len(msg.points) == 8
    finally:
        out = _stopped_cleanly(proc)
    assert "configured: model=embedded" in out and "DRY RUN" in out


def test_the_robot_launch_command_line_starts_the_node(tester, tmp_path):
    """What franka.launch.py makes launch_ros run: the shipped file, then the launch arguments as a
    generated parameter file (method:=fastv keep_ratio:=0.5), then the remappings."""
    spec = ROBOTS["franka"]
    overrides = launch_params_file(tmp_path / "launch_params.yaml", "/vla_node",
                                   parameter_overrides("", "fastv", "0.5", "true"))
    remaps = {"image": spec.image_topic, "wrist_image": spec.wrist_image_topic, "instruction": spec.instruction_topic,
              **spec.remappings}
    proc = start(["--ros-args", "-r", "__node:=vla_node", "-r", "__ns:=/", "--params-file",
                  str(ROOT / "config" / spec.params_file), "--params-file", str(overrides),
                  *[a for k, v in remaps.items() for a in ("-r", f"{k}:={v}")]])
    t = tester(topics={"image": spec.image_topic, "wrist_image": spec.wrist_image_topic,
                       "ee_pose": spec.remappings["ee_pose"], "instruction": spec.instruction_topic})
    t.instruction_pub.publish(String(data="pick up the red cube"))
    try:
        assert t.feed_until(lambda: len(t.chunks) >= 2 or proc.poll() is not None, 90.0) and proc.poll() is None
        assert t.feed_until(lambda: bool(t.diags) and t.diags[-1][1].get("tokens_kept"), 10.0)
        values = t.diags[-1][1]
        assert values["method"] == "fastv" and values["tokens_kept"] == str(2 * 72)  # 50% of 2 x 144
    finally:
        _stopped_cleanly(proc)


def test_the_sim_launch_runs_a_closed_loop(tester, tmp_path):
    """What sim.launch.py makes launch_ros run: sim_node and vla_node with their generated parameter
    files, wired by the same remappings, on the simulator's clock."""
    get = {"method": "vla_pruner", "keep_ratio": "0.25", "model_path": "", "family": "pick", "color": "red",
           "shape": "cube", "seed": "0", "action_source": "action_chunk"}
    assert set(get) == set(SIM_ARGUMENTS)
    sim, vla = sim_parameters(get)
    sim_file = launch_params_file(tmp_path / "sim.yaml", "/sim_node", sim)
    vla_file = launch_params_file(tmp_path / "vla.yaml", "/vla_node", vla)
    simp = start(["--ros-args", "-r", "__node:=sim_node", "--params-file", str(sim_file),
                  "-r", "action_chunk:=/vla_node/action_chunk", "-r", "ee_target:=/vla_node/ee_target",
                  "-r", "gripper:=/vla_node/gripper"], module="vla_pruner_ros.ros.sim_node")
    vlap = start(["--ros-args", "-r", "__node:=vla_node", "--params-file", str(vla_file)])
    t = tester()
    statuses: list[dict] = []
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    t.node.create_subscription(String, "/sim_node/status", lambda m: statuses.append(json.loads(m.data)),
                               QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                                          reliability=ReliabilityPolicy.RELIABLE))
    def chunks() -> int:  # counted by vla_node: the episode may be over before this tester matches its output
        return int(t.diags[-1][1].get("chunks", 0)) if t.diags else 0

    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and not (chunks() >= 3 and statuses and statuses[-1]["step"] >= 6):
            assert simp.poll() is None and vlap.poll() is None
            time.sleep(0.2)
        assert chunks() >= 3 and statuses and statuses[-1]["step"] >= 6, (statuses[-1:], t.diags[-1:])
    finally:
        stopped = [interrupt(p) for p in (vlap, simp)]  # both, whatever happens to the first
    for rc, out in stopped:
        assert rc == 0 and "Traceback" not in out, out[-3000:]


OLD_ROBOT_FILE = """vla_node:
  ros__parameters:
    action_names: [x, y, z, roll, pitch, yaw, gripper]
"""


@pytest.mark.parametrize("args,expected", [
    (["--params-file", "{old}"], "action_names: rcl reads 'y' as a boolean (YAML 1.1)"),
    (["--params-file", "config/widowx.yaml", "-p", "model.unnorm_key:="],
     "rcl refuses an empty value; for an empty string write -p model.unnorm_key:=\"''\""),
    (["-p", "control.rate_hz:=15"], "control.rate_hz=15 is an integer to rcl, but the parameter is a double"),
    (["--params-file", "config/missing.yaml"], "parameter file config/missing.yaml does not exist"),
    (["--params-file", "config/widowx.yaml", "-p", "model.path:=/no/such/model"],
     "'/no/such/model' is neither a checkpoint directory nor a preset"),
    (["--params-file", "config/widowx.yaml", "-p", "pruning.method:=fastvv"], "pruning.method='fastvv' is unknown"),
    (["--params-file", "config/widowx.yaml", "-p", "pruning.keep_ratio:=1.5"],
     "pruning.keep_ratio=1.5 must be in (0, 1]"),
    (["--params-file", "config/widowx.yaml", "-p", "camera.wrist:=false"],
     "camera.wrist=false gives 1 camera(s), but the model 'embedded' expects 2: set camera.wrist: true"),
    (["--params-file", "config/widowx.yaml", "-p", "pose_feedback:=false"],
     "needs the end-effector pose as proprio (8 values), but pose_feedback is false: set pose_feedback: true"),
    (["--params-file", "config/widowx.yaml", "-p", "model.unnorm_key:=bridge_orig"],
     "unnorm_key='bridge_orig' is not in the checkpoint's norm_stats"),
    (["-r", "bad remap"], "rcl refused the command line"),
])
def test_start_up_errors_are_one_line_and_exit_2(tmp_path, args, expected):
    old = tmp_path / "old_widowx.yaml"
    old.write_text(OLD_ROBOT_FILE)
    proc = start(["--ros-args", *[a.replace("{old}", str(old)) for a in args]])
    out, _ = proc.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.strip()]
    assert proc.returncode == 2, out
    assert len(lines) == 1 and lines[0].startswith("vla_node: error: "), out
    assert expected in lines[0]


def test_resets_and_instruction_changes_during_plans_never_stop_the_planner(tester):
    """A model slow enough (the `small` preset, 0.3-0.6 s a plan here) that ~4 resets or instruction
    changes a second land while plans are computed; chunks keep coming afterwards, none from a frame
    taken before the latest reset, and malformed input and SIGINT leave no traceback."""
    proc = start(["--ros-args", "-p", "model.path:=small", "-p", "pruning.method:=vla_pruner",
                  "-p", "pruning.keep_ratio:=0.25", "-p", "control.rate_hz:=10.0", "-p", "control.replan_steps:=1",
                  "-p", "diagnostics_period_s:=0.5"])
    t = tester()
    t.instruction_pub.publish(String(data="pick up the red cube"))
    resets: list[tuple[float, float]] = []
    try:
        assert t.feed_until(lambda: len(t.chunks) >= 2 or proc.poll() is not None, 90.0, cameras=1, pose=False)
        assert proc.poll() is None
        before = len(t.chunks)
        i, end, next_churn, k = 0, time.monotonic() + 10.0, 0.0, 0
        while time.monotonic() < end:  # frames at 20 Hz, a reset or a new instruction every 0.25 s
            t.publish_inputs(i, cameras=1, pose=False)
            i += 1
            if time.monotonic() >= next_churn:
                if k % 2 == 0:
                    resets.append(t.reset())
                else:
                    t.instruction_pub.publish(String(data=f"push the blue block {k}"))
                k += 1
                next_churn = time.monotonic() + 0.25
            time.sleep(0.05)
        during = len(t.chunks) - before
        after_churn = len(t.chunks)
        assert t.feed_until(lambda: len(t.chunks) >= after_churn + 5, 20.0, hz=20.0, cameras=1, pose=False), \
            f"no chunks after the churn ({during} during it)"
        # malformed input: logged, counted, dropped; planning goes on
        for bad in (Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10)),  # truncated
                    Image(height=4, width=4, encoding="yuv422", step=8, data=bytes(32))):  # unsupported
            t.image_pubs[0].publish(bad)
            time.sleep(0.3)  # best effort, depth 1: one at a time
        t.instruction_pub.publish(String(data="   "))
        n = len(t.chunks)
        assert t.feed_until(lambda: len(t.chunks) >= n + 3, 20.0, hz=20.0, cameras=1, pose=False)
        assert t.feed_until(lambda: bool(t.diags) and int(t.diags[-1][1]["bad_messages"]) >= 3, 10.0, cameras=1,
                            pose=False), str({k: v for k, v in t.diags[-1][1].items() if k.startswith("bad")})
        values = t.diags[-1][1]
        n = len(t.chunks)
        t.feed_until(lambda: len(t.chunks) > n, 10.0, hz=20.0, cameras=1, pose=False)
        t.publish_inputs(0, cameras=1, pose=False)  # SIGINT while a plan is being computed
        time.sleep(0.1)
    finally:
        out = _stopped_cleanly(proc)
    for arrived, msg in t.chunks:
        stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
        done = [sent for sent, answered in resets if answered + 0.2 < arrived]  # published after that reset
        assert not done or stamp >= max(done), "a chunk from a frame taken before the latest reset"
    assert len(resets) >= 15 and int(values["stale_plans"]) >= 1, values  # resets did land mid-plan
    assert int(values["plan_errors"]) == 0, values
    assert "dropped camera 0 frame" in out and "Traceback" not in out
