"""Checkpoint layout and I/O: real OpenVLA names and shapes, strict loading, bit-exact round trip."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import tiny
from safetensors.torch import load_file, save_file

from vla_pruner_ros.model import CheckpointError, VLAConfig, build_model, load_checkpoint, save_checkpoint
from vla_pruner_ros.model.checkpoint import INDEX_FILE, export_state_dict


def test_openvla_7b_layout_matches_real_index(shared_data):
    """The model built from the real config has exactly the 982 names and shapes of the real checkpoint."""
    cfg = VLAConfig.from_file(shared_data / "openvla-7b" / "config.json")
    model = build_model(cfg, device="meta")  # no weights are allocated
    assert all(p.is_meta for p in model.parameters())
    names = export_state_dict(model.state_dict())
    with open(shared_data / "openvla-7b" / "weight_keys.tsv") as f:
        rows = {r["name"]: tuple(json.loads(r["shape"])) for r in csv.DictReader(f, delimiter="\t")}
    index = json.loads((shared_data / "openvla-7b" / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(rows) == len(index) == 982
    assert set(names) == set(rows) == set(index)
    for name, tensor in names.items():
        assert tuple(tensor.shape) == rows[name], name
    assert sum(t.numel() for t in names.values()) == 7_541_237_184


def test_oft_config_and_dataset_statistics_parse(shared_data):
    oft = shared_data / "openvla-7b-oft-libero10"
    cfg = VLAConfig.from_file(oft / "config.json", head="chunk", chunk_len=8, num_cameras=2, proprio_dim=8)
    assert cfg.num_visual_tokens == 512 and cfg.num_action_queries == 56
    stats = json.loads((oft / "dataset_statistics.json").read_text())
    assert set(stats) == {"libero_10_no_noops"}
    assert len(stats["libero_10_no_noops"]["action"]["q01"]) == 7
    assert len(stats["libero_10_no_noops"]["proprio"]["q99"]) == 8
    index = json.loads((oft / "model.safetensors.index.json").read_text())["weight_map"]
    meta = build_model(cfg.replace(head="tokens", chunk_len=1, num_cameras=1, proprio_dim=0), device="meta")
    assert set(export_state_dict(meta.state_dict())) == set(index)


@pytest.mark.parametrize("head", ["tokens", "chunk"])
def test_save_load_round_trip_is_bit_exact(tmp_path, head):
    model, tok = tiny(head, 1, 4 if head == "chunk" else 0)
    save_checkpoint(model, tmp_path, tok, max_shard_bytes=100_000)
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all(s.startswith("model-") for s in shards)
    assert "vision_backbone.featurizer.blocks.0.attn.qkv.weight" in index["weight_map"]
    assert "vision_backbone.featurizer.blocks.0.ls1.scale_factor" in index["weight_map"]
    loaded = load_checkpoint(tmp_path)
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert loaded.config == model.config


def _corrupt(tmp_path, edit):
    model, tok = tiny("tokens")
    save_checkpoint(model, tmp_path, tok)
    (shard,) = set(json.loads((tmp_path / INDEX_FILE).read_text())["weight_map"].values())
    tensors = load_file(str(tmp_path / shard))
    edit(tensors)
    save_file(tensors, str(tmp_path / shard))
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    index["weight_map"] = dict.fromkeys(tensors, shard)
    (tmp_path / INDEX_FILE).write_text(json.dumps(index))


def test_missing_tensor_is_named(tmp_path):
    _corrupt(tmp_path, lambda t: t.pop("projector.fc2.bias"))
    with pytest.raises(CheckpointError, match=r"missing 1 tensor\(s\): 'projector.fc2.bias'"):
        load_checkpoint(tmp_path)


def test_unexpected_tensor_is_named(tmp_path):
    _corrupt(tmp_path, lambda t: t.__setitem__("projector.fc9.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected 1 tensor\(s\): 'projector.fc9.weight'"):
        load_checkpoint(tmp_path)


def test_shape_mismatch_is_named(tmp_path):
    _corrupt(tmp_path, lambda t: t.__setitem__("projector.fc3.bias", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"'projector.fc3.bias' has shape \(3,\); the config expects \(64,\)"):
        load_checkpoint(tmp_path)


def test_bad_directories(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="config.json"):
        load_checkpoint(tmp_path)
    model, tok = tiny("tokens")
    save_checkpoint(model, tmp_path, tok)
    shard = next(tmp_path.glob("model-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path)
    shard.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        load_checkpoint(tmp_path)
