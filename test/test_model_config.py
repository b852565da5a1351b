"""Configuration parsing and validation."""

from __future__ import annotations

import json

import pytest

from vla_pruner_ros.model import ConfigError, VLAConfig, preset


def test_real_openvla_config_derives_full_sizes(shared_data):
    cfg = VLAConfig.from_file(shared_data / "openvla-7b" / "config.json")
    assert cfg.vision_dim == 2176 and cfg.llm_dim == 4096 and cfg.num_layers == 32
    assert cfg.tokens_per_camera == 256 and cfg.vocab_size == 32064 and cfg.action_base == 32000
    assert cfg.text_config["rms_norm_eps"] == 1e-6 and cfg.fused_featurizer["hidden_act"] == "gelu"
    assert "bridge_orig" in cfg.norm_stats and len(cfg.norm_stats) == 25


def test_own_config_round_trips_through_json():
    cfg = preset("tiny", head="chunk", num_cameras=2, proprio_dim=3).replace(prune_layer=1)
    again = VLAConfig.from_json_dict(json.loads(json.dumps(cfg.to_json_dict())))
    assert again == cfg


@pytest.mark.parametrize("change,match", [
    ({"head": "diffusion"}, "head='diffusion' is not supported"),
    ({"chunk_len": 4}, "chunk_len=4 needs head='chunk'"),
    ({"num_cameras": 0}, "num_cameras=0 must be a positive integer"),
    ({"prompt_template": "no field"}, "lacks the"),
    ({"prune_layer": 0}, r"prune_layer=0 must be in \[1, "),
])
def test_invalid_fields_are_named(change, match):
    with pytest.raises(ConfigError, match=match):
        preset("tiny").replace(**change)


def test_unknown_preset_and_fields():
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        preset("huge")
    data = preset("tiny").to_json_dict()
    data["vla_pruner"]["colour"] = "red"
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['colour'\]"):
        VLAConfig.from_json_dict(data)
    with pytest.raises(ConfigError, match="timm_model_ids"):
        VLAConfig.from_json_dict({"model_type": "openvla", "timm_model_ids": ["vit_base"]})
    with pytest.raises(ConfigError, match="model_type"):
        VLAConfig.from_json_dict({"model_type": "llava"})


def test_unreadable_config_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        VLAConfig.from_file(tmp_path / "config.json")
