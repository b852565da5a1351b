"""The simulator's wrist camera end to end: rendering, recording, training a two-camera model,
driving it in closed loop and replaying its bags."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")

from vla_pruner_ros.cli import main
from vla_pruner_ros.replay.bag import Bag
from vla_pruner_ros.sim.env import TabletopEnv
from vla_pruner_ros.sim.tasks import COLORS, Task

SMALL = {"image_size": 48, "patch_size": 6, "vision_dim": 32, "vision_layers": 2, "llm_dim": 64, "llm_layers": 2,
         "llm_heads": 2, "llm_mlp": 128, "batch_size": 4, "val_every": 2, "save_every": 2, "warmup_steps": 1,
         "steps": 2}


def _mask(image: np.ndarray, colour: str) -> np.ndarray:
    """Pixels within 60 of the colour's RGB (shading darkens them a little)."""
    rgb = 255 * np.array(COLORS[colour])
    return np.abs(image.astype(float) - rgb).max(axis=-1) < 60


def test_wrist_camera_rides_on_the_hand():
    env = TabletopEnv(wrist=True)
    try:
        task = Task("pick", "red", "cube")
        obs = env.reset(3, task)
        assert obs.wrist.shape == obs.image.shape == (128, 128, 3) and len(obs.images) == 2
        assert not np.array_equal(obs.wrist, obs.image)
        cube = env.object_position(env.target.name)
        # Hand 9 cm above the cube: the cube is in the wrist frame, in its middle columns, and bigger
        # than in the front frame.
        for _ in range(12):
            hand = env.target_pose()[0]
            obs, _, _ = env.step(np.array([*(cube + [0, 0, 0.09] - hand), 0, 0, 0, 1.0]))
        red = _mask(obs.wrist, "red")
        cols = np.nonzero(red)[1]
        assert red.sum() > 4 * _mask(obs.image, "red").sum() > 0
        assert abs(cols.mean() - 63.5) < 12
        # Move the hand 3 cm to its left (+y): the cube moves right in the wrist image (image right = -y)
        for _ in range(4):
            hand = env.target_pose()[0]
            obs, _, _ = env.step(np.array([*(cube + [0, 0.03, 0.09] - hand), 0, 0, 0, 1.0]))
        assert np.nonzero(_mask(obs.wrist, "red"))[1].mean() > cols.mean() + 8
    finally:
        env.close()
    plain = TabletopEnv()
    try:
        obs = plain.reset(3, Task("pick", "red", "cube"))
        assert obs.wrist is None and len(obs.images) == 1
    finally:
        plain.close()


@pytest.fixture(scope="module")
def wrist_bags(tmp_path_factory):
    out = tmp_path_factory.mktemp("wrist")
    assert main(["sim", "record", "--task", "all", "--episodes", "3", "--out", str(out), "--split", "all",
                 "--wrist", "--quiet"]) == 0
    return out


def test_recorded_wrist_frames_match_the_front_camera(wrist_bags):
    from vla_pruner_ros.train.dataset import load_episode

    path = sorted(wrist_bags.iterdir())[0]
    with Bag(path) as b:
        assert b.topics["/camera/wrist/image"].msgtype == "sensor_msgs/msg/Image"
        assert b.topics["/camera/wrist/image"].count == b.topics["/camera/image"].count
        msgs = b.messages(["/camera/image", "/camera/wrist/image"])
    front = [m for m in msgs if m.topic == "/camera/image"]
    wrist = [m for m in msgs if m.topic == "/camera/wrist/image"]
    assert [m.time for m in front] == [m.time for m in wrist] and wrist[0].msg.header.frame_id == "wrist_camera"
    e = load_episode(path, 48)
    assert e.wrist.shape == e.images.shape and not np.array_equal(e.wrist, e.images)
    f = e.frames(2, 2)
    assert np.array_equal(f[0], e.images[2]) and np.array_equal(f[1], e.wrist[2])


def test_two_camera_model_trains_from_a_one_camera_checkpoint_drives_and_replays(wrist_bags, tmp_path, capsys):
    one = tmp_path / "one.yaml"
    one.write_text(json.dumps(SMALL))
    two = tmp_path / "two.yaml"
    two.write_text(json.dumps({**SMALL, "cameras": 2}))
    assert main(["train", "--data", str(wrist_bags), "--config", str(one), "--out", str(tmp_path / "one")]) == 0
    assert main(["train", "--data", str(wrist_bags), "--config", str(two), "--out", str(tmp_path / "two"),
                 "--init", str(tmp_path / "one" / "checkpoint")]) == 0
    assert "(1 camera(s) there, 2 here)" in capsys.readouterr().err
    model = str(tmp_path / "two" / "checkpoint")
    assert json.loads((tmp_path / "two" / "checkpoint" / "config.json").read_text())["vla_pruner"]["num_cameras"] == 2

    # sim.launch.py renders the wrist camera for it and subscribes vla_node to it
    from vla_pruner_ros.ros.launch_common import sim_parameters

    sim, vla = sim_parameters({"family": "pick", "color": "red", "shape": "cube", "seed": "0",
                               "action_source": "action_chunk", "model_path": model, "method": "", "keep_ratio": ""})
    assert sim["wrist"] is True and vla["camera.wrist"] is True
    sim, vla = sim_parameters({"family": "pick", "color": "red", "shape": "cube", "seed": "0",
                               "action_source": "action_chunk", "model_path": "tiny", "method": "", "keep_ratio": ""})
    assert sim["wrist"] is False and vla["camera.wrist"] is False

    # closed loop: the simulator renders the wrist camera for it; every chunk sees both cameras' tokens
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", model, "--methods", "none,fastv", "--keep", "0.5", "--episodes", "1",
                 "--families", "pick", "--json", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["tokens_kept"] for r in rows] == [2 * 64, 2 * 32]

    # replay: the wrist topic is found by name and fed as the second camera; the output bag keeps it
    bag = sorted(wrist_bags.iterdir())[0]
    report = tmp_path / "r.json"
    assert main(["replay", str(bag), "--model", model, "--compare", "fastv", "--keep", "0.25",
                 "--out", str(tmp_path / "replayed"), "--report", str(report), "--quiet"]) == 0
    r = json.loads(report.read_text())
    assert r["meta"]["wrist_topic"] == "/camera/wrist/image" and r["methods"]["fastv"]["chunks"] >= 2
    with Bag(tmp_path / "replayed") as b:
        assert b.topics["/camera/wrist/image"].count == b.topics["/camera/image"].count > 0

    # a one-camera bag cannot feed it, and it cannot drive DAgger episodes without the wrist camera
    plain = tmp_path / "plain"
    assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["replay", str(next(plain.iterdir())), "--model", model, "--quiet"]) == 2
    assert "the model expects 2 cameras" in capsys.readouterr().err
    assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(tmp_path / "d"),
                 "--policy", model, "--quiet"]) == 2
    assert "expects 2 cameras; record with --wrist" in capsys.readouterr().err
    # a two-camera training run needs the wrist frames
    assert main(["train", "--data", str(plain), "--config", str(two), "--out", str(tmp_path / "x")]) == 2
    assert "has no wrist camera frames" in capsys.readouterr().err
