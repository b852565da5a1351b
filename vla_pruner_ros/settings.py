"""The node's settings: one typed tree, the same for the ROS node, its YAML files and bag replay.

Parameter names are dotted paths of this tree (``pruning.keep_ratio``, ``safety.image_timeout_s``,
``pruning.vla_pruner.window``), so ``config/<robot>.yaml`` (a ROS 2 parameter file), ``--ros-args
-p name:=value`` and ``vla-pruner replay --params`` all mean the same thing. This module is the
schema only: no ROS, no torch (launch files and ``vla-pruner params`` read it); ``factory.py``
builds models and policies from it.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .param_file import ParamType
from .pruning import METHOD_CONFIGS, PrunerConfig, PrunerError, method_config, prunes_inside_llm
from .safety import SafetyConfig

DEFAULT_MODEL = "embedded"  # the simulator-trained model shipped in the package (vla_pruner_ros/weights/sim_tabletop)
DEFAULT_ACTION_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
# How the simulated arm is driven (eval, DAgger recording, sim.launch.py): 5 Hz, and a new chunk
# every 2 executed steps, which the embedded model succeeds with most often (BENCHMARKS.md).
SIM_CONTROL = {"control.rate_hz": 5.0, "control.replan_steps": 2}


@dataclass(frozen=True)
class ControlConfig:
    """Attributes:
        rate_hz: control tick rate; one action step per tick.
        replan_steps: executed steps after which a new chunk is planned; 0 = the chunk length
            (open-loop execution of whole chunks, as OpenVLA-OFT does).
        blend: weight of the older chunk where a new chunk overlaps it (0 = the new chunk replaces it).
        action_frame: frame id of published actions and targets.
        gripper_threshold: > 0: the gripper command becomes binary after the safety limits, fully open
            (``gripper_max``) at or above it and closed (``gripper_min``) below, as OpenVLA's evaluations
            binarise it; 0: the model's continuous value goes out as it is (a half-closed gripper).
    """

    rate_hz: float = 5.0
    replan_steps: int = 0
    blend: float = 0.0
    action_frame: str = "base_link"
    gripper_threshold: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.rate_hz, bool) or not isinstance(self.rate_hz, (int, float)) or not 0 < self.rate_hz <= 1000:
            raise SettingsError(f"control.rate_hz={self.rate_hz!r} must be in (0, 1000]")
        if isinstance(self.replan_steps, bool) or not isinstance(self.replan_steps, int) or self.replan_steps < 0:
            raise SettingsError(f"control.replan_steps={self.replan_steps!r} must be an integer >= 0 "
                                "(0 = chunk length)")
        if not 0.0 <= float(self.blend) < 1.0:
            raise SettingsError(f"control.blend={self.blend!r} must be in [0, 1)")
        if isinstance(self.gripper_threshold, bool) or not isinstance(self.gripper_threshold, (int, float)) or \
                not 0.0 <= self.gripper_threshold < 1.0:
            raise SettingsError(f"control.gripper_threshold={self.gripper_threshold!r} must be in [0, 1) "
                                "(0 = continuous gripper commands)")

    @property
    def dt(self) -> float:
        return 1.0 / float(self.rate_hz)


@dataclass(frozen=True)
class ModelSettings:
    """None: not set, the checkpoint's own (see DESCRIPTIONS)."""

    path: str = DEFAULT_MODEL
    head: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    unnorm_key: str | None = None
    chunk_len: int | None = None
    num_cameras: int | None = None


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
    layer: int | None = None  # not set: the model's prune_layer, else the method's default
    warmup_ticks: int = 0


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
    autostart: bool = True


DESCRIPTIONS: dict[str, str] = {
    "model.path": "checkpoint directory, 'embedded' (the shipped simulator-trained model), or a preset name "
                  "(tiny, small, openvla-7b) with random weights",
    "model.head": "tokens (OpenVLA) or chunk (OFT-style); not set = the checkpoint's own (OpenVLA presets: chunk; "
                  "pi0 has no other)",
    "model.device": "torch device: cpu, cuda, cuda:1, ...",
    "model.dtype": "float32, bfloat16 or float16",
    "model.unnorm_key": "dataset key of the checkpoint's norm_stats; not set = its only key",
    "model.chunk_len": "steps per action chunk, for an OpenVLA-OFT directory whose statistics name no platform OFT "
                       "knows (LIBERO 8, ALOHA 25, Bridge 5); not set = the checkpoint's",
    "model.num_cameras": "images the model takes, for such an OpenVLA-OFT directory; not set = the checkpoint's "
                         "(pi0: the cameras this node feeds)",
    "action_names": "one name per action dimension (published as joint_names)",
    "camera.compressed": "subscribe to sensor_msgs/CompressedImage (jpeg/png) instead of sensor_msgs/Image",
    "camera.wrist": "also subscribe to a second (wrist) camera on 'wrist_image'",
    "camera.qos_reliable": "camera QoS reliability: false = best effort (sensor data), true = reliable",
    "camera.qos_depth": "camera QoS history depth (1..5 keeps only the newest frames)",
    "camera.size_change": "frames changing size mid-stream: resize (with a warning) or stop (replay stops)",
    "pruning.method": f"pruning method: one of {sorted(METHOD_CONFIGS)}",
    "pruning.keep_ratio": "share of each camera's visual tokens kept, in (0, 1]",
    "pruning.layer": "pruning layer K; not set = the model's prune_layer (config.json) if it names one, else the "
                     "method's default",
    "pruning.warmup_ticks": "the first ticks of each episode run unpruned, for every method alike (0: none)",
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
    "autostart": "configure and activate the lifecycle node at start (false: wait for a lifecycle manager)",
}

@dataclass(frozen=True)
class Param:
    """One node parameter: its rcl type, its default and what it means. A None default: the parameter is
    declared with its type and no value (ROS parameters cannot be null), and stays not set unless a file,
    ``-p`` or a flag gives it one."""

    type: ParamType
    default: Any
    description: str


def _method_fields(method: str) -> dict[str, dataclasses.Field]:
    own = {f.name for f in dataclasses.fields(PrunerConfig)}
    return {f.name: f for f in dataclasses.fields(METHOD_CONFIGS[method]) if f.name not in own}


def _param_type(hint: Any) -> ParamType:
    """The rcl type of a settings field's annotation (``X | None`` is an X that may be left unset)."""
    args = typing.get_args(hint)
    if type(None) in args:
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) in (tuple, list):
        return ParamType(list, typing.get_args(hint)[0])
    return ParamType(hint)


@functools.cache
def parameters() -> dict[str, Param]:
    """Every node parameter by dotted name: the settings tree's fields, then each method's own."""
    out: dict[str, Param] = {}

    def walk(prefix: str, obj: Any) -> None:
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            name, value = f"{prefix}{f.name}", getattr(obj, f.name)
            if f.name == "method_params":
                continue
            if dataclasses.is_dataclass(value):
                walk(name + ".", value)
            else:
                out[name] = Param(_param_type(hints[f.name]), list(value) if isinstance(value, tuple) else value,
                                  DESCRIPTIONS.get(name, ""))

    walk("", NodeSettings())
    for method in sorted(METHOD_CONFIGS):
        hints = typing.get_type_hints(METHOD_CONFIGS[method])
        for fname, f in _method_fields(method).items():
            kind = _param_type(hints[fname])
            default = float(f.default) if kind.kind is float and f.default is not None else f.default
            note = " (not set unless given)" if default is None else ""
            out[f"pruning.{method}.{fname}"] = Param(kind, default, f"{method}: {fname}{note}; see "
                                                                    "vla_pruner_ros/pruning/config.py")
    return out


def declared_types() -> dict[str, ParamType]:
    """Parameter name -> rcl type, for checking files and ``-p`` overrides by rcl's rules."""
    return {name: p.type for name, p in parameters().items()}


def _typed(name: str, value: Any, param: Param) -> Any:
    """``value`` as the parameter's type (an integer where a double is wanted becomes one), or a named error."""
    if value is None:
        if param.default is not None:
            raise SettingsError(f"parameter {name} cannot be null; leave it out for its default {param.default!r}")
        return None
    kind = param.type.kind
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        ok = isinstance(value, (list, tuple)) and all(
            isinstance(v, param.type.item) and not (isinstance(v, bool) and param.type.item is not bool)
            or (param.type.item is float and isinstance(v, int) and not isinstance(v, bool)) for v in value)
        if ok:
            return [float(v) for v in value] if param.type.item is float else list(value)
    elif kind is float and number:
        return float(value)
    elif (kind is int and number and isinstance(value, int)) or (kind in (bool, str) and isinstance(value, kind)):
        return value
    raise SettingsError(f"parameter {name}={value!r} has the wrong type; expected {param.type}")


def settings_from_flat(values: dict[str, Any]) -> NodeSettings:
    """Build and validate settings from dotted names (unknown names are errors; a name left out, or None
    for a parameter without a default, takes its default)."""
    params = parameters()
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise SettingsError(f"unknown parameter(s) {unknown}; `vla-pruner params` lists the valid names")
    merged = {name: _typed(name, values.get(name, p.default), p) for name, p in params.items()}

    def section(cls, prefix: str, **extra):
        kwargs = {f.name: merged[f"{prefix}{f.name}"] for f in dataclasses.fields(cls) if f"{prefix}{f.name}" in merged}
        kwargs.update(extra)
        for k, v in list(kwargs.items()):
            if isinstance(v, list):
                kwargs[k] = tuple(v)
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as err:  # a dataclass given the wrong kind of value
            raise SettingsError(str(err)) from None

    method_params = {method: {fname: merged[f"pruning.{method}.{fname}"] for fname in _method_fields(method)}
                     for method in METHOD_CONFIGS}
    settings = NodeSettings(
        model=section(ModelSettings, "model."), action_names=tuple(merged["action_names"]),
        camera=section(CameraSettings, "camera."), pruning=section(PruningSettings, "pruning."),
        method_params=method_params, control=section(ControlConfig, "control."),
        safety=section(SafetyConfig, "safety."), pose_feedback=merged["pose_feedback"], dry_run=merged["dry_run"],
        diagnostics_period_s=merged["diagnostics_period_s"], autostart=merged["autostart"])
    validate(settings)
    return settings


def validate(settings: NodeSettings) -> None:
    p = settings.pruning
    if p.method not in METHOD_CONFIGS:
        raise SettingsError(f"pruning.method={p.method!r} is unknown; valid methods: {sorted(METHOD_CONFIGS)}")
    if not 0.0 < p.keep_ratio <= 1.0:
        raise SettingsError(f"pruning.keep_ratio={p.keep_ratio} must be in (0, 1]")
    if p.warmup_ticks < 0:
        raise SettingsError(f"pruning.warmup_ticks={p.warmup_ticks} must be >= 0")
    if not settings.model.path:
        raise SettingsError("model.path is empty; give a checkpoint directory or a preset name")
    if p.layer is not None and p.layer < 0:
        raise SettingsError(f"pruning.layer={p.layer} must be a layer index >= 0; leave it out for the model's "
                            "prune_layer (else the method's default)")
    if settings.model.head not in (None, "tokens", "chunk"):
        raise SettingsError(f"model.head={settings.model.head!r}; expected 'tokens' or 'chunk' (leave it out for "
                            "the checkpoint's own)")
    if settings.model.unnorm_key == "":
        raise SettingsError("model.unnorm_key is empty; name a key of the checkpoint's norm_stats, or leave it out "
                            "for its only key")
    for key in ("chunk_len", "num_cameras"):
        value = getattr(settings.model, key)
        if value is not None and value < 1:
            raise SettingsError(f"model.{key}={value} must be >= 1; leave it out for the checkpoint's own")
    if settings.model.dtype not in ("float32", "bfloat16", "float16"):
        raise SettingsError(f"model.dtype={settings.model.dtype!r}; expected float32, bfloat16 or float16")
    if settings.camera.size_change not in ("resize", "stop"):
        raise SettingsError(f"camera.size_change={settings.camera.size_change!r}; expected 'resize' or 'stop'")
    if not 1 <= settings.camera.qos_depth <= 100:
        raise SettingsError(f"camera.qos_depth={settings.camera.qos_depth} must be in [1, 100]")
    if settings.diagnostics_period_s <= 0:
        raise SettingsError(f"diagnostics_period_s={settings.diagnostics_period_s} must be > 0")
    if not settings.action_names or not all(isinstance(n, str) and n for n in settings.action_names):
        raise SettingsError(f"action_names={list(settings.action_names)} must be non-empty strings, one per "
                            "action dimension")
    pruning_config(settings)  # method parameters are checked by the method's own config


def check_against_model(settings: NodeSettings, num_cameras: int, proprio_dim: int) -> None:
    """Refuse settings with which the model can never produce an action, naming the fix."""
    wanted = 2 if settings.camera.wrist else 1
    if num_cameras != wanted:
        fix = ("set camera.wrist: true and publish the second camera on 'wrist_image'" if num_cameras == 2 else
               "set camera.wrist: false" if num_cameras == 1 else "this node feeds at most 2 cameras")
        raise SettingsError(f"camera.wrist={str(settings.camera.wrist).lower()} gives {wanted} camera(s), but the "
                            f"model {settings.model.path!r} expects {num_cameras}: {fix}")
    if proprio_dim and not settings.pose_feedback:
        raise SettingsError(f"the model {settings.model.path!r} needs the end-effector pose as proprio "
                            f"({proprio_dim} values), but pose_feedback is false: set pose_feedback: true and "
                            "publish geometry_msgs/PoseStamped on 'ee_pose'")


def pruning_config(settings: NodeSettings, model_layer: int | None = None) -> PrunerConfig:
    """The configured method's parameters. ``model_layer``: the model's recommended K
    (``VLAConfig.prune_layer``), used when ``pruning.layer`` is not set, the method prunes inside the LLM
    and its parameters leave K unset."""
    p = settings.pruning
    params = dict(settings.method_params.get(p.method, {}))
    if p.method != "none":
        params["keep_ratio"] = p.keep_ratio
    if p.layer is not None:
        params["layer"] = p.layer
    elif model_layer is not None and prunes_inside_llm(p.method):
        params["layer"] = model_layer
    try:
        return method_config(p.method, **params)
    except PrunerError as err:
        raise SettingsError(f"pruning.{p.method}: {err}") from None


def load_param_file(path: str | Path, node_name: str = "vla_node") -> dict[str, Any]:
    """Dotted parameters of ``node_name`` (or ``/**``) from a ROS 2 parameter file, typed as rcl types
    them (what ``--params-file`` and ``ros2 launch`` give the node); a value rcl would refuse or type
    differently from the parameter stops with the key and the fix."""
    from .param_file import read_param_file

    return read_param_file(path, node_name, declared_types())
