"""Training on recorded simulator episodes: a smoke run, resume, and the checkpoint as a policy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="the 'sim' extra (mujoco) is not installed")

from vla_pruner_ros.cli import main
from vla_pruner_ros.model import load_model
from vla_pruner_ros.policy import Observation, PolicyConfig, VLAPolicy
from vla_pruner_ros.pruning import build_pruner
from vla_pruner_ros.replay.bag import Bag
from vla_pruner_ros.train.dataset import chunk_targets, load_episodes, norm_stats
from vla_pruner_ros.train.trainer import TrainConfig, TrainError

SMALL = {"image_size": 48, "patch_size": 6, "vision_dim": 32, "vision_layers": 2, "llm_dim": 64, "llm_layers": 2,
         "llm_heads": 2, "llm_mlp": 128, "batch_size": 8, "val_every": 2, "save_every": 2, "warmup_steps": 1}


@pytest.fixture(scope="module")
def episodes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("episodes")
    assert main(["sim", "record", "--task", "all", "--episodes", "3", "--out", str(out), "--split", "all",
                 "--quiet"]) == 0
    return out


def test_dataset_reads_episodes(episodes_dir):
    eps = load_episodes(episodes_dir, 48)
    assert len(eps) == 3 and all(e.images.shape[1:] == (48, 48, 3) for e in eps)
    assert all(len(e.images) == len(e.proprio) == len(e.actions) == len(e.scene) for e in eps)
    with Bag(episodes_dir / "episode_0000_00000") as bag:  # scene offsets = recorded positions - the pose
        target = bag.messages(["/scene/target"])[2].msg.pose.position
        ee = bag.messages(["/ee_pose"])[2].msg.pose.position
    want = np.array([target.x - ee.x, target.y - ee.y, target.z - ee.z])
    assert np.allclose(eps[0].scene[2, :3], want, atol=1e-6) and np.abs(eps[0].scene).max() < 1.0
    stats = norm_stats(eps, "k")["k"]
    assert stats["action"]["mask"] == [True] * 6 + [False] and len(stats["proprio"]["q01"]) == 8
    tail = chunk_targets(eps[0].actions, len(eps[0].actions) - 2, 8)
    assert np.all(tail[2:, :6] == 0) and np.all(tail[2:, 6] == eps[0].actions[-1, 6])


def test_episodes_end_where_an_object_falls_off_the_table(episodes_dir):
    from dataclasses import replace

    from vla_pruner_ros.train.dataset import cut_at_fall

    e = load_episodes(episodes_dir, 48)[0]
    assert cut_at_fall(e) is e  # nothing fell: unchanged
    n = len(e.images)
    objects = {k: p.copy() for k, p in e.objects.items()}
    name = sorted(objects)[-1]
    objects[name][5:, 2] = -np.linspace(0.05, 40.0, n - 5)  # over the edge at frame 5, then falling
    cut = cut_at_fall(replace(e, objects=objects))
    assert len(cut.images) == len(cut.proprio) == len(cut.actions) == len(cut.scene) == 5
    assert all(len(p) == 5 for p in cut.objects.values()) and cut.objects[name][:, 2].min() > -0.02
    assert np.array_equal(cut.actions, e.actions[:5]) and np.array_equal(cut.images, e.images[:5])


def test_train_resume_and_use(episodes_dir, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({**SMALL, "steps": 3, "drop_keep": [1.0, 0.25]}))
    out = tmp_path / "run"
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(out)]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and np.isfinite(summary["train_loss"]) and np.isfinite(summary["val_loss"])
    assert np.isfinite(summary["val_loss_keep_0.25"]) and summary["val_loss_keep_0.25"] != summary["val_loss"]
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(out), "--steps", "4",
                 "--resume"]) == 0
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4
    model, tok = load_model(out / "checkpoint")
    assert model.config.tokens_per_camera == 64 and "sim_tabletop" in model.config.norm_stats
    policy = VLAPolicy(model, tok, build_pruner("vla_pruner", keep_ratio=0.5, layer=1, action_layer=1),
                       PolicyConfig(unnorm_key="sim_tabletop"))
    eps = load_episodes(episodes_dir, 48)
    chunk = policy.step(Observation([eps[0].images[0]], eps[0].instruction, eps[0].proprio[0]))
    assert chunk.actions.shape == (8, 7) and np.all(np.isfinite(chunk.actions))


class _Exploit:
    """Unpickling this runs a command: what an unrestricted ``torch.load`` would execute."""

    def __reduce__(self):
        import os

        return os.system, ("touch pwned_by_trainer_state",)


def test_a_crafted_trainer_state_is_refused(episodes_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({**SMALL, "steps": 2}))
    out = tmp_path / "run"
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(out)]) == 0
    import torch

    state = torch.load(out / "trainer_state.pt", weights_only=True)  # what train writes is plain data
    state["step"] = _Exploit()
    torch.save(state, out / "trainer_state.pt")
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds more than tensors and plain data, so it is refused" in err and "Traceback" not in err
    assert main(["probe", "--run", str(out), "--data", str(episodes_dir)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "pwned_by_trainer_state").exists()


def test_shipped_training_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "config"
    one, two = TrainConfig.from_file(root / "train.yaml"), TrainConfig.from_file(root / "train_wrist.yaml")
    drop = TrainConfig.from_file(root / "train_drop.yaml")
    assert (one.cameras, two.cameras, drop.cameras) == (1, 2, 2)
    assert (one.drop_keep, two.drop_keep, drop.drop_keep) == ((1.0,), (1.0,), (1.0, 0.5, 0.25, 0.125))
    assert dataclasses.replace(drop, drop_keep=(1.0,)) == two
    # the same model sizes: a one-camera checkpoint initialises the two-camera run
    sizes = ("image_size", "patch_size", "vision_dim", "vision_layers", "llm_dim", "llm_layers", "llm_mlp")
    assert [getattr(one, k) for k in sizes] == [getattr(two, k) for k in sizes]


def test_bad_training_input(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "holds no episode bags" in capsys.readouterr().err
    with pytest.raises(TrainError, match="multiple of patch_size"):
        TrainConfig(image_size=50, patch_size=8)
    with pytest.raises(TrainError, match=r"unknown training setting\(s\) \['lr_max'\]"):
        TrainConfig.from_file(None, lr_max=1.0)
    with pytest.raises(TrainError, match="aux_weight=-1"):
        TrainConfig(aux_weight=-1)
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--lr", "0"]) == 2
    assert "lr=0.0 must be > 0" in capsys.readouterr().err


def test_training_and_policy_normalise_proprio_alike(episodes_dir, tmp_path):
    import torch

    from vla_pruner_ros.model import build_tokenizer
    from vla_pruner_ros.train.trainer import Batches

    cfg = TrainConfig(**SMALL, steps=1)
    eps = load_episodes(episodes_dir, cfg.image_size)
    tok = build_tokenizer()
    from vla_pruner_ros.model import build_model

    model = build_model(cfg.model_config(len(tok), norm_stats(eps, "sim_tabletop")))
    batches = Batches(eps, tok, model.config, cfg)
    policy = VLAPolicy(model, tok, config=PolicyConfig(unnorm_key="sim_tabletop"))  # none: any depth
    p = eps[0].proprio[3]
    assert torch.allclose(policy._proprio_tensor(p)[0].double(), torch.from_numpy(batches.proprio(p)).double(),
                          atol=1e-6)


def test_training_sees_the_proprio_the_running_policy_was_fed(tmp_path, monkeypatch):
    """The two paths to the proprio, against each other: an episode driven by the embedded policy (DAgger with
    beta 0: every executed action is the policy's), the proprio ControlCore fed the policy at each plan, and
    the proprio training reads for the same frame from the recorded bag."""
    from vla_pruner_ros.model import embedded_available
    from vla_pruner_ros.settings import SIM_CONTROL
    from vla_pruner_ros.sim.driver import T_START

    if not embedded_available():
        pytest.skip("the embedded model is not installed")
    fed: dict[float, np.ndarray] = {}
    step = VLAPolicy.step

    def spy(self, obs):
        fed[round(float(obs.stamp), 6)] = np.asarray(obs.proprio, float)
        return step(self, obs)

    monkeypatch.setattr(VLAPolicy, "step", spy)
    assert main(["sim", "record", "--task", "pick", "--episodes", "1", "--out", str(tmp_path), "--wrist",
                 "--policy", "embedded", "--beta", "0", "--quiet"]) == 0
    episode = load_episodes(tmp_path, 48)[0]
    dt = 1.0 / SIM_CONTROL["control.rate_hz"]  # the simulator's step, the recorded frames' spacing
    compared = 0
    for stamp, proprio in fed.items():
        i = int(round((stamp - T_START) / dt))
        if i < len(episode.proprio):
            np.testing.assert_allclose(episode.proprio[i], proprio, atol=1e-6, err_msg=f"frame {i}")
            compared += 1
    assert compared >= 3, (compared, len(fed))


def test_position_code_and_loss_choice():
    import math

    import torch

    from vla_pruner_ros.model import build_model, build_tokenizer
    from vla_pruner_ros.train.trainer import LOSSES, init_position_embeddings, sincos_2d

    code = sincos_2d(3, 8)  # 9 patches, 2 frequencies per (row|col) x (sin|cos)
    for idx in range(9):
        r, c = divmod(idx, 3)
        want = [math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100),
                math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)]
        assert torch.allclose(code[idx], torch.tensor(want), atol=1e-6)
    with pytest.raises(TrainError, match="multiple of 4"):
        sincos_2d(3, 6)
    cfg = TrainConfig(**SMALL, steps=1)
    model = build_model(cfg.model_config(len(build_tokenizer()), {}))
    init_position_embeddings(model)
    dino = model.vision_backbone.featurizer.embeddings.position_embeddings[0]
    assert torch.equal(dino[0], torch.zeros_like(dino[0])) and torch.equal(dino[1:], sincos_2d(8, 32))
    err = torch.tensor([[0.5, -2.0]])
    assert float(LOSSES["l1"](err).mean()) == 1.25 and float(LOSSES["mse"](err).mean()) == 2.125
    with pytest.raises(TrainError, match="loss='huber'"):
        TrainConfig(loss="huber")


def test_init_from_a_checkpoint_needs_the_same_sizes(episodes_dir, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({**SMALL, "steps": 1}))
    first = tmp_path / "first"
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(first)]) == 0
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(tmp_path / "second"),
                 "--init", str(first / "checkpoint")]) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({**SMALL, "llm_dim": 32, "steps": 1}))
    assert main(["train", "--data", str(episodes_dir), "--config", str(other), "--out", str(tmp_path / "third"),
                 "--init", str(first / "checkpoint")]) == 2
    assert "other model sizes than the training config" in capsys.readouterr().err
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(first), "--resume",
                 "--init", str(first / "checkpoint")]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_probe_reports_grounding_by_step(episodes_dir, tmp_path, capsys):
    from vla_pruner_ros.train.probe import NAMES, probe

    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({**SMALL, "steps": 2}))
    run = tmp_path / "run"
    assert main(["train", "--data", str(episodes_dir), "--config", str(cfg), "--out", str(run)]) == 0
    result = probe(run, episodes_dir, steps=(0, 2))
    assert set(result) == {0, 2} and all(r["episodes"] == 3 for r in result.values())
    assert set(result[0]["corr"]) == set(NAMES) and all(np.isfinite(v) for v in result[0]["mse"].values())
    swapped = probe(run, episodes_dir, steps=(0,), counterfactual=True)[0]
    assert 1 <= swapped["episodes"] <= 3 and swapped["mse"] != result[0]["mse"]
    capsys.readouterr()
    assert main(["probe", "--run", str(tmp_path), "--data", str(episodes_dir)]) == 2
    assert "holds no trainer_state.pt" in capsys.readouterr().err


def test_each_sample_keeps_its_own_instruction(episodes_dir):
    """Samples are bucketed by prompt length; instructions of one length must not be shared in a batch."""
    from dataclasses import replace

    from vla_pruner_ros.model import build_model, build_tokenizer
    from vla_pruner_ros.train.trainer import Batches

    cfg = TrainConfig(**SMALL, steps=1)
    ep = load_episodes(episodes_dir, cfg.image_size)[0]
    eps = [replace(ep, instruction="pick up the red cube"), replace(ep, instruction="pick up the blue cube")]
    tok = build_tokenizer()
    model = build_model(cfg.model_config(len(tok), norm_stats(eps, "sim_tabletop")))
    batches = Batches(eps, tok, model.config, cfg)
    assert len(batches.buckets) == 1  # same length: one bucket
    both = batches.make([(0, 1), (1, 2), (0, 3)], None).ids
    alone = [batches.make([item], None).ids[0] for item in [(0, 1), (1, 2), (0, 3)]]
    assert not np.array_equal(alone[0].numpy(), alone[1].numpy())
    for row, want in zip(both, alone, strict=True):
        assert np.array_equal(row.numpy(), want.numpy())
    words = [tok.decode(row.tolist()).split() for row in both]
    assert ("red" in words[0], "blue" in words[1], "red" in words[2]) == (True, True, True)


def test_counterfactual_instructions_name_another_object(episodes_dir):
    """Counterfactual samples: same frame, an instruction naming another object of the scene, the scene
    loss aimed at that object's recorded position, no action loss."""
    import re

    import torch

    from vla_pruner_ros.model import build_model, build_tokenizer
    from vla_pruner_ros.train.trainer import (
        SCENE_SCALE,
        TABLE_CENTRE,
        Batches,
        action_rows,
        batch_losses,
        counterfactuals,
    )

    cfg = TrainConfig(**SMALL, steps=1, counterfactual=0.9)
    eps = load_episodes(episodes_dir, cfg.image_size)
    for ep in eps:  # only objects whose colour is theirs alone in the scene
        colours = [k.split()[0] for k in ep.objects]
        assert all(colours.count(k.split()[0]) == 1 for _, k in counterfactuals(ep))
    e = next(ep for ep in eps if counterfactuals(ep))
    named = re.search(r"the (\w+ \w+)", e.instruction).group(1)
    assert named in e.objects and len(e.objects) >= 3
    assert np.allclose(e.objects[named] - e.proprio[:, :3], e.scene[:, :3], atol=1e-6)  # = /scene/target
    alts = counterfactuals(e)
    assert alts and all(k != named and k.split()[0] != named.split()[0] for _, k in alts)
    for text, k in alts:
        assert text == e.instruction.replace(f"the {named}", f"the {k}")
    tok = build_tokenizer()
    model = build_model(cfg.model_config(len(tok), norm_stats(eps, "sim_tabletop")))
    batches = Batches([e], tok, model.config, cfg)
    items = [(0, t) for t in range(len(e.images))]
    batch = batches.make(items, np.random.default_rng(0))
    cf = [j for j, w in enumerate(batch.weight.tolist()) if w == 0]
    assert 0 < len(cf) < len(items)
    for j in range(len(items)):
        words = tok.decode(batch.ids[j].tolist())
        obj = next(k for _, k in alts if f"{k}" in words) if j in cf else named
        assert obj in words
        assert np.allclose(batch.scene[j, :3].numpy() * SCENE_SCALE, e.objects[obj][j] - e.proprio[j, :3], atol=1e-5)
        # the word head's inputs: the colour word of this sample's instruction and where that object is
        assert tok.decode([int(batch.ids[j, batch.word[j]])]) == obj.split()[0]
        assert np.allclose(batch.named[j].numpy() * SCENE_SCALE + TABLE_CENTRE, e.objects[obj][j], atol=1e-5)
    # the action loss is the mean over the samples with weight 1 only
    with torch.no_grad():
        loss, _ = batch_losses(model, batch, "mse")
        plain = batches.make(items, None)
        assert plain.weight.tolist() == [1.0] * len(items)
        full, _ = batch_losses(model, plain._replace(pixel=batch.pixel), "mse")
        per = (model.action_head(action_rows(model, batch)) - batch.targets).pow(2).mean(dim=(1, 2))
    keep = [j for j in range(len(items)) if j not in cf]
    assert torch.isclose(loss, per[keep].mean(), atol=1e-6) and not torch.isclose(loss, full, atol=1e-9)
    with pytest.raises(TrainError, match="counterfactual=1"):
        TrainConfig(counterfactual=1)
    with pytest.raises(TrainError, match="need aux_weight"):
        TrainConfig(counterfactual=0.5, aux_weight=0)


def test_patch_colour_labels_of_a_painted_frame():
    from vla_pruner_ros.sim.tasks import COLORS
    from vla_pruner_ros.train.trainer import patch_colours

    img = np.full((48, 48, 3), (200, 190, 170), np.uint8)  # table-like, unsaturated
    img[30:40, 30:40] = 255  # a white plate
    img[2:6, 2:6] = (np.array(COLORS["blue"]) * 255).astype(np.uint8)  # patch (0, 0) of 8 px patches
    img[20:23, 44:47] = (np.array(COLORS["orange"]) * 0.7 * 255).astype(np.uint8)  # shaded, patch (2, 5)
    img[10, 10] = (np.array(COLORS["red"]) * 255).astype(np.uint8)  # one pixel: below min_pixels
    want = np.zeros(36, int)
    want[0] = 1 + list(COLORS).index("blue")
    want[2 * 6 + 5] = 1 + list(COLORS).index("orange")
    assert patch_colours(img, 8).tolist() == want.tolist()


def test_token_drop_training_sees_what_random_pruning_leaves(tmp_path):
    """drop_keep < 1: each sample keeps round(keep * M_c) random tokens of each camera after layer K, and the
    training loss is the loss of the run-time pruned forward (``model.predict`` with the same tokens kept)."""
    import torch

    from vla_pruner_ros.model import build_model, build_tokenizer
    from vla_pruner_ros.model.interface import PruneSpec
    from vla_pruner_ros.train.trainer import Batches, batch_losses, final_hidden, random_drop

    out = tmp_path / "wrist"
    assert main(["sim", "record", "--wrist", "--task", "pick", "--episodes", "1", "--out", str(out),
                 "--split", "all", "--quiet"]) == 0
    cfg = TrainConfig(**{**SMALL, "llm_layers": 3}, cameras=2, prune_layer=2, drop_keep=[1.0, 0.25])
    assert cfg.drop_keep == (1.0, 0.25)
    eps = load_episodes(out, cfg.image_size)
    tok = build_tokenizer()
    model = build_model(cfg.model_config(len(tok), norm_stats(eps, "sim_tabletop"))).eval()
    batch = Batches(eps, tok, model.config, cfg).make([(0, t) for t in range(4)], None)
    m = model.config.tokens_per_camera  # 64 per camera
    chosen = []

    def recorded(inp):
        chosen.append(random_drop(0.25, torch.Generator().manual_seed(5))(inp))
        return chosen[-1]

    with torch.no_grad():
        loss, _ = batch_losses(model, batch, "mse", keep=0.25, generator=torch.Generator().manual_seed(5))
        pred = model.predict(batch.pixel, batch.ids, batch.proprio, PruneSpec(cfg.prune_layer, recorded))
        run_time = (pred.actions - batch.targets).pow(2).mean(dim=(1, 2)).mean()
        unpruned, _ = batch_losses(model, batch, "mse")
        hidden, layout, _, dropped = final_hidden(model, batch, 0.25, torch.Generator().manual_seed(5))
    keep = chosen[0]
    assert keep.shape == (4, 2 * 16) and dropped == 2 * (m - 16)
    assert ((keep[:, :16] < m).all() and (keep[:, 16:] >= m).all())  # 16 of each camera's 64
    assert len({tuple(r) for r in keep.tolist()}) == 4  # each sample its own draw
    assert torch.isclose(loss, run_time, atol=1e-6) and not torch.isclose(loss, unpruned, atol=1e-6)
    assert hidden.shape[1] == layout.length - dropped
    with pytest.raises(TrainError, match="drop_keep"):
        TrainConfig(drop_keep=[0.0])
