"""The node's settings: one typed tree, the same for the ROS node, its YAML files and bag replay.

Parameter names are dotted paths of this tree (``pruning.keep_ratio``, ``safety.image_timeout_s``,
``pruning.vla_pruner.window``), so ``config/<robot>.yaml`` (a ROS 2 parameter file), ``--ros-args
-p name:=value`` and ``vla-pruner replay --params`` all mean the same thing. No ROS import here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .control import ControlConfig
from .policy import DEFAULT_ACTION_NAMES, PolicyConfig, VLAPolicy
from .pruning import PRUNERS, Pruner, build_pruner
from .safety import SafetyConfig
from .yaml_file import load_yaml

DEFAULT_MODEL = "embedded"  # the simulator-trained model shipped in the package (vla_pruner_ros/models/sim_tabletop)
# How the simulated arm is driven (eval, DAgger recording, sim.launch.py): 5 Hz, and a new chunk
# every 2 executed steps, which the embedded model succeeds with most often (BENCHMARKS.md).
SIM_CONTROL = {"control.rate_hz": 5.0, "control.replan_steps": 2}


class SettingsError(ValueError):
    """A parameter with a wrong name, type or value."""


@dataclass(frozen=True)
class ModelSettings:
    path: str = DEFAULT_MODEL
    head: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    unnorm_key: str = ""


@dataclass(frozen=True)
class CameraSettings:
    compressed: bool = False
    wrist: bool = False
    qos_reliable: bool = False
    qos_depth: int = 1
    size_change: str = "resize"


@dataclass(frozen=True)
class PruningSettings:
    method: str = "none"
    keep_ratio: float = 1.0
    layer: int = -1


@dataclass(frozen=True)
class NodeSettings:
    model: ModelSettings = field(default_factory=ModelSettings)
    action_names: tuple[str, ...] = DEFAULT_ACTION_NAMES
    camera: CameraSettings = field(default_factory=CameraSettings)
    pruning: PruningSettings = field(default_factory=PruningSettings)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # pruning.<method>.<param>
    control: ControlConfig = field(default_factory=ControlConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    pose_feedback: bool = False
    dry_run: bool = True
    diagnostics_period_s: float = 1.0


DESCRIPTIONS: dict[str, str] = {
    "model.path": "checkpoint directory, 'embedded' (the shipped simulator-trained model), or a preset name "
                  "(tiny, small, openvla-7b) with random weights",
    "model.head": "tokens (OpenVLA) or chunk (OFT-style); empty = the checkpoint's own (presets: chunk)",
    "model.device": "torch device: cpu, cuda, cuda:1, ...",
    "model.dtype": "float32, bfloat16 or float16",
    "model.unnorm_key": "dataset key of the checkpoint's norm_stats; empty = its only key",
    "action_names": "one name per action dimension (published as joint_names)",
    "camera.compressed": "subscribe to sensor_msgs/CompressedImage (jpeg/png) instead of sensor_msgs/Image",
    "camera.wrist": "also subscribe to a second (wrist) camera on 'wrist_image'",
    "camera.qos_reliable": "camera QoS reliability: false = best effort (sensor data), true = reliable",
    "camera.qos_depth": "camera QoS history depth (1..5 keeps only the newest frames)",
    "camera.size_change": "frames changing size mid-stream: resize (with a warning) or stop (replay stops)",
    "pruning.method": f"pruning method: one of {sorted(PRUNERS)}",
    "pruning.keep_ratio": "share of each camera's visual tokens kept, in (0, 1]",
    "pruning.layer": "pruning layer K; -1 = the model's prune_layer (config.json) if it names one, else the "
                     "method's default",
    "control.rate_hz": "control tick rate (Hz); one action step per tick",
    "control.replan_steps": "executed steps between new chunks; 0 = the chunk length (open loop, as OFT)",
    "control.blend": "weight of the older chunk where a new one overlaps it; 0 = replace",
    "control.action_frame": "frame_id of action chunks and end-effector targets",
    "control.gripper_threshold": "> 0: binary gripper commands (open at or above it, closed below); 0 = continuous",
    "safety.max_translation_step": "largest translation of one step (m)",
    "safety.max_rotation_step": "largest rotation of one step about each axis (rad)",
    "safety.gripper_min": "lowest gripper command",
    "safety.gripper_max": "highest gripper command",
    "safety.workspace_min": "lower corner [x, y, z] (m) of the box absolute targets stay in",
    "safety.workspace_max": "upper corner [x, y, z] (m) of the box absolute targets stay in",
    "safety.image_timeout_s": "no output when the newest image is older than this (s)",
    "safety.pose_timeout_s": "no absolute targets from a pose older than this (s)",
    "pose_feedback": "subscribe to 'ee_pose' (geometry_msgs/PoseStamped) and publish absolute targets",
    "dry_run": "start disarmed: only ~/action_chunk and diagnostics until ~/enable arms the outputs",
    "diagnostics_period_s": "period of /diagnostics messages (s)",
}

_OPTIONAL_SENTINEL = {int: -1, float: 0.0}  # ROS parameters cannot be null: these values mean "not set"


def _method_fields(method: str) -> dict[str, dataclasses.Field]:
    own = {f.name for f in dataclasses.fields(PRUNERS["none"].config_class)}
    return {f.name: f for f in dataclasses.fields(PRUNERS[method].config_class) if f.name not in own}


def _base_type(f: dataclasses.Field, owner: type) -> tuple[type, bool]:
    """(python type, optional) of a config field."""
    hints = typing.get_type_hints(owner)
    hint = hints[f.name]
    args = typing.get_args(hint)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def flat_defaults() -> dict[str, tuple[Any, str]]:
    """Every parameter name with its default (ROS-typed: no nulls) and description."""
    out: dict[str, tuple[Any, str]] = {}

    def walk(prefix: str, obj: Any) -> None:
        for f in dataclasses.fields(obj):
            name = f"{prefix}{f.name}"
            value = getattr(obj, f.name)
            if f.name == "method_params":
                continue
            if dataclasses.is_dataclass(value):
                walk(name + ".", value)
            else:
                out[name] = (list(value) if isinstance(value, tuple) else value, DESCRIPTIONS.get(name, ""))

    walk("", NodeSettings())
    for method in sorted(PRUNERS):
        cls = PRUNERS[method].config_class
        for fname, f in _method_fields(method).items():
            kind, optional = _base_type(f, cls)
            default = f.default
            if optional and default is None:
                default = _OPTIONAL_SENTINEL[kind]
                note = f" ({default} = not set)"
            else:
                note = ""
            doc = f"{method}: {fname}{note}; see vla_pruner_ros/pruning/{method}.py"
            out[f"pruning.{method}.{fname}"] = (float(default) if kind is float else default, doc)
    return out


def settings_from_flat(values: dict[str, Any]) -> NodeSettings:
    """Build and validate settings from dotted names (unknown names are errors)."""
    defaults = flat_defaults()
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise SettingsError(f"unknown parameter(s) {unknown}; see config/*.yaml or DESCRIPTIONS for valid names")
    merged = {name: values.get(name, default) for name, (default, _) in defaults.items()}
    for name, value in merged.items():
        default = defaults[name][0]
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, str) and not isinstance(value, str)):
            raise SettingsError(f"parameter {name}={value!r} has the wrong type; expected {type(default).__name__}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            merged[name] = float(value)

    def section(cls, prefix: str, **extra):
        kwargs = {f.name: merged[f"{prefix}{f.name}"] for f in dataclasses.fields(cls) if f"{prefix}{f.name}" in merged}
        kwargs.update(extra)
        for k, v in list(kwargs.items()):
            if isinstance(v, list):
                kwargs[k] = tuple(v)
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as err:
            raise SettingsError(str(err)) from None

    method_params: dict[str, dict[str, Any]] = {}
    for method in PRUNERS:
        params = {}
        for fname, f in _method_fields(method).items():
            value = merged[f"pruning.{method}.{fname}"]
            kind, optional = _base_type(f, PRUNERS[method].config_class)
            if optional and value == _OPTIONAL_SENTINEL[kind]:
                value = None
            params[fname] = value
        method_params[method] = params
    settings = NodeSettings(
        model=section(ModelSettings, "model."), action_names=tuple(merged["action_names"]),
        camera=section(CameraSettings, "camera."), pruning=section(PruningSettings, "pruning."),
        method_params=method_params, control=section(ControlConfig, "control."),
        safety=section(SafetyConfig, "safety."), pose_feedback=merged["pose_feedback"], dry_run=merged["dry_run"],
        diagnostics_period_s=merged["diagnostics_period_s"])
    validate(settings)
    return settings


def validate(settings: NodeSettings) -> None:
    p = settings.pruning
    if p.method not in PRUNERS:
        raise SettingsError(f"pruning.method={p.method!r} is unknown; valid methods: {sorted(PRUNERS)}")
    if not 0.0 < p.keep_ratio <= 1.0:
        raise SettingsError(f"pruning.keep_ratio={p.keep_ratio} must be in (0, 1]")
    if not settings.model.path:
        raise SettingsError("model.path is empty; give a checkpoint directory or a preset name")
    if settings.model.head not in ("", "tokens", "chunk"):
        raise SettingsError(f"model.head={settings.model.head!r}; expected 'tokens', 'chunk' or empty")
    if settings.model.dtype not in ("float32", "bfloat16", "float16"):
        raise SettingsError(f"model.dtype={settings.model.dtype!r}; expected float32, bfloat16 or float16")
    if settings.camera.size_change not in ("resize", "stop"):
        raise SettingsError(f"camera.size_change={settings.camera.size_change!r}; expected 'resize' or 'stop'")
    if not 1 <= settings.camera.qos_depth <= 100:
        raise SettingsError(f"camera.qos_depth={settings.camera.qos_depth} must be in [1, 100]")
    if settings.diagnostics_period_s <= 0:
        raise SettingsError(f"diagnostics_period_s={settings.diagnostics_period_s} must be > 0")
    build_settings_pruner(settings)  # method parameters are checked by the method's own config


def build_settings_pruner(settings: NodeSettings, model_layer: int | None = None) -> Pruner:
    """The configured pruner. ``model_layer``: the model's recommended K (``VLAConfig.prune_layer``),
    used when ``pruning.layer`` is -1, the method prunes inside the LLM and its parameters leave K unset."""
    p = settings.pruning
    params = dict(settings.method_params.get(p.method, {}))
    if p.method != "none":
        params["keep_ratio"] = p.keep_ratio
    if p.layer >= 0:
        params["layer"] = p.layer
    elif model_layer is not None and PRUNERS[p.method].config_class().layer > 0:
        params["layer"] = model_layer
    try:
        return build_pruner(p.method, **params)
    except ValueError as err:
        raise SettingsError(f"pruning.{p.method}: {err}") from None


def load_param_file(path: str | Path, node_name: str = "vla_node") -> dict[str, Any]:
    """Dotted parameters of ``node_name`` (or ``/**``) from a ROS 2 parameter YAML file."""
    path = Path(path)
    data = load_yaml(path, "parameter file", SettingsError)
    if not isinstance(data, dict):
        raise SettingsError(f"parameter file {path} must map node names to ros__parameters")
    flat: dict[str, Any] = {}
    for key, body in data.items():
        name = str(key).rsplit("/", 1)[-1]
        if name not in (node_name, "**") or not isinstance(body, dict) or "ros__parameters" not in body:
            continue
        _flatten("", body["ros__parameters"], flat)
    if not flat:
        raise SettingsError(f"parameter file {path} has no ros__parameters for {node_name!r} or '/**'")
    return flat


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}{k}.", v, out)
    else:
        out[prefix[:-1]] = obj


def load_settings_model(settings: NodeSettings):
    """(model, tokenizer) of ``model.*`` (local files or a preset; no download)."""
    import torch

    from .model import PRESET_NAMES, load_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[settings.model.dtype]
    head = settings.model.head or ("chunk" if settings.model.path in PRESET_NAMES else None)
    return load_model(settings.model.path, head=head, device=settings.model.device, dtype=dtype)


def policy_config(settings: NodeSettings) -> PolicyConfig:
    return PolicyConfig(unnorm_key=settings.model.unnorm_key or None, action_names=tuple(settings.action_names),
                        dt=settings.control.dt)


def build_policy(settings: NodeSettings, model=None, tokenizer=None) -> VLAPolicy:
    """The configured pruner around the model (loaded from ``model.*`` unless given)."""
    if model is None:
        model, tokenizer = load_settings_model(settings)
    pruner = build_settings_pruner(settings, model.config.prune_layer)
    return VLAPolicy(model, tokenizer, pruner, policy_config(settings))
