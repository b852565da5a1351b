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
