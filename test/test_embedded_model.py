"""The shipped default model: loads offline from the package, is small, drives the simulator to
success unpruned on fixed seeds, and the README's main job replays the shipped episode with it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")

from vla_pruner_ros.model import EMBEDDED_DIR, embedded_available

if not embedded_available():
    pytest.skip("the trained default model has not shipped yet (issue 7 is open)", allow_module_level=True)

from vla_pruner_ros.cli import SAMPLE_EPISODE, main
from vla_pruner_ros.model import EMBEDDED, VLAConfig, resolve_model_path
from vla_pruner_ros.replay.bag import Bag
from vla_pruner_ros.settings import DEFAULT_MODEL, NodeSettings


def test_embedded_model_is_the_small_trained_default():
    path = resolve_model_path(EMBEDDED)
    assert path == EMBEDDED_DIR and DEFAULT_MODEL == EMBEDDED and NodeSettings().model.path == EMBEDDED
    assert sum(f.stat().st_size for f in path.iterdir()) < 20e6
    cfg = VLAConfig.from_file(path / "config.json")
    assert cfg.tokens_per_camera >= 144 and cfg.head == "chunk" and 4 <= cfg.chunk_len <= 8
    assert cfg.prune_layer == 1 and list(cfg.norm_stats) == ["sim_tabletop"] and cfg.num_cameras == 2
    assert (SAMPLE_EPISODE / "metadata.yaml").exists()


def test_shipped_model_succeeds_in_closed_loop(tmp_path):
    """CI smoke of `vla-pruner eval`: a method pair on fixed held-out seeds; unpruned succeeds on some."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", EMBEDDED, "--methods", "none,fastv", "--keep", "0.25",
                 "--episodes", "3", "--seed", "1", "--json", str(out), "--quiet"]) == 0
    none, pruned = json.loads(out.read_text())["rows"]
    assert (none["method"], pruned["method"], pruned["keep"]) == ("none", "fastv", 0.25)
    # every family: 3/3 when measured (run 16, replanning every 2 steps)
    assert all(none["success"][f] > 0 for f in ("pick", "push", "place")), none["success"]
    # every tick spends the budget (no warm-up unless the policy sets one for every method)
    assert pruned["tokens_kept"] == 0.25 * 144 * 2 and pruned["llm_flops_ratio"] < 1  # front + wrist camera


def test_demo_replays_the_shipped_episode(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--methods", "fastv"]) == 0
    text = capsys.readouterr().out
    assert "fastv" in text and "none" in text
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"none", "fastv"}
    assert report["methods"]["none"]["error_vs_reference"] is not None
    with Bag(out / "replay_bag") as bag:
        topics = set(bag.topics)
    assert {"/replay/none/action_chunk", "/replay/fastv/action_chunk", "/camera/image/compressed",
            "/camera/wrist/image/compressed"} <= topics
    assert (out / "plots" / "actions.png").exists()
    assert main(["demo", "--out", str(out), "--methods", "fastv"]) == 0  # a second run replaces the bag


def test_model_prune_layer_applies_when_the_layer_is_left_unset():
    from vla_pruner_ros.factory import build_policy, load_settings_model
    from vla_pruner_ros.settings import settings_from_flat

    model, tok = load_settings_model(NodeSettings())
    layer = {}
    for method, k in (("fastv", None), ("vla_pruner", None), ("divprune", None), ("fastv", 2)):
        given = {} if k is None else {"pruning.layer": k}  # not set: left out, as in the shipped YAML files
        s = settings_from_flat({"pruning.method": method, "pruning.keep_ratio": 0.25, **given})
        layer[(method, k)] = build_policy(s, model, tok).pruner.config.layer
    assert layer == {("fastv", None): 1, ("vla_pruner", None): 1, ("divprune", None): 0, ("fastv", 2): 2}
