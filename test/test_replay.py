"""vla-pruner replay on real ROS 2 bags written by rosbags (sqlite3 and mcap)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from vla_pruner_ros import codecs as C
from vla_pruner_ros.cli import main
from vla_pruner_ros.replay.bag import BAG, Bag
from vla_pruner_ros.replay.writer import BagWriter
from vla_pruner_ros.synthetic import moving_square_frames

T0 = 1000.0


def make_bag(path: Path, storage: str = "mcap", n: int = 30, encoding: str = "rgb8", pad: int = 0,
             compressed: bool = False, instruction: str | None = "pick up the red cube", gap_after: int | None = None,
             sizes: tuple[int, int] = (64, 64), reference: bool = True, swap: int | None = None) -> Path:
    """A camera at 10 Hz (optionally with a gap starting a second episode), an instruction, expert actions."""
    frames = moving_square_frames(n, sizes[0], seed=1)
    times = [T0 + 0.1 * i + (2.0 if gap_after is not None and i > gap_after else 0.0) for i in range(n)]
    if swap is not None:  # header stamps of two frames exchanged: out of order in the bag
        times[swap], times[swap + 1] = times[swap + 1], times[swap]
    with BagWriter(path, storage) as w:
        if instruction:
            w.write("/instruction", C.string(BAG, instruction), int(T0 * 1e9))
        for i, (t, f) in enumerate(zip(times, frames, strict=True)):
            if i >= n // 2 and sizes[1] != sizes[0]:
                f = moving_square_frames(1, sizes[1], seed=2)[0]
            log = int((T0 + 0.1 * i + (2.0 if gap_after is not None and i > gap_after else 0.0)) * 1e9)
            msg = C.compressed_image(BAG, f, t) if compressed else C.image(BAG, f, t, encoding, pad)
            w.write("/camera/image", msg, log)
            if reference:
                w.write("/expert/action", C.joint_trajectory(BAG, np.full((1, 7), 0.01 * i), tuple("xyzrpqg"), 0.1, t,
                                                            "base"), log)
    return path


def replay(bag, *extra, tmp=None, expect=0):
    report = (tmp or Path(bag).parent) / f"report_{len(list((tmp or Path(bag).parent).glob('report_*')))}.json"
    rc = main(["replay", str(bag), "--model", "tiny", "--quiet", "--report", str(report), *extra])
    assert rc == expect
    return json.loads(report.read_text()) if rc == 0 else None


@pytest.mark.parametrize("storage,encoding,pad,compressed", [
    ("mcap", "rgb8", 0, False), ("sqlite3", "bgr8", 6, False), ("mcap", "rgb8", 0, True), ("sqlite3", "rgb8", 3, True),
])
def test_round_trip_both_storage_formats(tmp_path, storage, encoding, pad, compressed):
    bag = make_bag(tmp_path / "in", storage, encoding=encoding, pad=pad, compressed=compressed)
    out = tmp_path / "out"
    r = replay(bag, "--compare", "fastv,vla_pruner", "--keep", "0.25", "--reference-topic", "/expert/action",
               "--out", str(out))
    assert set(r["methods"]) == {"none", "fastv", "vla_pruner"}
    none, fastv = r["methods"]["none"], r["methods"]["fastv"]
    assert none["chunks"] == fastv["chunks"] >= 2 and none["ticks"] == 15  # 2.9 s at 5 Hz
    assert fastv["visual_tokens_kept"]["mean"] == 16 and fastv["deviation_from_none"]["chunks_compared"] >= 2
    assert len(fastv["deviation_from_none"]["first_step_per_dim"]) == 7
    assert none["error_vs_reference"]["first_step"] > 0
    with Bag(out) as b:
        assert b.topics["/camera/image"].count == 30 and b.topics["/instruction"].count == 1
        for m in ("none", "fastv", "vla_pruner"):
            assert b.topics[f"/replay/{m}/action_chunk"].count == r["methods"][m]["chunks"]
            assert b.topics[f"/replay/{m}/diagnostics"].msgtype == "diagnostic_msgs/msg/DiagnosticArray"
            assert b.topics[f"/replay/{m}/diagnostics"].count == r["methods"][m]["ticks"]  # one per control tick
        msgs = b.messages(["/replay/fastv/action_chunk"])
        assert len(msgs[0].msg.points) == 8 and list(msgs[0].msg.joint_names)[0] == "x"
    assert not list(tmp_path.glob(".*partial*")), "temporary output left behind"


def test_single_mcap_file_and_topic_autodetection(tmp_path):
    bag = make_bag(tmp_path / "in")
    r = replay(next(bag.glob("*.mcap")), tmp=tmp_path)
    assert r["meta"]["image_topic"] == "/camera/image" and r["meta"]["instruction_topic"] == "/instruction"


def test_compare_is_deterministic(tmp_path):
    bag = make_bag(tmp_path / "in")
    a = replay(bag, "--compare", "vla_pruner,vla_iap,hybrid", "--keep", "0.5", tmp=tmp_path)
    b = replay(bag, "--compare", "vla_pruner,vla_iap,hybrid", "--keep", "0.5", tmp=tmp_path)
    for m in a["methods"]:
        for key in ("chunks", "deviation_from_none", "visual_tokens_kept", "phase_timeline"):
            assert a["methods"][m][key] == b["methods"][m][key], (m, key)


def test_two_episodes_reset_state(tmp_path):
    bag = make_bag(tmp_path / "in", n=50, gap_after=24)
    r = replay(bag, "--method", "vla_pruner", "--keep", "0.25", "--params", str(_params(tmp_path, replan=1)),
               tmp=tmp_path)
    run = r["methods"]["vla_pruner"]
    assert run["episodes"] == 2
    assert run["visual_tokens_kept"]["mean"] == 16  # the budget in every tick of both episodes


def test_set_overrides_the_parameter_file(tmp_path):
    bag = make_bag(tmp_path / "in", n=30)
    args = ("--method", "vla_pruner", "--keep", "0.25", "--params", str(_params(tmp_path, replan=1)))
    cold = replay(bag, *args, tmp=tmp_path)["methods"]["vla_pruner"]["visual_tokens_kept"]["mean"]
    warm = replay(bag, *args, "--set", "pruning.warmup_ticks=3", tmp=tmp_path)["methods"]["vla_pruner"]
    assert cold == 16 and warm["visual_tokens_kept"]["mean"] > cold  # three unpruned ticks first


def _params(tmp_path: Path, replan: int = 0, **extra) -> Path:
    params = {"control": {"rate_hz": 10.0, "replan_steps": replan}, "pruning": {"layer": 2}, **extra}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"vla_node": {"ros__parameters": params}}))
    return path


def test_episode_reset_restarts_warm_up(tmp_path):
    from vla_pruner_ros.replay.command import ReplayArgs, run_replay

    bag = make_bag(tmp_path / "in", n=50, gap_after=24)
    params = _params(tmp_path, replan=1, pruning={"layer": 2, "warmup_ticks": 3})  # the policy's warm-up
    args = ReplayArgs(str(bag), params=str(params), model="tiny", method="vla_pruner", keep=0.25, quiet=True)
    from vla_pruner_ros.replay import command

    runs = {}
    original = command.replay_method

    def spy(*a, **k):
        runs["run"] = original(*a, **k)
        return runs["run"]

    command.replay_method = spy
    try:
        run_replay(args)
    finally:
        command.replay_method = original
    by_episode = {}
    for c in runs["run"].chunks:
        by_episode.setdefault(c.episode, []).append(sum(c.stats.tokens_kept))
    assert sorted(by_episode) == [1, 2]
    for kept in by_episode.values():
        assert kept[:3] == [64, 64, 64] and kept[3] == 16  # warm-up again after the reset


def test_outputs_plots_and_overlays(tmp_path):
    bag = make_bag(tmp_path / "in")
    plots, overlays = tmp_path / "plots", tmp_path / "overlays"
    replay(bag, "--compare", "fastv", "--keep", "0.25", "--reference-topic", "/expert/action", "--plots", str(plots),
           "--overlays", str(overlays), tmp=tmp_path)
    for name in ("actions.png", "latency.png", "tokens.png"):
        assert (plots / name).stat().st_size > 5000
    pngs = sorted((overlays / "fastv").glob("*.png"))
    assert pngs and all(p.stat().st_size > 1000 for p in pngs)
    import cv2

    img = cv2.imread(str(pngs[0]))
    assert img.shape[0] == img.shape[1] >= 64
    mp4 = tmp_path / "ov.mp4"
    replay(bag, "--compare", "fastv", "--keep", "0.25", "--overlays", str(mp4), tmp=tmp_path)
    assert (tmp_path / "ov_fastv.mp4").stat().st_size > 1000


def test_instruction_from_the_command_line(tmp_path, capsys):
    bag = make_bag(tmp_path / "in", instruction=None)
    replay(bag, tmp=tmp_path, expect=2)
    assert "no instruction topic" in capsys.readouterr().err
    r = replay(bag, "--instruction", "push the blue block", tmp=tmp_path)
    assert r["methods"]["none"]["chunks"] >= 2


def test_out_of_order_stamps_are_sorted_and_counted(tmp_path):
    bag = make_bag(tmp_path / "in", swap=10)
    r = replay(bag, tmp=tmp_path)
    assert r["meta"]["reordered_messages"] >= 1 and "out of time order" in r["meta"]["note"]


def test_frame_size_change_resizes_or_stops(tmp_path, capsys):
    bag = make_bag(tmp_path / "in", sizes=(64, 48))
    r = replay(bag, tmp=tmp_path)
    assert any("frame size changed from 64x64 to 48x48" in w for w in r["methods"]["none"]["warnings"])
    replay(bag, "--params", str(_params(tmp_path, camera={"size_change": "stop"})), tmp=tmp_path, expect=2)
    assert "frame size changed" in capsys.readouterr().err


def test_bad_bags_exit_2_and_leave_nothing(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a bag")
    replay(text, tmp=tmp_path, expect=2)
    assert "not a readable ROS 2 bag" in capsys.readouterr().err
    replay(tmp_path / "missing", tmp=tmp_path, expect=2)
    assert "does not exist" in capsys.readouterr().err

    broken_meta = make_bag(tmp_path / "meta")
    (broken_meta / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    replay(broken_meta, tmp=tmp_path, expect=2)
    assert "not a readable ROS 2 bag" in capsys.readouterr().err

    for storage, suffix in (("mcap", ".mcap"), ("sqlite3", ".db3")):
        bag = make_bag(tmp_path / f"trunc_{storage}", storage)
        data = next(bag.glob(f"*{suffix}"))
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        out = tmp_path / f"out_{storage}"
        replay(bag, "--out", str(out), tmp=tmp_path, expect=2)
        err = capsys.readouterr().err
        assert "truncated or corrupt" in err or "not a readable" in err, err
        assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_missing_topics_list_what_is_there(tmp_path, capsys):
    bag = make_bag(tmp_path / "in")
    replay(bag, "--image-topic", "/wrist/image", tmp=tmp_path, expect=2)
    err = capsys.readouterr().err
    assert "'/wrist/image' is not in" in err and "/camera/image  [sensor_msgs/msg/Image]  30 message(s)" in err


def test_listed_topic_without_messages_is_an_error(tmp_path, capsys):
    bag = make_bag(tmp_path / "in", storage="sqlite3")
    import sqlite3

    db = next(bag.glob("*.db3"))
    with sqlite3.connect(db) as con:  # the topic stays listed (metadata and topics table), its messages go
        con.execute("DELETE FROM messages WHERE topic_id = (SELECT id FROM topics WHERE name = '/camera/image')")
    replay(bag, tmp=tmp_path, expect=2)
    err = capsys.readouterr().err
    assert "listed with 30 message(s) but none could be read" in err


def test_unsupported_encoding_is_named(tmp_path, capsys):
    bag = make_bag(tmp_path / "in")
    shutil.rmtree(bag)
    frames = moving_square_frames(5, 16)
    with BagWriter(bag) as w:
        w.write("/instruction", C.string(BAG, "go"), int(T0 * 1e9))
        for i, f in enumerate(frames):
            msg = C.image(BAG, f, T0 + 0.1 * i)
            msg.encoding = "yuv422"
            w.write("/camera/image", msg, int((T0 + 0.1 * i) * 1e9))
    replay(bag, tmp=tmp_path, expect=2)
    err = capsys.readouterr().err
    assert "'yuv422' is not supported" in err and "rgb8" in err


def test_start_and_end_select_a_window(tmp_path, capsys):
    bag = make_bag(tmp_path / "in")
    r = replay(bag, "--start", "1.0", "--end", "2.0", tmp=tmp_path)
    assert r["methods"]["none"]["ticks"] == 6  # frames from 1.0 s to 2.0 s at 5 Hz
    assert r["methods"]["none"]["chunks"] >= 1  # the instruction sent at 0 s still holds
    replay(bag, "--start", "50", tmp=tmp_path, expect=2)
    assert "no messages between --start 50.0" in capsys.readouterr().err


def test_shipped_sample_episode_replays(tmp_path):
    from vla_pruner_ros.cli import SAMPLE_EPISODE

    with Bag(SAMPLE_EPISODE) as b:
        assert b.topics["/camera/image/compressed"].count >= 20 and b.topics["/instruction"].count == 1
    r = replay(SAMPLE_EPISODE, "--compare", "vla_pruner", "--keep", "0.25", "--reference-topic", "/expert/action",
               tmp=tmp_path)
    assert r["meta"]["instruction_topic"] == "/instruction" and r["methods"]["vla_pruner"]["chunks"] >= 3
