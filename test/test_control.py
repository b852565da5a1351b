"""The ROS-free control core: latest frame only, time-indexed chunks, skipping, holding, resets,
episodes applied between plans, and one way to report planning failures."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import frames, tiny

from vla_pruner_ros.control import ControlCore, PlanErrors
from vla_pruner_ros.errors import InputError, SettingsError
from vla_pruner_ros.policy import PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import build_pruner
from vla_pruner_ros.safety import SafetyConfig, SafetyFilter
from vla_pruner_ros.settings import ControlConfig


def _core(method="none", replan=0, blend=0.0, gripper_threshold=0.0, **safety):
    model, tok = tiny("chunk")
    policy = VLAPolicy(model, tok, build_pruner(method, **({} if method == "none" else {"keep_ratio": 0.5})),
                       PolicyConfig(dt=0.2))
    return ControlCore(policy, ControlConfig(rate_hz=5.0, replan_steps=replan, blend=blend,
                                             gripper_threshold=gripper_threshold),
                       SafetyFilter(SafetyConfig(**safety)))


def test_nothing_without_instruction_or_fresh_image():
    core = _core()
    f = frames(1)[0]
    assert core.blocked(0.0) == "no instruction"
    core.set_instruction("pick up the red cube")
    assert core.blocked(0.0) == "no image yet" and core.plan_request(0.0) is None
    core.set_image(0, f, 10.0)
    assert core.blocked(10.1) is None and core.blocked(11.0).startswith("image is 1.00 s old")


def test_latest_frame_only_and_dropped_frames_counted():
    core = _core()
    core.set_instruction("pick up the red cube")
    for i, f in enumerate(frames(4)):
        core.set_image(0, f, 1.0 + 0.01 * i)
    request = core.plan_request(1.05)
    assert request.observation.stamp == pytest.approx(1.03) and np.array_equal(request.observation.images[0],
                                                                                 frames(4)[3])
    assert core.counters.frames_dropped[0] == 3 and core.counters.frames_received[0] == 4


def test_time_indexed_execution_skips_past_steps_and_replans_after_the_chunk():
    core = _core()
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 0.0)
    plan = core.compute_plan(core.plan_request(0.05))
    assert core.install(plan, 0.45) == 2  # steps 0 and 1 (due at 0.0 and 0.2) are past at 0.45
    assert core.command(0.45).index == 2 and core.command(0.5).hold  # step 2 once, then hold until step 3
    core.set_image(0, frames(2)[1], 0.5)
    cmd = core.command(0.61)
    assert cmd.index == 3 and not cmd.hold and np.array_equal(cmd.delta, plan.deltas[3])
    assert not core.replan_due(0.61)
    for t in (0.8, 1.0, 1.2, 1.4):
        core.set_image(0, frames(1)[0], t)
        assert core.command(t).index == round(t / 0.2)
    assert core.replan_due(1.4) and core.counters.steps_executed == 6 and core.counters.steps_skipped == 2


def test_replan_steps_and_stale_hold_and_reset():
    core = _core(replan=2)
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 0.0)
    assert core.run_plan(0.0) is not None
    core.command(0.0)
    assert not core.replan_due(0.0)
    core.command(0.2)
    assert core.replan_due(0.2)
    last = core.command(5.0)  # the image is 5 s old: hold the last command, no new step
    assert last.hold and last.index == 1
    assert core.replan_due(5.0)  # the plan's time is over: a fresh image gets a fresh plan
    assert core.reset() == core.episode
    # the plan goes at once; the temporal state is cleared by the planner, before the next plan
    assert core.plan is None and core.policy.state.tick == 1
    assert core.blocked(5.0) == "no image yet"  # the old episode's frames are gone
    core.set_image(0, frames(1)[0], 5.0)
    assert core.run_plan(5.0) is not None and core.policy.state.tick == 1


def test_instruction_change_starts_an_episode():
    core = _core("vla_pruner")
    core.set_instruction("pick up the red cube")
    for t in range(4):
        core.set_image(0, frames(1)[0], float(t))
        core.run_plan(float(t))
        core.command(float(t))
    assert core.policy.state.tick >= 1
    episode = core.episode
    assert core.set_instruction("push the blue block") and core.episode == episode + 1
    assert not core.set_instruction("push the blue block") and core.episode == episode + 1
    core.set_image(0, frames(1)[0], 5.0)
    plan = core.run_plan(5.0)
    assert plan.chunk.stats.tick == 0 and core.policy.state.tick == 1  # the new episode's first tick


def test_blend_mixes_overlapping_steps():
    core = _core(blend=0.5, max_translation_step=10.0, max_rotation_step=10.0)
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 0.0)
    first = core.run_plan(0.0)
    old = first.deltas.copy()
    core.set_image(0, frames(2)[1], 0.2)
    assert core.plan_request(0.2) is None  # not due yet: plan explicitly
    plan = core.compute_plan(_request(core))
    raw = plan.deltas.copy()
    core.install(plan, 0.2)
    assert np.allclose(plan.deltas[0], 0.5 * old[1] + 0.5 * raw[0])
    assert np.allclose(plan.deltas[-1], raw[-1])  # nothing of the old chunk overlaps the last step


def _request(core):
    from vla_pruner_ros.control import PlanRequest
    from vla_pruner_ros.policy import Observation

    frame, stamp = core._frames[0]
    return PlanRequest(Observation([frame], core.instruction, None, stamp), None, core.episode)


def test_pose_feedback_gives_absolute_targets_within_the_workspace():
    core = _core(workspace_min=(-0.2, -0.2, 0.0), workspace_max=(0.2, 0.2, 0.3))
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 0.0)
    core.set_pose(np.array([0.19, 0.0, 0.1]), np.array([0, 0, 0, 2.0]), 0.0)
    plan = core.run_plan(0.0)
    assert plan.positions.shape == (8, 3) and np.all(plan.positions[:, 0] <= 0.2)
    assert np.allclose(np.linalg.norm(plan.orientations, axis=1), 1.0)
    with pytest.raises(InputError, match="not finite"):
        core.set_pose(np.array([np.nan, 0, 0]), np.array([0, 0, 0, 1.0]), 0.0)


def test_gripper_threshold_makes_gripper_commands_binary():
    continuous = _core()
    binary = _core(gripper_threshold=0.05, gripper_min=0.0, gripper_max=0.8)
    for core in (continuous, binary):
        core.set_instruction("pick up the red cube")
        core.set_image(0, frames(1)[0], 0.0)
    raw = continuous.run_plan(0.0)
    grip = np.clip(raw.chunk.actions[:, 6], 0.0, 1.0)
    assert np.array_equal(raw.deltas[:, 6], grip) and len(np.unique(grip)) > 2  # continuous by default
    plan = binary.run_plan(0.0)  # the same model and frame: the same raw chunk
    assert np.array_equal(plan.chunk.actions, raw.chunk.actions)
    want = np.where(np.clip(raw.chunk.actions[:, 6], 0.0, 0.8) >= 0.05, 0.8, 0.0)
    assert np.array_equal(plan.deltas[:, 6], want) and np.array_equal(plan.deltas[:, :6], raw.deltas[:, :6])
    assert binary.command(0.0).gripper in (0.0, 0.8)
    for bad in (1.0, -0.1, True):
        with pytest.raises(SettingsError, match="gripper_threshold"):
            ControlConfig(gripper_threshold=bad)


def test_a_plan_finished_for_an_ended_episode_is_dropped():
    core = _core("vla_pruner")
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 1.0)
    request = core.plan_request(1.0)
    core.reset(1.1)  # arrives while the plan is being computed
    outcome = core.try_plan(request, lambda: 1.2)
    assert outcome.stale and outcome.plan is None and core.plan is None
    assert core.counters.stale_plans == 1 and core.counters.chunks == 0
    assert not core.set_image(0, frames(1)[0], 1.05)  # taken before the reset: refused, counted
    assert core.counters.frames_before_reset == 1 and core.blocked(1.2) == "no image yet"
    assert core.set_image(0, frames(1)[0], 1.15)
    plan = core.run_plan(1.2)
    assert plan.episode == core.episode and plan.chunk.stats.tick == 0  # a fresh temporal state


def test_gaps_in_a_cameras_stamps_count_as_missed_frames():
    core = _core()
    stamps = [0.1 * i for i in range(10)] + [1.3, 1.4, 1.5]  # 1.0, 1.1 and 1.2 never arrived
    for t in stamps:
        core.set_image(0, frames(1)[0], t)
    assert core.counters.frames_missed[0] == 3 and core.counters.as_dict()["frames_missed"] == 3


def test_planning_failures_are_reported_alike_with_a_traceback_for_bugs():
    logged = []
    core = _core()
    core.errors = PlanErrors(logged.append, throttle_s=60.0)
    core.set_instruction("pick up the red cube")

    def fail(err):
        def step(_obs):
            raise err
        return step

    for err in (InputError("proprio contains NaN"), InputError("proprio contains NaN"), ZeroDivisionError("x")):
        core.policy.step = fail(err)
        core.set_image(0, frames(1)[0], 0.0)
        assert core.run_plan(0.0) is None
    assert core.counters.plan_errors == 3 and core.errors.by_kind == {"InputError": 2, "ZeroDivisionError": 1}
    assert logged[0] == "no chunk from this frame: proprio contains NaN"  # a package error: one line
    assert len(logged) == 2  # the second InputError is throttled
    assert "Traceback" in logged[1] and "ZeroDivisionError: x" in logged[1]  # a bug keeps its traceback
    assert core.errors.active
    del core.policy.step  # the real step again
    core.set_image(0, frames(1)[0], 0.0)
    assert core.run_plan(0.0) is not None and not core.errors.active


def test_consecutive_targets_never_jump_whatever_pose_a_chunk_starts_from():
    """A new chunk integrated from a lagging pose 0.5 m away: the commanded target moves at most one
    step's limits from the last command (and the hits are counted)."""
    core = _core(replan=1, max_translation_step=0.02, max_rotation_step=0.1,
                 workspace_min=(-2.0, -2.0, -2.0), workspace_max=(2.0, 2.0, 2.0))
    core.set_instruction("pick up the red cube")
    targets = []
    for k, (pose_x, yaw) in enumerate([(0.0, 0.0), (0.5, 0.0), (0.5, 0.0), (-0.3, 1.2)]):
        t = 0.2 * k
        core.set_image(0, frames(1)[0], t)
        half = yaw / 2
        core.set_pose(np.array([pose_x, 0.0, 0.3]), np.array([0.0, 0.0, np.sin(half), np.cos(half)]), t)
        assert core.run_plan(t) is not None
        cmd = core.command(t)
        targets.append((cmd.position, cmd.orientation))
    for (p0, q0), (p1, q1) in zip(targets, targets[1:], strict=False):
        assert np.linalg.norm(p1 - p0) <= 0.02 + 1e-9
        assert 2 * np.arccos(min(1.0, abs(float(np.dot(q0, q1))))) <= 0.1 + 1e-6
    assert core.safety.hits["target_step"] >= 2 and core.safety.hits["target_rotation_step"] >= 1


def test_a_step_without_a_pose_does_not_unhinge_the_target_limit():
    """A chunk planned while the pose was stale has no absolute targets; the next one that has is still
    limited against the last target commanded before it."""
    core = _core(replan=1, max_translation_step=0.02, workspace_min=(-2.0, -2.0, -2.0),
                 workspace_max=(2.0, 2.0, 2.0), pose_timeout_s=0.1)
    core.set_instruction("pick up the red cube")
    core.set_image(0, frames(1)[0], 0.0)
    core.set_pose(np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.0)
    core.run_plan(0.0)
    first = core.command(0.0).position
    core.set_image(0, frames(1)[0], 0.2)  # the pose is 0.2 s old now: a plan without targets
    core.run_plan(0.2)
    assert core.command(0.2).position is None
    core.set_image(0, frames(1)[0], 0.4)
    core.set_pose(np.array([0.6, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.4)  # far away
    core.run_plan(0.4)
    assert np.linalg.norm(core.command(0.4).position - first) <= 0.02 + 1e-9


def test_a_reset_forgets_the_old_episodes_last_target():
    """After a reset the arm may have been homed elsewhere: the old episode's target is not held, and the first
    target of the new episode is integrated from the measured pose, not limited around the previous episode's
    last target (an instruction change within an episode keeps the limit)."""
    for reset in (True, False):
        core = _core(replan=1, max_translation_step=0.02, workspace_min=(-2.0, -2.0, -2.0),
                     workspace_max=(2.0, 2.0, 2.0))
        core.set_instruction("pick up the red cube")
        core.set_image(0, frames(1)[0], 0.0)
        core.set_pose(np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.0)
        core.run_plan(0.0)
        first = core.command(0.0).position
        if reset:
            core.reset(0.1)
            assert core.command(0.15) is None  # no hold of the old episode's target before the new one plans
        else:
            core.set_instruction("push the blue block")
        core.set_image(0, frames(1)[0], 0.2)
        core.set_pose(np.array([0.6, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.2)  # homed 0.6 m away
        core.run_plan(0.2)
        step = np.linalg.norm(core.command(0.2).position - first)
        assert (step > 0.5) if reset else (step <= 0.02 + 1e-9)


def test_a_new_episodes_first_proprio_does_not_carry_the_old_gripper_command():
    """The proprio's last value is the last gripper command (1 = open before any). After a reset the first plan
    must see the gripper as at the start of any episode, not the previous episode's last command (a closed
    gripper after a grasp); an instruction change within an episode keeps it."""
    model, tok = tiny("chunk", proprio=8)
    policy = VLAPolicy(model, tok, build_pruner("none"), PolicyConfig(dt=0.2))
    for reset in (True, False):
        core = ControlCore(policy, ControlConfig(rate_hz=5.0, replan_steps=1), SafetyFilter(SafetyConfig(
            workspace_min=(-2.0, -2.0, -2.0), workspace_max=(2.0, 2.0, 2.0))))
        core.set_instruction("pick up the red cube")
        core.set_image(0, frames(1)[0], 0.0)
        core.set_pose(np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.0)
        core.run_plan(0.0)
        last = core.command(0.0).gripper
        assert last != 1.0
        if reset:
            core.reset(0.1)
        else:
            core.set_instruction("push the blue block")
        core.set_image(0, frames(1)[0], 0.2)
        core.set_pose(np.array([0.0, 0.0, 0.3]), np.array([0.0, 0.0, 0.0, 1.0]), 0.2)
        request = core.plan_request(0.2)
        assert request.observation.proprio[7] == (1.0 if reset else last)
