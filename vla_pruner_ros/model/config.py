"""Model configuration: one frozen dataclass for every size of the OpenVLA (Prismatic) family.

A checkpoint's ``config.json`` is either the real OpenVLA one (``model_type: openvla``, timm model
ids, a sparse ``text_config``), from which the full-size architecture is derived, or one written by
this package, which adds a ``vla_pruner`` section holding every size explicitly. Presets:

- ``tiny``: a few layers of each tower, 64 visual tokens per camera; for tests.
- ``small``: OpenVLA's proportions at CPU scale: 256 visual tokens per camera (224 px, patch 14),
  32 thin Llama layers, vision towers around a tenth of the tick's FLOPs; for CPU benchmarks.
- ``openvla-7b``: the real sizes (DINOv2-L/14 reg4 + SigLIP So400m/14, Llama-2 7B).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROMPT_TEMPLATE = "In: What action should the robot take to {instruction}?\nOut:"
DINO_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIGLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
# "tokens": OpenVLA's autoregressive action tokens; "chunk": this project's OFT-like head (learned action
# queries); "oft": OpenVLA-OFT's published L1 regression head (zeroed placeholder rows, bidirectional attention).
HEADS = ("tokens", "chunk", "oft")
# How actions (and, for OFT, proprio) map to [-1, 1]: OpenVLA's and OFT's LIBERO/Bridge use the 1st/99th
# percentiles, OFT's ALOHA the min/max.
NORM_TYPES = ("bounds_q99", "bounds")
# How a camera frame is resized to the model's square input: "pil_bicubic" is OpenVLA's processor (PIL's
# bicubic, which antialiases when shrinking); "cv2_cubic" (OpenCV's INTER_CUBIC, no antialiasing) is what the
# models trained here before this setting existed were trained with.
RESIZES = ("pil_bicubic", "cv2_cubic")

# The only fused backbone OpenVLA ships; its tower sizes (docs/CHECKPOINTS.md, OpenVLA).
_OPENVLA_TIMM_IDS = ["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"]
_OPENVLA_DINO = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4, patch_size=14,
    image_size=224, num_register_tokens=4, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu",
    use_swiglu_ffn=False, layerscale_value=1e-5,
)
_OPENVLA_SIGLIP = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    image_size=224, patch_size=14, layer_norm_eps=1e-6, hidden_act="gelu",
)
# LlamaConfig defaults that OpenVLA's sparse text_config relies on (docs/CHECKPOINTS.md, OpenVLA).
_LLAMA2_7B = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=10000.0,
    vocab_size=32064, pad_token_id=32000, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
)


class VisualTokens:
    """Token counts every family's configuration derives from its ``grid`` (patches per side of one camera)
    and ``num_cameras``."""

    grid: int
    num_cameras: int

    @property
    def tokens_per_camera(self) -> int:
        return self.grid * self.grid

    @property
    def num_visual_tokens(self) -> int:
        return self.tokens_per_camera * self.num_cameras


@dataclass(frozen=True)
class VLAConfig(VisualTokens):
    """Every size and convention of one VLA model.

    Tower and LLM sizes are kwargs for the transformers config classes
    (``Dinov2WithRegistersConfig``, ``SiglipVisionConfig``, ``LlamaConfig``).
    """

    featurizer: dict[str, Any]
    fused_featurizer: dict[str, Any]
    text_config: dict[str, Any]
    name: str = "custom"
    head: str = "tokens"  # one of HEADS
    action_dim: int = 7
    chunk_len: int = 1  # steps per action chunk; 1 for the tokens head
    num_cameras: int = 1
    proprio_dim: int = 0  # 0: no proprio token
    action_head_hidden: int = 0  # chunk/oft head MLP width; 0 = LLM width
    head_blocks: int = 2  # residual blocks of the oft head
    norm_type: str = "bounds_q99"  # one of NORM_TYPES
    n_action_bins: int = 256
    action_token_base: int = 0  # action token ids are [base - n_action_bins, base); 0 = vocab - pad multiple
    pad_to_multiple_of: int = 64
    prompt_template: str = PROMPT_TEMPLATE
    prompt_suffix_token_id: int | None = None  # OpenVLA appends Llama's empty token 29871 if missing
    image_mean_std: tuple = (DINO_MEAN_STD, SIGLIP_MEAN_STD)
    resize: str = "pil_bicubic"
    center_crop: float = 1.0  # area share of OFT's evaluation centre crop (its checkpoints: 0.9); 1 = none
    norm_stats: dict[str, Any] = field(default_factory=dict)
    # K for the methods that prune inside the LLM when the user leaves it unset; None = the methods'
    # own defaults (set for the 32-layer OpenVLA). A shallow model names its own (e.g. 1 of 4 layers).
    prune_layer: int | None = None

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"head={self.head!r} is not supported; expected one of {HEADS}")
        if self.norm_type not in NORM_TYPES:
            raise ConfigError(f"norm_type={self.norm_type!r} is not supported; expected one of {NORM_TYPES}")
        if isinstance(self.center_crop, bool) or not isinstance(self.center_crop, (int, float)) or \
                not 0.0 < self.center_crop <= 1.0:
            raise ConfigError(f"center_crop={self.center_crop!r} must be in (0, 1] (1: no crop)")
        if self.resize not in RESIZES:
            raise ConfigError(f"resize={self.resize!r} is not supported; expected one of {RESIZES}")
        if self.head == "tokens" and self.chunk_len != 1:
            raise ConfigError(f"chunk_len={self.chunk_len} needs head='chunk'; the tokens head decodes one step")
        for key, value in (("action_dim", self.action_dim), ("chunk_len", self.chunk_len),
                           ("num_cameras", self.num_cameras), ("n_action_bins", self.n_action_bins)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if self.prune_layer is not None and not 0 < self.prune_layer < self.num_layers:
            raise ConfigError(f"prune_layer={self.prune_layer} must be in [1, {self.num_layers - 1}] for this "
                              f"{self.num_layers}-layer LLM")
        if self.proprio_dim < 0:
            raise ConfigError(f"proprio_dim={self.proprio_dim} must be >= 0")
        grids = {self.featurizer["image_size"] // self.featurizer["patch_size"],
                 self.fused_featurizer["image_size"] // self.fused_featurizer["patch_size"]}
        if len(grids) != 1 or self.featurizer["image_size"] != self.fused_featurizer["image_size"]:
            raise ConfigError(
                "the two vision towers must see the same image size and patch grid; got "
                f"featurizer {self.featurizer['image_size']}/{self.featurizer['patch_size']} and "
                f"fused_featurizer {self.fused_featurizer['image_size']}/{self.fused_featurizer['patch_size']}"
            )
        if self.action_token_base and self.action_token_base > self.vocab_size:
            raise ConfigError(f"action_token_base={self.action_token_base} exceeds vocab_size={self.vocab_size}")
        if "{instruction}" not in self.prompt_template:
            raise ConfigError(f"prompt_template {self.prompt_template!r} lacks the '{{instruction}}' field")

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.featurizer["image_size"])

    @property
    def grid(self) -> int:
        """Patches per side of one camera's token grid."""
        return self.image_size // int(self.featurizer["patch_size"])

    @property
    def vision_dim(self) -> int:
        return int(self.featurizer["hidden_size"]) + int(self.fused_featurizer["hidden_size"])

    @property
    def llm_dim(self) -> int:
        return int(self.text_config["hidden_size"])

    @property
    def num_layers(self) -> int:
        return int(self.text_config["num_hidden_layers"])

    @property
    def vocab_size(self) -> int:
        return int(self.text_config["vocab_size"])

    @property
    def action_base(self) -> int:
        return self.action_token_base or (self.vocab_size - self.pad_to_multiple_of)

    @property
    def num_action_queries(self) -> int:
        """Action query rows of the chunk and oft heads (one per step and dimension, as OFT); 0 for tokens."""
        return self.chunk_len * self.action_dim if self.head != "tokens" else 0

    @property
    def num_tail_rows(self) -> int:
        """Rows after the prompt: the action queries, and OFT's stop token after them."""
        return self.num_action_queries + (1 if self.head == "oft" else 0)

    @property
    def norm_eps(self) -> float:
        """Added to every span when (un)normalising: OFT's evaluation code adds 1e-8, OpenVLA's nothing."""
        return 1e-8 if self.head == "oft" else 0.0

    @property
    def stop_token_id(self) -> int:
        return int(self.text_config.get("eos_token_id", 2))

    def replace(self, **changes: Any) -> VLAConfig:
        return dataclasses.replace(self, **changes)

    # ---- serialisation ---------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """The checkpoint's config.json: OpenVLA's top-level keys plus an explicit ``vla_pruner`` section."""
        own = dataclasses.asdict(self)
        norm_stats = own.pop("norm_stats")
        text_config = own.pop("text_config")
        own["image_mean_std"] = [list(map(list, pair)) for pair in self.image_mean_std]
        return {
            "model_type": "openvla",
            "architectures": ["OpenVLAForActionPrediction"],
            "image_sizes": [self.image_size, self.image_size],
            "n_action_bins": self.n_action_bins,
            "pad_to_multiple_of": self.pad_to_multiple_of,
            "text_config": {"model_type": "llama", **text_config},
            "norm_stats": norm_stats,
            "vla_pruner": own,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any], **overrides: Any) -> VLAConfig:
        """Parse a config.json: this package's own, or the real OpenVLA one (sizes derived)."""
        if not isinstance(data, dict):
            raise ConfigError(f"config.json must hold a JSON object, got {type(data).__name__}")
        if data.get("model_type") != "openvla":
            raise ConfigError(f"config.json model_type={data.get('model_type')!r}; expected 'openvla'")
        norm_stats = data.get("norm_stats") or {}
        text = {k: v for k, v in (data.get("text_config") or {}).items() if k not in ("model_type", "torch_dtype")}
        if "vla_pruner" in data:
            own = dict(data["vla_pruner"])
            if "image_mean_std" in own:
                own["image_mean_std"] = tuple(tuple(map(tuple, pair)) for pair in own["image_mean_std"])
            own.setdefault("resize", "cv2_cubic")  # written before the setting existed: trained with OpenCV's
            kwargs = {**own, "text_config": text, "norm_stats": norm_stats}
        else:
            ids = data.get("timm_model_ids")
            if ids != _OPENVLA_TIMM_IDS or not data.get("use_fused_vision_backbone", False):
                raise ConfigError(
                    f"timm_model_ids={ids!r} is not supported; expected the fused {_OPENVLA_TIMM_IDS}")
            if data.get("image_resize_strategy", "resize-naive") != "resize-naive":
                raise ConfigError(f"image_resize_strategy={data['image_resize_strategy']!r}; expected 'resize-naive'")
            kwargs = dict(
                name="openvla-7b", featurizer=dict(_OPENVLA_DINO), fused_featurizer=dict(_OPENVLA_SIGLIP),
                text_config={**_LLAMA2_7B, **text}, n_action_bins=int(data.get("n_action_bins", 256)),
                pad_to_multiple_of=int(data.get("pad_to_multiple_of", 64)), prompt_suffix_token_id=29871,
                norm_stats=norm_stats,
            )
        kwargs.update(overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        try:
            return cls(**kwargs)
        except (KeyError, TypeError) as err:
            raise ConfigError(f"config.json is incomplete or malformed: {err}") from None

    @classmethod
    def from_dir(cls, checkpoint_dir: str | Path, **overrides: Any) -> VLAConfig:
        """A checkpoint directory's config.json, with what its side files say: the image normalisation of
        its preprocessor_config.json (as OpenVLA's processor reads it), the statistics of its
        dataset_statistics.json (which replace the config's, as OpenVLA's and OFT's fine-tuned checkpoints
        are loaded), and OFT's head and proprio projector where it holds them (``oft.py``)."""
        from . import oft

        checkpoint_dir = Path(checkpoint_dir)
        processor = checkpoint_dir / PREPROCESSOR_FILE
        if processor.is_file() and "image_mean_std" not in overrides:
            overrides = {**overrides, "image_mean_std": read_preprocessor(processor)}
        statistics = oft.read_statistics(checkpoint_dir)
        if statistics is not None and "norm_stats" not in overrides:
            overrides = {**overrides, "norm_stats": statistics}
        if oft.is_oft_dir(checkpoint_dir):  # the platform from the fine-tuning statistics only (config.json's
            # norm_stats are the base model's pretraining mixture, which names bridge_orig)
            overrides = oft.oft_overrides(checkpoint_dir, statistics, overrides)
        config = cls.from_file(checkpoint_dir / "config.json", **overrides)
        if processor.is_file():
            check_preprocessor(processor, config.image_size)
        return config

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> VLAConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist; a checkpoint directory needs a config.json")
        return cls.from_json_dict(_load_json(path), **overrides)


PREPROCESSOR_FILE = "preprocessor_config.json"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_preprocessor(path: Path) -> tuple:
    """The per-tower (mean, std) of an OpenVLA ``preprocessor_config.json``: its ``means`` and ``stds``, one
    RGB triple per tower (DINO, SigLIP), exactly as written there."""
    data = _load_json(path)
    pairs = []
    for key in ("means", "stds"):
        value = data.get(key)
        if (not isinstance(value, list) or len(value) != 2 or not all(
                isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in v) for v in value)):
            raise ConfigError(f"{path}: {key}={value!r}; expected two RGB triples (DINO, SigLIP) of numbers")
        pairs.append(value)
    if any(x <= 0 for v in pairs[1] for x in v):
        raise ConfigError(f"{path}: stds={pairs[1]!r} must be positive")
    return tuple((tuple(float(x) for x in pairs[0][t]), tuple(float(x) for x in pairs[1][t])) for t in range(2))


def check_preprocessor(path: Path, image_size: int) -> None:
    """Refuse a preprocessor_config.json whose resize this package does not reproduce."""
    data = _load_json(path)
    strategy = data.get("image_resize_strategy", "resize-naive")
    if strategy != "resize-naive":
        raise ConfigError(f"{path}: image_resize_strategy={strategy!r}; expected 'resize-naive' (the only one "
                          "implemented)")
    interpolations = data.get("interpolations", ["bicubic", "bicubic"])
    if not isinstance(interpolations, list) or any(i != "bicubic" for i in interpolations):
        raise ConfigError(f"{path}: interpolations={interpolations!r}; expected 'bicubic' for every tower")
    sizes = data.get("input_sizes", [[3, image_size, image_size]] * 2)
    if not isinstance(sizes, list) or any(size != [3, image_size, image_size] for size in sizes):
        raise ConfigError(f"{path}: input_sizes={sizes!r}; the model's towers take [3, {image_size}, {image_size}]")


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


def preset(name: str, *, head: str = "tokens", chunk_len: int | None = None, num_cameras: int = 1,
           proprio_dim: int = 0, vocab_size: int | None = None) -> VLAConfig:
    """A named configuration: ``tiny``, ``small`` or ``openvla-7b``.

    ``vocab_size`` is the tokenizer's size for the small presets (rounded up to a multiple of 64);
    ``openvla-7b`` always uses Llama-2's 32064.
    """
    chunk = chunk_len if chunk_len is not None else (1 if head == "tokens" else 8)
    common = dict(head=head, chunk_len=chunk, num_cameras=num_cameras, proprio_dim=proprio_dim)
    if name == "openvla-7b":
        return VLAConfig(name=name, featurizer=dict(_OPENVLA_DINO), fused_featurizer=dict(_OPENVLA_SIGLIP),
                         text_config=dict(_LLAMA2_7B), prompt_suffix_token_id=29871, **common)
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; expected one of {sorted([*PRESETS, 'openvla-7b'])}")
    sizes = PRESETS[name]
    vocab = _round_up(vocab_size or 512, 64)
    text = {**sizes["text"], "vocab_size": vocab, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
            "tie_word_embeddings": False, "max_position_embeddings": 2048, "rope_theta": 10000.0}
    return VLAConfig(name=name, featurizer=dict(sizes["dino"]), fused_featurizer=dict(sizes["siglip"]),
                     text_config=text, **common)


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "dino": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, mlp_ratio=2, patch_size=7,
                     image_size=56, num_register_tokens=4, qkv_bias=True, layer_norm_eps=1e-6,
                     hidden_act="gelu", use_swiglu_ffn=False, layerscale_value=1.0),
        "siglip": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                       image_size=56, patch_size=7, layer_norm_eps=1e-6, hidden_act="gelu"),
        "text": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, rms_norm_eps=1e-6),
    },
    # OpenVLA's proportions at CPU scale: 256 tokens per camera, 32 layers (K = 3 leaves the same share
    # unpruned), towers around a tenth of a tick's FLOPs.
    "small": {
        "dino": dict(hidden_size=192, num_hidden_layers=6, num_attention_heads=3, mlp_ratio=4, patch_size=14,
                     image_size=224, num_register_tokens=4, qkv_bias=True, layer_norm_eps=1e-6,
                     hidden_act="gelu", use_swiglu_ffn=False, layerscale_value=1.0),
        "siglip": dict(hidden_size=192, intermediate_size=768, num_hidden_layers=6, num_attention_heads=3,
                       image_size=224, patch_size=14, layer_norm_eps=1e-6, hidden_act="gelu"),
        "text": dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=32, num_attention_heads=6,
                     num_key_value_heads=6, rms_norm_eps=1e-6),
    },
}
