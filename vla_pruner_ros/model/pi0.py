"""pi0 through transformers' own ``PI0ForConditionalGeneration``, with visual token pruning in the VLM prefix.

The modules are transformers' (PaliGemma: SigLIP + Gemma for the prefix of images and prompt; a Gemma action
expert; the action/time embedding and output projection). This module drives them with its own layer loops,
as ``PI0ForConditionalGeneration.sample_actions`` does, so that pruning can happen inside (README, "pi0"):

- prefix ``[image tokens per camera | <bos> prompt "\\n"]``, bidirectional, positions 0..T-1 (as
  ``sample_actions`` with the processor's attention mask); after layer K the visual rows of the pruned cameras
  are dropped, the kept ones keep their positions, and layers >= K cache only the kept rows;
- the expert runs ``[state, chunk noisy actions]`` at positions T.. against each layer's own prefix cache (a
  different length below and from K), the state row seeing the prefix and itself, the action rows everything;
- flow matching from t = 1 to 0 in ``num_inference_steps`` Euler steps, noise from the caller's generator;
- VLA-Pruner's action attention: the expert's action rows to the visual keys at one layer, head-averaged,
  averaged over the rows and the denoising steps, computed for those rows only (``sdpa_rows``).

State is normalised with the checkpoint's mean/std (``(x - mean) / (std + 1e-8)``, as ``PI0Processor``) and
zero-padded to ``max_state_dim``; actions are cut to the robot's dimensions and un-normalised with the same
statistics. References read (not copied): transformers ``models/pi0``, lerobot ``policies/pi0``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError
from .attention import ATTN_IMPLEMENTATION, RowRequest, request_rows, sync
from .config import VisualTokens
from .errors import CheckpointError, ConfigError
from .interface import CACHE_KWARG, KVCache, Layout, Prediction, PruneSpec, run_pruned_layers, to_visual
from .pi0_files import NORM_EPS, read_pi0_stats


@dataclass(frozen=True)
class PI0Spec(VisualTokens):
    """What the policy, the node and the pruners read about a pi0 model (``ModelSpec`` and more)."""

    hf_config: Any = field(repr=False, compare=False)  # transformers' PI0Config
    num_cameras: int = 1
    action_dim: int = 7  # the robot's (<= max_action_dim); from the statistics
    proprio_dim: int = 8  # the robot's state values (<= max_state_dim); from the statistics
    norm_stats: dict = field(default_factory=dict, repr=False, compare=False)
    image_mean_std: tuple = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    prune_layer: int | None = None
    head: str = "pi0"
    family: str = "pi0"
    norm_type: str = "mean_std"
    norm_eps: float = NORM_EPS

    def __post_init__(self) -> None:
        cfg = self.hf_config
        vlm, dit = cfg.vlm_config.text_config, cfg.dit_config
        for key in ("num_hidden_layers", "num_key_value_heads", "head_dim"):
            if getattr(vlm, key) != getattr(dit, key):
                raise ConfigError(f"the action expert has {key}={getattr(dit, key)} and the VLM {getattr(vlm, key)}; "
                                  "pi0's expert attends to the VLM's keys and values layer by layer")
        if not isinstance(self.num_cameras, int) or self.num_cameras < 1:
            raise ConfigError(f"num_cameras={self.num_cameras!r} must be a positive integer")
        for key, value, most in (("action_dim", self.action_dim, cfg.max_action_dim),
                                 ("proprio_dim", self.proprio_dim, cfg.max_state_dim)):
            if not 1 <= value <= most:
                raise ConfigError(f"{key}={value} must be in [1, {most}] (the checkpoint pads to {most})")
        if self.prune_layer is not None and not 0 < self.prune_layer < self.num_layers:
            raise ConfigError(f"prune_layer={self.prune_layer} must be in [1, {self.num_layers - 1}]")

    def replace(self, **changes) -> PI0Spec:
        return dataclasses.replace(self, **changes)

    @property
    def num_layers(self) -> int:
        return int(self.hf_config.vlm_config.text_config.num_hidden_layers)

    @property
    def image_size(self) -> int:
        return int(self.hf_config.vlm_config.vision_config.image_size)

    @property
    def grid(self) -> int:
        return self.image_size // int(self.hf_config.vlm_config.vision_config.patch_size)

    @property
    def chunk_len(self) -> int:
        return int(self.hf_config.chunk_size)

    @property
    def num_steps(self) -> int:
        return int(self.hf_config.num_inference_steps)

    @property
    def image_token_id(self) -> int:
        return int(self.hf_config.vlm_config.image_token_id)

    @property
    def llm_dim(self) -> int:
        return int(self.hf_config.vlm_config.text_config.hidden_size)


def preprocess_pi0_images(images: list[np.ndarray], size: int, mean_std: tuple) -> torch.Tensor:
    """Frames (H, W, 3) uint8 -> (cams, 3, size, size) as PI0's image processor: bicubic resize keeping the aspect
    ratio until one side is ``size``, scale to [0, 1], normalise, zero-pad bottom and right to a square."""
    mean, std = (np.asarray(v, dtype=np.float32).reshape(3, 1, 1) for v in mean_std)
    out = np.zeros((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        scale = min(size / h, size / w)
        nh, nw = int(h * scale), int(w * scale)
        pil = Image.fromarray(np.ascontiguousarray(image))
        if (nh, nw) != (h, w):
            pil = pil.resize((nw, nh), Image.Resampling.BICUBIC)
        x = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
        out[i, :, :nh, :nw] = (x - mean) / std
    return torch.from_numpy(out)


def layer_flops(n: int, keys: int, d: int, heads: int, kv_heads: int, head_dim: int, mlp: int) -> float:
    """One decoder layer over n query rows against ``keys`` keys, counted as the papers count (multiply-adds):
    q/o and k/v projections, scores and values, a gated MLP. For Llama-style sizes (heads * head_dim = d, no
    grouping) this is ``4 n d^2 + 2 n s d + 3 n d m``."""
    return (2.0 * n * d * heads * head_dim + 2.0 * n * d * kv_heads * head_dim + 2.0 * n * keys * heads * head_dim
            + 3.0 * n * d * mlp)


class _PrefixView:
    """A cache the expert's layers write to without keeping anything: each layer's keys are its prefix keys
    (full or pruned) followed by this step's own."""

    def __init__(self, prefix: KVCache) -> None:
        self.prefix = prefix

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, *_args, **_kwargs):
        return (torch.cat([self.prefix.keys[layer_idx], k], dim=-2),
                torch.cat([self.prefix.values[layer_idx], v], dim=-2))


class PI0VLA(nn.Module):
    """A loaded ``PI0ForConditionalGeneration`` behind the family interface (``family.py``)."""

    def __init__(self, hf_model: nn.Module, spec: PI0Spec) -> None:
        super().__init__()
        self.hf = hf_model.eval()
        self.config = spec
        for gemma in (self.vlm_text, self.expert):  # SDPA that also answers row requests
            gemma.config._attn_implementation = ATTN_IMPLEMENTATION

    @property
    def vlm_text(self) -> nn.Module:
        return self.hf.model.vlm.language_model

    @property
    def expert(self) -> nn.Module:
        return self.hf.model.dit

    @property
    def layers(self) -> nn.ModuleList:
        return self.vlm_text.layers

    @property
    def language_model(self) -> nn.Module:  # what the benchmarks read the attention implementation from
        return self.vlm_text

    @property
    def device(self) -> torch.device:
        return self.hf.action_out_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.action_out_proj.weight.dtype

    # ---- family interface -------------------------------------------------------------------------
    def prompt_ids(self, tokenizer, instruction: str) -> list[int]:
        """``<image>`` x tokens per camera x cameras, then ``<bos>instruction\\n`` (as PI0Processor, unpadded)."""
        ids = list(tokenizer(f"{tokenizer.bos_token}{instruction}\n", add_special_tokens=False)["input_ids"])
        if not ids or ids[0] != tokenizer.bos_token_id:  # the tokenizer does not parse its bos text as the token
            ids = [tokenizer.bos_token_id,
                   *tokenizer(f"{instruction}\n", add_special_tokens=False)["input_ids"]]
        return [self.config.image_token_id] * self.config.num_visual_tokens + ids

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        return preprocess_pi0_images(images, self.config.image_size, self.config.image_mean_std).unsqueeze(0)

    def proprio_input(self, normalized: np.ndarray) -> torch.Tensor:
        """Normalised state (proprio_dim,) -> (1, max_state_dim), zero-padded."""
        state = np.zeros(self.hf.config.max_state_dim, dtype=np.float32)
        state[:len(normalized)] = normalized
        return torch.from_numpy(state).unsqueeze(0)

    def tick_flops(self, prompt_len: int, kept_visual: int, prune_layer: int) -> tuple[float, float]:
        """(this tick's, unpruned) FLOPs of the VLM prefix and every denoising step of the expert."""
        cfg = self.config
        kept_len = prompt_len - cfg.num_visual_tokens + kept_visual
        return self._flops(prompt_len, kept_len, prune_layer), self._flops(prompt_len, prompt_len, cfg.num_layers)

    def _flops(self, seq_len: int, kept_len: int, k: int) -> float:
        vlm, dit = self.hf.config.vlm_config.text_config, self.hf.config.dit_config
        k = min(k, self.config.num_layers)

        def size(c):
            return c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size

        total = k * layer_flops(seq_len, seq_len, *size(vlm)) + \
            (self.config.num_layers - k) * layer_flops(kept_len, kept_len, *size(vlm))
        n = 1 + self.config.chunk_len
        per_step = k * layer_flops(n, seq_len + n, *size(dit)) + \
            (self.config.num_layers - k) * layer_flops(n, kept_len + n, *size(dit))
        return total + self.config.num_steps * per_step

    def layout(self, input_ids: torch.Tensor) -> Layout:
        cfg = self.config
        m, per_cam, length = cfg.num_visual_tokens, cfg.tokens_per_camera, input_ids.shape[1]
        image = input_ids[0] == cfg.image_token_id
        if int(image.sum()) != m or not bool(image[:m].all()):
            raise InputError(f"pi0 prompt ids must start with {m} image tokens ({cfg.num_cameras} camera(s) x "
                             f"{per_cam}); got {int(image.sum())}")
        spans = tuple((c * per_cam, (c + 1) * per_cam) for c in range(cfg.num_cameras))
        return Layout(length, spans, None, (m, length), (length, length), (length, length), causal=False)

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, proprio: torch.Tensor | None = None,
                prune: PruneSpec | None = None, use_cache: bool = True, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> Prediction:
        """One tick: normalised actions (B, chunk, action_dim). ``proprio``: normalised, padded state (B,
        max_state_dim). ``noise`` (B, chunk, max_action_dim), else drawn on the CPU from ``generator``."""
        cfg, hf = self.config, self.hf
        device, dtype = self.device, self.dtype
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        b, cams = pixel_values.shape[:2]
        if cams != cfg.num_cameras:
            raise InputError(f"got {cams} camera image(s); the model is set up for num_cameras={cfg.num_cameras}")
        if proprio is None:
            raise InputError("pi0 needs the robot state; got none")
        input_ids = input_ids.to(device)
        layout = self.layout(input_ids)
        embeds = hf.model.embed_prefix(input_ids, pixel_values.to(device, dtype),
                                       torch.ones(b, cams, dtype=torch.bool, device=device))
        sync(device)
        timings["vision"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = KVCache(cfg.num_layers)
        res = run_pruned_layers(self.layers, self.vlm_text.rotary_emb, embeds, layout, prune, cache,
                                embeds[:, layout.visual_start:layout.visual_end])
        k = prune.layer if prune is not None else cfg.num_layers
        full = torch.arange(layout.length, device=device).expand(b, -1)
        layer_kept = [full if i < k else res.kept for i in range(cfg.num_layers)]
        sync(device)
        timings["prefill"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if noise is None:
            noise = torch.randn(b, cfg.chunk_len, hf.config.max_action_dim, generator=generator)
        x_t = noise.to(device, dtype)
        state = proprio.to(device, dtype)
        action_layer = prune.action_layer if prune is not None else None
        actions, attention, seconds = self._denoise(x_t, state, layout, cache, layer_kept, action_layer)
        sync(device)
        timings["decode"] = time.perf_counter() - t0 - seconds
        timings["select"] = res.score_seconds + seconds
        return Prediction(actions[:, :, :cfg.action_dim], res.visual_keep, attention, None, timings)

    def _denoise(self, x_t: torch.Tensor, state: torch.Tensor, layout: Layout, cache: KVCache,
                 layer_kept: list[torch.Tensor], action_layer: int | None):
        """Euler steps from t = 1 to 0: actions (B, chunk, max_action_dim), the action rows' mean attention to the
        visual tokens (B, M) or None, and the seconds spent on that attention."""
        cfg, hf, expert = self.config, self.hf, self.expert
        b, n = x_t.shape[0], 1 + cfg.chunk_len
        device = x_t.device
        positions = (layout.length + torch.arange(n, device=device)).expand(b, -1)
        cos, sin = expert.rotary_emb(x_t, positions)
        by_length: dict[int, torch.Tensor] = {}  # full below K, kept from K: two prefix lengths at most
        for i in range(cfg.num_layers):  # every row sees the prefix; the state row not the actions; actions see all
            s = cache.keys[i].shape[-2]
            if s not in by_length:
                by_length[s] = torch.ones(b, 1, n, s + n, dtype=torch.bool, device=device)
                by_length[s][:, :, 0, s + 1:] = False
        masks = [by_length[cache.keys[i].shape[-2]] for i in range(cfg.num_layers)]
        view = _PrefixView(cache)
        dt = -1.0 / cfg.num_steps
        attention_sum = None
        seconds = 0.0
        rows = torch.arange(1, n, device=device)
        for layer in expert.layers:
            layer.self_attn.__dict__.pop("_row_requests", None)
        for step in range(cfg.num_steps):
            t = torch.full((b,), 1.0 + step * dt, dtype=torch.float32, device=device)
            h = hf.embed_action_time(state, x_t, t)
            for i, layer in enumerate(expert.layers):
                request = request_rows(layer.self_attn, RowRequest(rows, None)) if i == action_layer else None
                h = layer(h, attention_mask=masks[i], position_embeddings=(cos, sin), **{CACHE_KWARG: view},
                          use_cache=True)
                if request is not None:
                    sync(device)
                    t1 = time.perf_counter()
                    s = layer_kept[i].shape[1]
                    att = to_visual(request.probs[:, :, :s], layer_kept[i], layout)
                    attention_sum = att if attention_sum is None else attention_sum + att
                    sync(device)
                    seconds += time.perf_counter() - t1 + request.seconds
            velocity = hf.action_out_proj(expert.norm(h)[:, -cfg.chunk_len:])
            x_t = x_t + dt * velocity
        mean = None if attention_sum is None else attention_sum / (len(rows) * cfg.num_steps)
        return x_t, mean, seconds


# ---- checkpoints --------------------------------------------------------------------------------------
# The expert's token embedding: PI0 feeds the expert embeddings, never token ids, so a checkpoint may leave it out
UNUSED = {"model.dit.embed_tokens.weight"}


def pi0_spec(hf_config, norm_stats: dict, mean_std: tuple, num_cameras: int | None = None) -> PI0Spec:
    stats = norm_stats["default"]
    return PI0Spec(hf_config, num_cameras=num_cameras or 1, action_dim=len(stats["action"]["mean"]),
                   proprio_dim=len(stats["proprio"]["mean"]), norm_stats=norm_stats, image_mean_std=mean_std)


def load_pi0(path: str | Path, device="cpu", dtype: torch.dtype | None = None, num_cameras: int | None = None,
             chunk_len: int | None = None) -> PI0VLA:
    """A directory written by ``PI0ForConditionalGeneration.save_pretrained`` (local files only). Missing,
    unexpected or mis-shaped tensors are refused by name."""
    from transformers import PI0ForConditionalGeneration

    path = Path(path)
    if dtype == torch.float16:
        raise ConfigError("pi0 in float16: Gemma's activations overflow float16; use bfloat16 (GPU) or float32")
    norm_stats, mean_std = read_pi0_stats(path)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report would only repeat what the error below names
    try:
        model, info = PI0ForConditionalGeneration.from_pretrained(
            str(path), local_files_only=True, output_loading_info=True, dtype=dtype or torch.float32,
            ignore_mismatched_sizes=True)  # refused below, by name
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"cannot load the pi0 checkpoint in {path}: {str(err).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = []
    for key, what in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"),
                      ("mismatched_keys", "mis-shaped")):
        names = sorted(str(item[0] if isinstance(item, (tuple, list)) else item) for item in info.get(key) or ()
                       if not (key == "missing_keys" and item in UNUSED))
        if names:
            problems.append(f"{len(names)} {what}: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}")
    if problems:
        raise CheckpointError(f"the pi0 checkpoint in {path} does not match its config.json: {'; '.join(problems)}")
    if chunk_len is not None and chunk_len != model.config.chunk_size:
        raise ConfigError(f"chunk_len={chunk_len}: a pi0 checkpoint predicts chunk_size={model.config.chunk_size} "
                          "steps (leave model.chunk_len unset)")
    spec = pi0_spec(model.config, norm_stats, mean_std, num_cameras)
    return PI0VLA(model.to(device), spec)


# ---- presets ------------------------------------------------------------------------------------------
PI0_TINY = {  # a few layers of each part, 56 px images (16 tokens per camera); for tests on the CPU
    "vlm": dict(hidden_size=64, num_hidden_layers=4, intermediate_size=128, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16),
    "vision": dict(hidden_size=32, intermediate_size=64, patch_size=14, image_size=56, num_hidden_layers=2,
                   num_attention_heads=2),
    "dit": dict(hidden_size=32, num_hidden_layers=4, intermediate_size=64, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16),
    "chunk_size": 10, "max_state_dim": 32, "max_action_dim": 32, "num_inference_steps": 4,
}
PI0_SMALL = {  # pi0's proportions at CPU scale: 18 layers, 256 visual tokens per camera, the chunk and steps of
    # pi0_base; a narrow VLM (MLP 8x as Gemma 2B's) and a narrower expert; for CPU benchmarks
    "vlm": dict(hidden_size=256, num_hidden_layers=18, intermediate_size=2048, num_attention_heads=4,
                num_key_value_heads=1, head_dim=64),
    "vision": dict(hidden_size=192, intermediate_size=768, patch_size=14, image_size=224, num_hidden_layers=6,
                   num_attention_heads=3),
    "dit": dict(hidden_size=128, num_hidden_layers=18, intermediate_size=512, num_attention_heads=4,
                num_key_value_heads=1, head_dim=64),
    "chunk_size": 50, "max_state_dim": 32, "max_action_dim": 32, "num_inference_steps": 10,
}


def pi0_config(name: str, vocab_size: int, image_token_id: int):
    """transformers' PI0Config for a preset: ``pi0-tiny``, ``pi0-small`` or ``pi0`` (the published sizes)."""
    from transformers import PI0Config

    if name == "pi0":
        config = PI0Config()
        config.vlm_config.text_config.vocab_size = max(vocab_size, config.vlm_config.text_config.vocab_size)
        return config
    sizes = {"pi0-tiny": PI0_TINY, "pi0-small": PI0_SMALL}
    if name not in sizes:
        raise ConfigError(f"unknown pi0 preset {name!r}; expected one of {[*sizes, 'pi0']}")
    p = sizes[name]
    return PI0Config(
        vlm_config={"model_type": "paligemma",
                    "text_config": {"model_type": "gemma", **p["vlm"], "vocab_size": vocab_size},
                    "vision_config": {"model_type": "siglip_vision_model", **p["vision"], "vision_use_head": False,
                                      "projection_dim": p["vlm"]["hidden_size"]},
                    "projection_dim": p["vlm"]["hidden_size"], "image_token_id": image_token_id},
        dit_config={"model_type": "gemma", **p["dit"]},
        chunk_size=p["chunk_size"], max_state_dim=p["max_state_dim"], max_action_dim=p["max_action_dim"],
        num_inference_steps=p["num_inference_steps"])


def identity_pi0_stats(action_dim: int = 7, proprio_dim: int = 8) -> dict:
    """Statistics that leave values as they are (random-weight presets)."""
    return {"default": {"action": {"mean": [0.0] * action_dim, "std": [1.0] * action_dim},
                        "proprio": {"mean": [0.0] * proprio_dim, "std": [1.0] * proprio_dim}}}


def pi0_tokenizer():
    """The built word-level tokenizer with PaliGemma's ``<image>`` token added."""
    from transformers import AddedToken

    from .tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    image = AddedToken("<image>", normalized=False, special=True)
    tokenizer.add_special_tokens({"additional_special_tokens": [image]})
    return tokenizer


def build_pi0_preset(name: str, num_cameras: int = 1, seed: int = 0, device="cpu", dtype=None,
                     action_dim: int = 7, proprio_dim: int = 8):
    """(model, tokenizer) with seeded random weights; ``device='meta'`` builds the layout only."""
    from transformers import PI0ForConditionalGeneration

    tokenizer = pi0_tokenizer()
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    config = pi0_config(name, len(tokenizer), image_token)
    if str(device) != "meta":
        torch.manual_seed(seed)
    with torch.device(device):
        model = PI0ForConditionalGeneration(config)
    for param in model.parameters():  # buffers (rotary, time frequencies) stay float32, as from_pretrained keeps them
        param.data = param.data.to(dtype or torch.float32)
    model.eval()
    spec = pi0_spec(model.config, identity_pi0_stats(action_dim, proprio_dim), ((0.5,) * 3, (0.5,) * 3), num_cameras)
    if name == "pi0-tiny":  # 4 layers: the in-LLM methods prune after the first, as on the shipped OpenVLA model
        spec = spec.replace(prune_layer=1)
    return PI0VLA(model, spec), tokenizer


def _stored_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes in a directory's safetensors files, read from their headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(path.glob("*.safetensors")):
        if "normalizer" in file.name:  # LeRobot's statistics, not weights
            continue
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def _model_keys(hf, names, expected: dict) -> dict[str, str]:
    """Checkpoint tensor names -> names in the model, as transformers' loader renames them (pi0's checkpoints
    keep LeRobot's names, e.g. ``action_in_proj`` for the model's ``embed_action_time.action_in_proj``)."""
    try:  # transformers' loader internals (5.2x); without them, the names as stored
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, rename_source_key
    except ImportError:
        return {name: name for name in names}
    transforms = get_model_conversion_mapping(hf)
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    return {name: rename_source_key(name, renamings, converters, hf.base_model_prefix, expected)[0] for name in names}


def describe_pi0(source: str | Path) -> tuple[dict, bool]:
    """What ``vla-pruner info`` prints for a pi0 directory or preset (built on the meta device, no weights
    read): sizes, token counts, statistics, and the tensors the files lack, hold beyond the model, or hold
    in another shape. Returns (info, complete)."""
    from transformers import PI0Config, PI0ForConditionalGeneration

    from .pi0_files import check_transformers_format, read_pi0_stats

    path = Path(source)
    if path.is_dir():
        check_transformers_format(path)
        config = PI0Config.from_pretrained(str(path), local_files_only=True)
        with torch.device("meta"):
            hf = PI0ForConditionalGeneration(config)
        norm_stats, mean_std = read_pi0_stats(path)
        spec = pi0_spec(config, norm_stats, mean_std)
        stored = _stored_shapes(path)
    else:
        model, _ = build_pi0_preset(str(source), device="meta")
        hf, spec, stored = model.hf, model.config, None
    expected = {name: tuple(t.shape) for name, t in hf.state_dict().items()}
    missing = unexpected = misshaped = []
    if stored is not None:
        renamed = _model_keys(hf, stored, expected)
        stored = {renamed[name]: shape for name, shape in stored.items()}
        missing = sorted(set(expected) - set(stored) - UNUSED)
        unexpected = sorted(set(stored) - set(expected))
        misshaped = sorted(f"{n} {list(stored[n])} (config: {list(expected[n])})"
                           for n in set(stored) & set(expected) if stored[n] != expected[n])
    vlm, vision, dit = hf.config.vlm_config.text_config, hf.config.vlm_config.vision_config, hf.config.dit_config
    params = sum(t.numel() for t in hf.state_dict().values())
    info = {
        "name": path.name if path.is_dir() else str(source),
        "architecture": "pi0 (transformers' PI0): PaliGemma (SigLIP + Gemma) prefix, Gemma action expert, "
                        "flow matching",
        "vision": {"siglip": f"d={vision.hidden_size} x{vision.num_hidden_layers}", "image_size": spec.image_size,
                   "patch_grid": f"{spec.grid}x{spec.grid}"},
        "llm": {"layers": spec.num_layers, "hidden": vlm.hidden_size, "heads": vlm.num_attention_heads,
                "kv_heads": vlm.num_key_value_heads, "vocab": vlm.vocab_size},
        "action_expert": {"layers": dit.num_hidden_layers, "hidden": dit.hidden_size, "chunk_len": spec.chunk_len,
                          "denoising_steps": spec.num_steps, "action_dim": spec.action_dim,
                          "state_dim": spec.proprio_dim, "padded_to": hf.config.max_action_dim,
                          "normalisation": "mean/std"},
        "parameters": params,
        "tensors": len(expected), "tensors_in_files": None if stored is None else len(stored),
        "visual_tokens": {"per_camera": spec.tokens_per_camera, "cameras": "as many as the node feeds"},
        "tensors_missing": missing, "tensors_unexpected": unexpected, "tensors_misshaped": misshaped,
    }
    return info, not (missing or unexpected or misshaped)


__all__ = ["PI0Spec", "PI0VLA", "build_pi0_preset", "describe_pi0", "identity_pi0_stats", "layer_flops",
           "load_pi0", "pi0_config", "preprocess_pi0_images"]
