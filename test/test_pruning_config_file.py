"""config/pruning.yaml: every method, every parameter, with the code's defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from vla_pruner_ros.pruning import PRUNERS, PrunerConfigError, PrunerError
from vla_pruner_ros.pruning.config_file import load_pruner, pruner_from_mapping

CONFIG = Path(__file__).resolve().parents[1] / "config" / "pruning.yaml"


def test_shipped_yaml_lists_every_parameter_with_its_default():
    data = yaml.safe_load(CONFIG.read_text())
    assert set(data["methods"]) == set(PRUNERS)
    for name, params in data["methods"].items():
        cls = PRUNERS[name].config_class
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        if name == "none":
            assert params == {}
            continue
        assert set(params) == set(fields), name
        for key, value in params.items():
            if key != "keep_ratio":  # the file sets a useful ratio; the class default is 1 (no pruning)
                assert value == fields[key], (name, key)
    for name in PRUNERS:
        assert load_pruner(CONFIG, method=name).name == name


def test_overrides_and_errors(tmp_path):
    pruner = load_pruner(CONFIG, method="fastv", overrides={"keep_ratio": 0.5})
    assert pruner.config.keep_ratio == 0.5 and pruner.config.layer == 3
    with pytest.raises(PrunerConfigError, match="does not exist"):
        load_pruner(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("method: [unclosed")
    with pytest.raises(PrunerConfigError, match="not valid YAML"):
        load_pruner(tmp_path / "bad.yaml")
    with pytest.raises(PrunerConfigError, match=r"x.yaml: method 'fastv' has no parameter\(s\) \['gama'\]"):
        pruner_from_mapping({"method": "fastv", "methods": {"fastv": {"gama": 1}}}, "x.yaml")
    with pytest.raises(PrunerError, match="unknown pruning method 'fast'"):
        pruner_from_mapping({"method": "fast"})
