"""The MuJoCo tabletop: determinism, experts, success predicates, offscreen rendering, recorded bags."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")

from vla_pruner_ros.cli import main
from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.replay.bag import Bag
from vla_pruner_ros.sim.env import TabletopEnv
from vla_pruner_ros.sim.expert import Expert, run_episode
from vla_pruner_ros.sim.tasks import COLORS, HELD_OUT, Task, all_tasks


@pytest.fixture(scope="module")
def env():
    e = TabletopEnv()
    yield e
    e.close()


def test_rendering_works_offscreen(env):
    obs = env.reset(0, Task("pick", "red", "cube"))
    assert obs.image.shape == (128, 128, 3) and obs.image.dtype == np.uint8
    assert obs.image.std() > 10  # a scene, not a blank frame
    red = (obs.image[..., 0] > 150) & (obs.image[..., 1] < 80) & (obs.image[..., 2] < 80)
    assert red.sum() > 5  # the red cube is in view
    assert obs.ee_position.shape == (3,) and obs.ee_orientation.shape == (4,) and obs.gripper > 0.08  # open


def test_same_seed_same_frames_and_states(env):
    runs = []
    for _ in range(2):
        env.reset(7, Task("place", "blue", "block"))
        expert = Expert(env)
        frames, states = [], []
        for _ in range(6):
            obs, _, _ = env.step(expert.act())
            frames.append(obs.image)
            states.append(env.state())
        runs.append((frames, states))
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][0], runs[1][0], strict=True))
    assert runs[0][1] == runs[1][1]
    env.reset(8, Task("place", "blue", "block"))
    assert env.state()["objects"] != runs[0][1][0]["objects"]  # another seed, another scene


def test_hand_start_is_seeded_in_its_box_and_spread_zero_is_home(env):
    from vla_pruner_ros.sim.env import HOME, START_SPREAD

    task = Task("pick", "red", "cube")
    starts = [env.reset(seed, task).ee_position for seed in range(6)]
    offsets = np.array(starts) - HOME
    assert np.all(np.abs(offsets) <= START_SPREAD + 0.003) and np.ptp(offsets[:, 1]) > 0.05
    assert np.allclose(env.reset(3, task).ee_position, starts[3])
    home = TabletopEnv(start_spread=0.0)
    try:
        obs = home.reset(3, task)
        assert np.allclose(obs.ee_position, HOME, atol=0.003)
        home_objects = home.state()["objects"]
        env.reset(3, task)
        for name, pos in env.state()["objects"].items():  # the same scene; only the hand moved
            assert np.allclose(pos, home_objects[name], atol=1e-6)
    finally:
        home.close()
    with pytest.raises(SettingsError, match="start_spread=-1"):
        TabletopEnv(start_spread=-1)


@pytest.mark.parametrize("family", ["pick", "push", "place"])
def test_each_expert_succeeds_on_a_few_seeds(env, family):
    tasks = all_tasks(family)
    for seed in range(4):
        task = tasks[(seed * 11) % len(tasks)]
        ok, steps = run_episode(env, task, 100 + seed)
        assert ok, f"{task.instruction} (seed {100 + seed}) failed after {steps} steps"
        assert steps < task.step_limit


def _motion_residuals(env, seed: int, perturb: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per step: |hand motion - recorded action| (m), the recorded actions, the first frame."""
    seen = []
    run_episode(env, Task("pick", "red", "cube"), seed, perturb=perturb,
                on_step=lambda obs, action, _ok: seen.append((obs.ee_position.copy(), action, obs.image)))
    ee = np.array([s[0] for s in seen])
    actions = np.array([s[1] for s in seen[:-1]])
    return np.linalg.norm(np.diff(ee, axis=0) - actions[:, :3], axis=1), actions, seen[0][2]


def test_perturbed_episodes_execute_pushes_but_report_the_expert_action(env):
    clean, clean_actions, first = _motion_residuals(env, 5, 0.0)
    pushed, actions, first_pushed = _motion_residuals(env, 5, 0.03)
    assert np.array_equal(first, first_pushed)  # same scene: the pushes have their own random stream
    assert clean.max() < 0.005  # unperturbed, the hand tracks the recorded action within millimetres
    assert (pushed > 0.015).sum() >= 2  # pushed: on some steps the hand moved centimetres off the action
    # what on_step saw are the expert's own actions: within its step limit, no push added
    assert np.linalg.norm(actions[:, :3], axis=1).max() <= 0.05 + 1e-6
    assert len(actions) != len(clean_actions) or not np.allclose(actions, clean_actions)  # it corrected
    with pytest.raises(SettingsError, match="perturb=-0.01"):
        run_episode(env, Task("pick", "red", "cube"), 5, perturb=-0.01)


def test_expert_labels_the_approach_from_the_hand_state(env):
    """However the hand got there (a learned policy, a push), a hand low and 1.5-2 cm off the object
    gets a label that descends while centring; one 6 cm off rises to the approach height first.
    (Before, a fresh expert said "rise" where its own rollouts said "descend": contradictory labels.)"""
    from vla_pruner_ros.sim.env import _half_height
    from vla_pruner_ros.sim.expert import APPROACH_HEIGHT

    task = Task("place", "green", "cube")
    for offset, descends in (((0.015, -0.01), True), ((-0.01, 0.015), True), ((0.06, 0.0), False)):
        env.reset(11, task)
        obj = env.object_position(env.target.name)
        gz = max(0.026, _half_height("cube") + 0.006)
        goal = np.array([obj[0] + offset[0], obj[1] + offset[1], gz + 0.02])
        for waypoint in ([*goal[:2], 0.15], goal):  # put the hand there, from above
            for _ in range(8):
                env.step(np.array([*(waypoint - env.target_pose()[0]), 0, 0, 0, 1.0]))
        hand = env.ee_pose()[0]
        assert np.linalg.norm(hand - goal) < 0.004 and np.allclose(env.object_position(env.target.name), obj,
                                                                   atol=0.002)
        action = Expert(env).act()  # a fresh expert: the state alone decides
        toward = (obj[:2] - hand[:2]) / np.linalg.norm(obj[:2] - hand[:2])
        if descends:
            assert action[2] < 0 and np.allclose(action[:2], obj[:2] - hand[:2], atol=0.003), action
        else:
            assert action[2] > 0 and action[:2] @ toward > 0.02, action
            assert hand[2] < gz + APPROACH_HEIGHT


def test_expert_labels_the_transport_from_the_hand_state(env):
    """A driving policy that brings the grasped object low over the plate, skipping the carry
    height, gets "lower it while centring" (the old expert, still in its carry phase, said "rise to
    the carry height"); held low away from the plate, the label lifts it straight up first."""
    from vla_pruner_ros.sim.env import _half_height

    task = Task("place", "green", "cube")
    gz = max(0.026, _half_height("cube") + 0.006)
    for over_plate in (True, False):
        env.reset(11, task)
        expert = Expert(env)
        for _ in range(40):
            if expert.phase == "carry":
                break
            env.step(expert.act())
        assert expert.phase == "carry" and env.held(env.target.name)
        offset = (0.01, -0.008) if over_plate else (0.09, 0.0)
        goal = np.array([env.plate[0] + offset[0], env.plate[1] + offset[1], gz + 0.04])
        for _ in range(10):
            env.step(np.array([*(goal - env.target_pose()[0]), 0, 0, 0, 0.0]))
        hand = env.ee_pose()[0]
        assert np.linalg.norm(hand - goal) < 0.004 and env.held(env.target.name)
        action = expert.act()
        assert action[6] == 0.0  # keeps holding it
        if over_plate:
            assert action[2] < 0 and np.allclose(action[:2], env.plate - hand[:2], atol=0.003), action
        else:
            assert action[2] > 0.02 and np.linalg.norm(action[:2]) < 0.005, action


def _set_object(env, name: str, xyz) -> None:
    import mujoco

    j = env.model.body(name).jntadr[0]
    adr = env.model.jnt_qposadr[j]
    env.data.qpos[adr:adr + 3] = xyz
    env.data.qvel[env.model.jnt_dofadr[j]:env.model.jnt_dofadr[j] + 6] = 0
    mujoco.mj_forward(env.model, env.data)


def test_success_predicates_reject_near_misses(env):
    env.reset(1, Task("push", "red", "cube", "left"))
    p0 = env.start["obj0"]
    _set_object(env, "obj0", p0 + [0.0, 0.07, 0.0])  # 7 cm: short of 8
    assert not env.success()
    _set_object(env, "obj0", p0 + [0.07, 0.09, 0.0])  # far enough, but 7 cm sideways
    assert not env.success()
    _set_object(env, "obj0", p0 + [0.0, 0.09, 0.0])
    assert env.success()

    env.reset(2, Task("place", "red", "cube"))
    z = env.start["obj0"][2]
    _set_object(env, "obj0", [*(env.plate + [0.055, 0.0]), z + 0.008])  # just off the plate
    assert not env.success()
    _set_object(env, "obj0", [*env.plate, z + 0.008])
    assert env.success()
    env.gripper_cmd = 0.0  # still holding the gripper closed: not released
    assert not env.success()

    env.reset(3, Task("pick", "red", "cube"))
    p0 = env.start["obj0"]
    _set_object(env, "obj0", p0 + [0, 0, 0.1])  # lifted, but not in the hand
    assert not env.success()


def test_tasks_and_held_out_split():
    train, held = all_tasks(split="train"), all_tasks(split="eval")
    assert len(train) + len(held) == len(all_tasks())
    assert {(t.family, t.color, t.shape) for t in held} == HELD_OUT
    assert Task("push", "red", "cube", "left").instruction == "push the red cube to the left"
    with pytest.raises(SettingsError, match="task family 'fly' is unknown"):
        all_tasks("fly")


def test_recorded_bags_read_back(tmp_path, capsys):
    out = tmp_path / "bags"
    assert main(["sim", "record", "--task", "pick", "--episodes", "2", "--out", str(out), "--quiet"]) == 0
    assert "2 episodes, success 100.0%" in capsys.readouterr().out
    bags = sorted(out.iterdir())
    assert len(bags) == 2
    with Bag(bags[0]) as b:
        types = {t: i.msgtype for t, i in b.topics.items()}
        objects = {t for t in types if t.startswith("/scene/object/")}
        assert 3 <= len(objects) <= 5 and {types.pop(t) for t in objects} == {"geometry_msgs/msg/PoseStamped"}
        assert all(t.split("/")[-1].split("_")[0] in COLORS for t in objects)
        assert types == {"/camera/image": "sensor_msgs/msg/Image", "/instruction": "std_msgs/msg/String",
                         "/ee_pose": "geometry_msgs/msg/PoseStamped", "/gripper": "std_msgs/msg/Float64",
                         "/expert/action": "trajectory_msgs/msg/JointTrajectory", "/episode": "std_msgs/msg/String",
                         "/scene/target": "geometry_msgs/msg/PoseStamped",
                         "/scene/plate": "geometry_msgs/msg/PoseStamped"}
        n_actions = b.topics["/expert/action"].count
        assert b.topics["/camera/image"].count == b.topics["/ee_pose"].count == n_actions + 1
        assert b.topics["/scene/target"].count == b.topics["/scene/plate"].count == n_actions + 1
        msgs = b.messages(["/episode", "/expert/action", "/camera/image"])
        episode = [json.loads(m.msg.data) for m in msgs if m.topic == "/episode"]
        assert episode[-1]["success"] is True and episode[-1]["steps"] == n_actions
        action = next(m.msg for m in msgs if m.topic == "/expert/action")
        assert list(action.joint_names) == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
        image = next(m.msg for m in msgs if m.topic == "/camera/image")
        assert (image.height, image.width, image.encoding) == (128, 128, "rgb8")
    compressed = tmp_path / "jpeg"
    assert main(["sim", "record", "--task", "push", "--episodes", "1", "--out", str(compressed), "--compressed",
                 "--quiet"]) == 0
    with Bag(next(compressed.iterdir())) as b:
        assert b.topics["/camera/image/compressed"].msgtype == "sensor_msgs/msg/CompressedImage"
    assert episode[0]["perturb"] == 0.0
    perturbed = tmp_path / "perturbed"
    assert main(["sim", "record", "--task", "push", "--episodes", "1", "--out", str(perturbed), "--perturb", "0.03",
                 "--quiet"]) == 0
    with Bag(next(perturbed.iterdir())) as b:
        assert json.loads(b.messages(["/episode"])[0].msg.data)["perturb"] == 0.03


def test_recorded_episode_replays(tmp_path):
    out = tmp_path / "bags"
    assert main(["sim", "record", "--task", "place", "--episodes", "1", "--out", str(out), "--quiet"]) == 0
    report = tmp_path / "r.json"
    assert main(["replay", str(next(out.iterdir())), "--model", "tiny", "--compare", "fastv", "--keep", "0.25",
                 "--reference-topic", "/expert/action", "--report", str(report), "--quiet"]) == 0
    r = json.loads(report.read_text())
    assert r["methods"]["fastv"]["chunks"] >= 2 and r["methods"]["none"]["error_vs_reference"] is not None


def test_closed_loop_eval_table(tmp_path, capsys):
    out = tmp_path / "eval.json"
    md = tmp_path / "eval.md"
    plot = tmp_path / "success_flops.png"
    assert main(["eval", "--model", "tiny", "--methods", "none,fastv", "--keep", "0.5", "--episodes", "1",
                 "--json", str(out), "--md", str(md), "--plot", str(plot), "--quiet"]) == 0
    import cv2

    image = cv2.imread(str(plot))
    assert image is not None and image.shape[0] > 300 and image.std() > 5  # a drawn figure
    rep = json.loads(out.read_text())
    assert [(r["method"], r["keep"]) for r in rep["rows"]] == [("none", 1.0), ("fastv", 0.5)]
    none, fastv = rep["rows"]
    assert set(none["success"]) == {"pick", "push", "place"} and none["speedup"] == 1.0
    assert fastv["tokens_kept"] == 32.0 and fastv["llm_flops_ratio"] < 1 and none["tick_ms"] > 0
    assert none["delta_vs_none"] == 0.0
    for row in rep["rows"]:  # per-episode outcomes, one per episode, agreeing with the rates
        assert all(len(row["outcomes"][f]) == 1 and set(row["outcomes"][f]) <= {0, 1} for f in row["success"])
        assert all(row["success"][f] == 100.0 * row["outcomes"][f][0] for f in row["success"])
    assert rep["meta"]["replan_steps"] == 2 and rep["meta"]["gripper_threshold"] == 0.0  # the simulator's defaults
    assert md.read_text().startswith("| method | keep | effective keep | pick | push | place | avg (± s.e.) | rel. |")
    assert "| fastv | 50.0% |" in capsys.readouterr().out


def _trajectory(bag_dir):
    from vla_pruner_ros.codecs import pose_arrays

    with Bag(bag_dir) as b:
        msgs = b.messages(["/ee_pose", "/expert/action", "/executed/action", "/episode"])
    ee = np.array([pose_arrays(m.msg)[0] for m in msgs if m.topic == "/ee_pose"])
    expert, executed = (np.array([m.msg.points[0].positions for m in msgs if m.topic == t])
                        for t in ("/expert/action", "/executed/action"))
    return ee, expert, executed, json.loads(next(m.msg.data for m in msgs if m.topic == "/episode"))


def test_dagger_episodes_execute_the_policy_and_label_with_the_expert(tmp_path, capsys):
    from vla_pruner_ros.train.dataset import load_episode

    for beta in ("0", "1"):
        assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(tmp_path / beta),
                     "--policy", "tiny", "--beta", beta, "--quiet"]) == 0
    ee, expert, executed, info = _trajectory(next((tmp_path / "0").iterdir()))
    assert info["policy"] == "tiny" and info["beta"] == 0.0 and len(expert) == len(executed) == len(ee) - 1
    motion = np.diff(ee, axis=0)[:8]  # before this untrained policy runs into a workspace wall
    # the hand followed the policy's actions (up to tracking), not the labels
    assert np.linalg.norm(motion - executed[:8, :3], axis=1).max() < 0.003
    assert np.median(np.linalg.norm(motion - expert[:8, :3], axis=1)) > 0.01
    episode = load_episode(next((tmp_path / "0").iterdir()), 48)
    assert np.array_equal(episode.actions[:len(expert)], expert.astype(np.float32))  # labels: the expert's
    assert np.array_equal(episode.proprio[1:, 7], executed[:, 6].astype(np.float32))  # proprio: what ran
    ee, expert, executed, _ = _trajectory(next((tmp_path / "1").iterdir()))
    assert np.array_equal(executed, expert)  # beta 1: the expert's action on every step
    assert main(["sim", "record", "--episodes", "1", "--out", str(tmp_path / "x"), "--beta", "0.5"]) == 2
    assert "--beta and --replan-steps set how a learned policy drives; they need --policy" in capsys.readouterr().err
    assert main(["sim", "record", "--episodes", "1", "--out", str(tmp_path / "x"), "--policy", "tiny",
                 "--beta", "1.5"]) == 2
    assert "beta=1.5; expected the expert's share" in capsys.readouterr().err


def test_eval_draws_kept_token_strips(tmp_path):
    import cv2

    from vla_pruner_ros.model import load_model

    strips = tmp_path / "strips"
    assert main(["eval", "--model", "tiny", "--methods", "none,fastv", "--keep", "0.25", "--episodes", "2",
                 "--families", "push", "--strips", str(strips), "--quiet"]) == 0
    assert sorted(p.name for p in strips.iterdir()) == ["push_000_fastv_25.png", "push_000_none_100.png"]
    grid = load_model("tiny")[0].config.grid
    none, fastv = (cv2.imread(str(strips / f"push_000_{m}.png"))[..., ::-1] for m in ("none_100", "fastv_25"))
    assert none.shape[0] == fastv.shape[0] == 256  # 128 px frames at scale 2
    # the first tile is the same first frame for both (same seed): kept cells as drawn, the rest dimmed
    first_none, first_fastv = none[:, :256].astype(int), fastv[:, :256].astype(int)
    cell = 256 // grid
    centres = [(r * cell + cell // 2, c * cell + cell // 2) for r in range(grid) for c in range(grid)]
    lit = [(y, x) for y, x in centres if first_none[y, x].mean() > 30]  # cells that dimming changes
    kept = sum(np.abs(first_none[y, x] - first_fastv[y, x]).max() <= 1 for y, x in lit)
    dimmed = sum(np.abs(0.3 * first_none[y, x] - first_fastv[y, x]).max() <= 1.5 for y, x in lit)
    assert kept + dimmed == len(lit)  # every cell either as drawn (kept) or dimmed to 30% (pruned)
    assert round(0.25 * grid * grid) - (len(centres) - len(lit)) <= kept <= round(0.25 * grid * grid)
    assert first_fastv.mean() < 0.6 * first_none.mean()


def test_eval_trace_records_every_step_with_the_simulator_state(tmp_path):
    import csv

    from vla_pruner_ros.sim.evaluate import choose_tasks
    from vla_pruner_ros.sim.failures import TRACE_COLUMNS, read_trace

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "tiny", "--methods", "none", "--episodes", "2", "--families", "pick,push",
                 "--trace", str(tmp_path / "trace"), "--json", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "trace").iterdir()) == ["none_100.csv"]
    with open(tmp_path / "trace" / "none_100.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == TRACE_COLUMNS
    outcomes = json.loads(out.read_text())["rows"][0]["outcomes"]
    env = TabletopEnv(control_hz=5.0)
    for family in ("pick", "push"):
        for i, task in enumerate(choose_tasks(family, "eval", 2, 0)):
            ep = [r for r in rows if r["family"] == family and int(r["episode"]) == i]
            assert [int(r["step"]) for r in ep] == list(range(len(ep))) and len(ep) > 1
            obs = env.reset(int(ep[0]["seed"]), task)  # an independent reset with the trace's seed
            hand = np.array([[float(r[f"hand_{a}"]) for a in "xyz"] for r in ep])
            assert np.allclose(hand[0], obs.ee_position, atol=1e-4)
            assert np.allclose([float(ep[0][f"object_{a}"]) for a in "xyz"], env.start[env.target.name], atol=1e-3)
            assert np.allclose([float(ep[0]["plate_x"]), float(ep[0]["plate_y"])], env.plate, atol=1e-4)
            action = np.array([[float(r[c]) for c in ("dx", "dy", "dz")] for r in ep])
            assert np.abs(np.diff(hand, axis=0)[:5] - action[:5]).max() < 0.003  # the actions moved the hand
            assert int(ep[-1]["success"]) == outcomes[family][i]
    env.close()
    ended = read_trace(tmp_path / "trace" / "none_100.csv")  # `vla-pruner failures` reads these
    assert {f: [o == "success" for o in ended[f]] for f in ended} == {f: [bool(x) for x in v]
                                                                       for f, v in outcomes.items()}


def test_eval_set_passes_method_parameters_to_every_row(tmp_path, capsys):
    def tokens(*extra):
        out = tmp_path / "eval.json"
        assert main(["eval", "--model", "tiny", "--methods", "vla_pruner", "--keep", "0.25", "--episodes", "1",
                     "--families", "push", "--json", str(out), "--quiet", *extra]) == 0
        rep = json.loads(out.read_text())
        return rep["rows"][1]["tokens_kept"], rep["meta"]["params"]

    cold, params = tokens()
    window, params_window = tokens("--set", "pruning.vla_pruner.window=1")
    grid = 64  # tiny: 8 x 8 patches, one camera
    assert params == {} and params_window == {"pruning.vla_pruner.window": 1}
    assert cold == window == 0.25 * grid  # every tick spends the budget
    warm, _ = tokens("--set", "pruning.warmup_ticks=3")
    assert warm > cold  # the policy's warm-up (for every row alike) keeps every token at first
    assert main(["eval", "--model", "tiny", "--set", "pruning.keep_ratio=0.5"]) == 2
    assert "eval sets it per row; use --methods, --keep or --layer" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny", "--set", "window"]) == 2
    assert "--set 'window': expected KEY=VALUE" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny", "--episodes", "1", "--set", "pruning.vla_pruner.windw=2"]) == 2
    assert "unknown parameter(s) ['pruning.vla_pruner.windw']" in capsys.readouterr().err


def test_pairwise_method_differences_against_hand_computed_values():
    from vla_pruner_ros.sim.evaluate import markdown, pairwise

    def row(method, keep, pick, push):
        return {"method": method, "keep": keep, "outcomes": {"pick": pick, "push": push}}

    rep = {"families": ["pick", "push"], "rows": [
        row("none", 1.0, [1, 1, 1], [1, 1, 0]),
        row("fastv", 0.25, [0, 1, 0], [0, 1, 0]), row("vla_pruner", 0.25, [1, 1, 0], [1, 1, 0]),
        row("fastv", 0.5, [1, 1, 1], [1, 0, 0]), row("vla_pruner", 0.5, [1, 1, 1], [1, 0, 1])]}
    pw = pairwise(rep)
    assert list(pw) == ["0.5", "0.25"] and "none" not in pw["0.25"]
    # keep 0.25, vla_pruner - fastv per episode: 1,0,0,1,0,0: mean 1/3, sample variance 4/15
    delta, se = pw["0.25"]["vla_pruner"]["fastv"]
    assert delta == 33.3 and se == round(100 * (4 / 15) ** 0.5 / 6 ** 0.5, 1) == 21.1
    assert pw["0.25"]["fastv"]["vla_pruner"] == [-33.3, 21.1]
    assert pw["0.5"]["vla_pruner"]["fastv"] == [16.7, 16.7]  # 0,0,0,0,0,1: 1/6, s.e. sqrt(1/6)/sqrt(6)
    rep["rows"] = [dict(r, success={"pick": 0, "push": 0}, success_avg=0, stderr_avg=0, relative_success=0,
                        delta_vs_none=0, delta_stderr=0, llm_flops_ratio=1, tokens_kept=1, tick_ms=1, speedup=1)
                   for r in rep["rows"]]
    rep["pairwise"] = pw
    assert "| vla_pruner | +33.3 ± 21.1 |  |" in markdown(rep)


def test_paired_difference_against_hand_computed_values():
    from vla_pruner_ros.sim.evaluate import MethodResult, paired_difference

    a = MethodResult("fastv", 0.5, {"pick": [True, True, False, True], "push": [False, False]})
    ref = MethodResult("none", 1.0, {"pick": [True, False, False, True], "push": [True, False]})
    delta, se = paired_difference(a, ref)
    # per-episode differences 0, 1, 0, 0, -1, 0: mean 0, sample variance 2/5, s.e. sqrt(2/5)/sqrt(6)
    assert delta == 0.0 and abs(se - (0.4 ** 0.5) / 6 ** 0.5) < 1e-12
    never, always = MethodResult("x", 1, {"pick": [False, False]}), MethodResult("n", 1, {"pick": [True, True]})
    delta, se = paired_difference(never, always)
    assert (delta, se) == (-1.0, 0.0)


def test_eval_reports_the_effective_budget_and_flags_unmatched_rows(tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", "--model", "tiny", "--methods", "random,vla_pruner", "--keep", "0.25", "--episodes", "1",
            "--families", "push", "--json", str(out), "--quiet"]
    assert main(args) == 0
    rep = json.loads(out.read_text())
    none, *pruned = rep["rows"]
    assert none["effective_keep"] == 1.0 and [r["effective_keep"] for r in pruned] == [0.25, 0.25]
    assert rep["unmatched_budgets"] == {}
    text = capsys.readouterr()
    assert "| random | 25.0% | 25.0% |" in text.out and "UNMATCHED" not in text.out and "warning" not in text.err
    # a lower interaction budget for hybrid only: the rows no longer compare, and eval says so loudly
    from vla_pruner_ros.sim.evaluate import markdown, unmatched_budgets

    rows = [dict(r) for r in rep["rows"]]
    rows[2]["effective_keep"] = 0.2
    rep["unmatched_budgets"] = unmatched_budgets(rows)
    rep["rows"] = rows
    assert rep["unmatched_budgets"] == {"0.25": {"random": 0.25, "vla_pruner": 0.2}}
    assert "| vla_pruner | 25.0% | 20.0% **UNMATCHED** |" in markdown(rep)
    assert "**Budgets differ at keep 25.0%**" in markdown(rep)


def test_relevance_masks_agree_with_the_rendered_colours(env):
    """The segmentation masks of the relevance probe against an independent reading of the frame: the
    patches where the named object's colour shows."""
    import cv2

    from vla_pruner_ros.sim.relevance import patch_masks

    task = Task("pick", "red", "cube")
    obs = env.reset(3, task)
    grid = 12
    masks = patch_masks(env, "front", grid)
    rgb = np.asarray(COLORS["red"]) * 255
    close = (np.abs(obs.image.astype(float) - rgb).max(axis=2) < 60).astype(np.float32)  # lit red pixels
    by_colour = cv2.resize(close, (grid, grid), interpolation=cv2.INTER_AREA).reshape(-1) >= 0.2
    assert by_colour.any() and masks["object"].any()
    iou = (masks["object"] & by_colour).sum() / (masks["object"] | by_colour).sum()
    assert iou >= 0.5, (masks["object"].reshape(grid, grid).astype(int), by_colour.reshape(grid, grid).astype(int))
    assert masks["plate"].any() and masks["gripper"].any() and not (masks["object"] & masks["plate"]).all()


def test_relevance_command_reports_each_score(tmp_path, capsys):
    out = tmp_path / "relevance.json"
    assert main(["sim", "relevance", "--model", "tiny", "--episodes", "1", "--keep", "0.5", "--json", str(out),
                 "--quiet"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["score"] for r in rows} == {"semantic", "action", "edge", "random"}
    random = [r for r in rows if r["score"] == "random"]
    assert all(0.0 <= r["recall"]["plate"] <= 1.0 for r in random if r["recall"]["plate"] is not None)
    assert "| front | 50.0% | semantic |" in capsys.readouterr().out


def test_eval_merge_equals_one_evaluation_of_every_method(tmp_path, capsys):
    """An evaluation split across processes (other methods, the same episodes) merges into the table one
    run gives: the same outcomes, budgets and paired comparisons; runs on other episodes are refused."""
    def run(name, methods, *extra):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", "tiny", "--methods", methods, "--keep", "0.25", "--episodes", "2",
                     "--families", "push,pick", "--json", str(out), "--quiet", *extra]) == 0
        return out

    whole, a, b = run("whole", "random,fastv"), run("a", "random"), run("b", "fastv")
    merged = tmp_path / "merged.json"
    assert main(["eval-merge", str(a), str(b), "--json", str(merged), "--md", str(tmp_path / "m.md")]) == 0
    one, two = json.loads(whole.read_text()), json.loads(merged.read_text())
    keys = ("method", "keep", "success", "outcomes", "effective_keep", "tokens_kept", "delta_vs_none")
    assert [{k: r[k] for k in keys} for r in one["rows"]] == [{k: r[k] for k in keys} for r in two["rows"]]
    assert one["pairwise"] == two["pairwise"] and two["meta"]["merged_from"] == 2
    capsys.readouterr()
    for bad, why in ((run("seed", "fastv", "--seed", "1"), "differ in seed"), (a, "rows in more than one"),
                     (tmp_path / "m.md", "is not JSON")):
        assert main(["eval-merge", str(a), str(bad)]) == 2
        assert why in capsys.readouterr().err
