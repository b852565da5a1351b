"""config/pruning.yaml: every method parameter with the code's default, as the node's own parameters
in a ROS 2 parameter file; the same file builds the same pruner for the node, replay and demo."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from vla_pruner_ros.errors import SettingsError
from vla_pruner_ros.pruning import METHOD_CONFIGS, PrunerConfig
from vla_pruner_ros.pruning.config_file import load_pruner
from vla_pruner_ros.settings import load_param_file

CONFIG = Path(__file__).resolve().parents[1] / "config" / "pruning.yaml"


def test_shipped_file_lists_every_parameter_with_its_default():
    values = load_param_file(CONFIG)
    commented = set(re.findall(r"#\s*(\w+):", CONFIG.read_text()))
    common = {f.name for f in dataclasses.fields(PrunerConfig)}
    for method, cls in METHOD_CONFIGS.items():
        for f in dataclasses.fields(cls):
            if f.name in common:
                continue
            name = f"pruning.{method}.{f.name}"
            if f.default is None:  # optional: ROS parameters cannot be null, so it is shown commented out
                assert name not in values and f.name in commented, name
            else:
                assert values[name] == f.default and type(values[name]) is type(f.default), name
    assert set(values) <= {f"pruning.{m}.{f.name}" for m, c in METHOD_CONFIGS.items()
                           for f in dataclasses.fields(c)} | {"pruning.method", "pruning.keep_ratio", "pruning.layer",
                                                                     "pruning.warmup_ticks"}


def test_every_method_builds_from_the_file():
    for name in METHOD_CONFIGS:
        assert load_pruner(CONFIG, method=name).name == name


def test_overrides_and_errors(tmp_path):
    pruner = load_pruner(CONFIG, method="fastv", overrides={"keep_ratio": 0.5})
    assert pruner.config.keep_ratio == 0.5 and pruner.config.layer == 3
    assert load_pruner(CONFIG, method="vla_pruner", model_layer=1).config.layer == 1  # the model's K, as the node
    assert load_pruner(CONFIG, method="hybrid", overrides={"window": 5}).config.window == 5
    with pytest.raises(SettingsError, match="does not exist"):
        load_pruner(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("method: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_pruner(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("/**:\n  ros__parameters:\n    pruning:\n      fastv:\n        gama: 1.0\n")
    with pytest.raises(SettingsError, match=r"unknown parameter\(s\) \['pruning.fastv.gama'\]"):
        load_pruner(tmp_path / "typo.yaml")
    with pytest.raises(SettingsError, match="pruning.method='fast' is unknown"):
        load_pruner(CONFIG, method="fast")


def test_not_set_is_left_out_never_a_magic_value(tmp_path, capsys):
    """Parameters without a default are None until given; the old "not set" values are refused with the fix."""
    from vla_pruner_ros.cli import main
    from vla_pruner_ros.settings import parameters, settings_from_flat

    s = settings_from_flat({})
    assert (s.pruning.layer, s.model.head, s.model.unnorm_key, s.model.chunk_len, s.model.num_cameras) == (None,) * 5
    assert s.method_params["hybrid"]["deadline_ms"] is None and s.method_params["vla_pruner"]["action_layer"] is None
    assert settings_from_flat({"pruning.hybrid.deadline_ms": None}).method_params["hybrid"]["deadline_ms"] is None
    assert str(parameters()["pruning.layer"].type) == "an integer" and parameters()["pruning.layer"].default is None
    for line, fix in (("pruning:\n      layer: -1", "pruning.layer=-1 must be a layer index >= 0; leave it out"),
                      ("model:\n      unnorm_key: ''", "model.unnorm_key is empty; .* or leave it out"),
                      ("model:\n      head: ''", "model.head=''; expected 'tokens' or 'chunk' \\(leave it out"),
                      ("model:\n      chunk_len: 0", "model.chunk_len=0 must be >= 1; leave it out"),
                      ("model:\n      num_cameras: 0", "model.num_cameras=0 must be >= 1; leave it out"),
                      ("pruning:\n      layer: 1.5", "pruning.layer=1.5 is a double to rcl, but the parameter is an "
                                                     "integer")):
        path = tmp_path / "old.yaml"
        path.write_text(f"vla_node:\n  ros__parameters:\n    {line}\n")
        with pytest.raises(SettingsError, match=fix):
            settings_from_flat(load_param_file(path))
        assert main(["params", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(fix, err), err
    with pytest.raises(SettingsError, match="pruning.keep_ratio cannot be null; leave it out for its default 1.0"):
        settings_from_flat({"pruning.keep_ratio": None})
    with pytest.raises(SettingsError, match=r"control.replan_steps=2.0 has the wrong type; expected an integer"):
        settings_from_flat({"control.replan_steps": 2.0})
    assert main(["params", "--grep", "pruning.layer"]) == 0
    assert "pruning.layer = not set (an integer)" in capsys.readouterr().out


def test_params_and_set_mean_the_same_to_demo_eval_and_replay(tmp_path, capsys):
    """One way to describe pruning: a node parameter file (--params) and --set over it, read alike by
    demo, eval and replay (replay: the whole file, as the node; demo and eval: its pruning.* part)."""
    import json

    from vla_pruner_ros.cli import main

    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    pruning:\n      method: fastv\n      layer: 2\n"
                    "      random:\n        seed: 7\n    control:\n      rate_hz: 15.0\n")
    common = ["--params", str(path), "--set", "pruning.random.seed=3"]
    assert main(["demo", "--model", "tiny", "--synthetic", "--ticks", "1", "--methods", "random", *common]) == 0
    assert "== random (keep_ratio 0.250, layer 2)" in capsys.readouterr().out
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "tiny", "--methods", "random", "--keep", "0.5", "--episodes", "1",
                 "--families", "push", "--json", str(out), "--quiet", *common]) == 0
    meta = json.loads(out.read_text())["meta"]
    # the file's pruning.* parameters and --set over them; eval's rows set method and layer themselves,
    # and the simulator its control rate
    assert meta["params"] == {"pruning.random.seed": 3} and meta["layer"] is None
    from vla_pruner_ros.replay.command import ReplayArgs, load_settings

    s = load_settings(ReplayArgs("bag", params=str(path), overrides={"pruning.random.seed": 3}))
    assert (s.pruning.method, s.pruning.layer, s.method_params["random"]["seed"], s.control.rate_hz) == \
        ("fastv", 2, 3, 15.0)
    for command in (["demo", "--model", "tiny", "--synthetic"], ["eval", "--model", "tiny"]):
        assert main([*command, "--set", "pruning.keep_ratio=0.5"]) == 2
        assert "--set pruning.keep_ratio:" in capsys.readouterr().err
        assert main([*command, "--params", str(tmp_path / "missing.yaml")]) == 2
        assert "does not exist" in capsys.readouterr().err
