"""OpenVLA checkpoint directories: load and save with OpenVLA's own (timm-style) parameter names.

A directory holds ``config.json``, tokenizer files, and ``model-0000i-of-0000n.safetensors`` shards
with ``model.safetensors.index.json`` (or a single ``model.safetensors``); a published OpenVLA-OFT
directory adds its head and proprio projector as side files (``oft.py``). The vision towers are
stored as timm names (docs/CHECKPOINTS.md); they are mapped onto the transformers modules here:
fused qkv rows split into q/k/v, DINO's position table without its CLS row, SigLIP's attention-pool
``q``/``kv`` fused into ``in_proj``. Loading is strict: a missing or unexpected tensor, or a shape
mismatch, stops with a message naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from .config import VLAConfig
from .errors import CheckpointError, ConfigError
from .modeling import VLAModel, build_model
from .oft import is_oft_dir, read_side_tensors
from .tokenizer import load_tokenizer

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
DEFAULT_SHARD_BYTES = 2_000_000_000

_DINO = "vision_backbone.featurizer."
_SIG = "vision_backbone.fused_featurizer."


@dataclass(frozen=True)
class _Rule:
    """How some of our tensors correspond to some of OpenVLA's.

    kinds: ``copy`` (1:1), ``fuse`` (ours q,k,v -> theirs qkv, rows concatenated), ``split`` (ours
    in_proj -> theirs q, kv), ``dino_pos`` (theirs lacks our CLS row 0), ``unsqueeze`` (theirs has a
    leading 1), ``drop`` (not stored; must be zero).
    """

    kind: str
    ours: tuple[str, ...]
    theirs: tuple[str, ...]


_DINO_BLOCK = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attention.o_proj.weight": "attn.proj.weight", "attention.o_proj.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.scale_factor", "layer_scale2.lambda1": "ls2.scale_factor",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
}
_SIG_BLOCK = {
    "layer_norm1.weight": "norm1.weight", "layer_norm1.bias": "norm1.bias",
    "self_attn.out_proj.weight": "attn.proj.weight", "self_attn.out_proj.bias": "attn.proj.bias",
    "layer_norm2.weight": "norm2.weight", "layer_norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
}
_DINO_TOP = {
    "embeddings.cls_token": "cls_token", "embeddings.register_tokens": "reg_token",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
}
_SIG_TOP = {
    "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
    "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
    "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias",
    "head.probe": "attn_pool.latent",
    "head.attention.out_proj.weight": "attn_pool.proj.weight", "head.attention.out_proj.bias": "attn_pool.proj.bias",
    "head.layernorm.weight": "attn_pool.norm.weight", "head.layernorm.bias": "attn_pool.norm.bias",
    "head.mlp.fc1.weight": "attn_pool.mlp.fc1.weight", "head.mlp.fc1.bias": "attn_pool.mlp.fc1.bias",
    "head.mlp.fc2.weight": "attn_pool.mlp.fc2.weight", "head.mlp.fc2.bias": "attn_pool.mlp.fc2.bias",
}


def _rules(names: list[str]) -> list[_Rule]:
    """The correspondence for every tensor of a model's state dict (names in our layout)."""
    rules: list[_Rule] = []
    for name in names:
        rule = _rule_for(name)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule_for(name: str) -> _Rule | None:
    if name.startswith(_DINO):
        rest = name[len(_DINO):]
        if rest in _DINO_TOP:
            return _Rule("copy", (name,), (_DINO + _DINO_TOP[rest],))
        if rest == "embeddings.position_embeddings":
            return _Rule("dino_pos", (name,), (_DINO + "pos_embed",))
        if rest == "embeddings.mask_token":
            return _Rule("drop", (name,), ())
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", rest)
        if m:
            block, sub = m.groups()
            theirs = f"{_DINO}blocks.{block}."
            if sub in _DINO_BLOCK:
                return _Rule("copy", (name,), (theirs + _DINO_BLOCK[sub],))
            q = re.fullmatch(r"attention\.q_proj\.(weight|bias)", sub)
            if q:
                ours = tuple(f"{_DINO}encoder.layer.{block}.attention.{p}_proj.{q[1]}" for p in "qkv")
                return _Rule("fuse", ours, (f"{theirs}attn.qkv.{q[1]}",))
            if re.fullmatch(r"attention\.[kv]_proj\.(weight|bias)", sub):
                return None  # covered by the q_proj rule
    elif name.startswith(_SIG):
        rest = name[len(_SIG):]
        if rest in _SIG_TOP:
            return _Rule("copy", (name,), (_SIG + _SIG_TOP[rest],))
        if rest == "embeddings.position_embedding.weight":
            return _Rule("unsqueeze", (name,), (_SIG + "pos_embed",))
        if rest in ("head.attention.in_proj_weight", "head.attention.in_proj_bias"):
            kind = rest.rsplit("_", 1)[1]
            return _Rule("split", (name,), (f"{_SIG}attn_pool.q.{kind}", f"{_SIG}attn_pool.kv.{kind}"))
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", rest)
        if m:
            block, sub = m.groups()
            theirs = f"{_SIG}blocks.{block}."
            if sub in _SIG_BLOCK:
                return _Rule("copy", (name,), (theirs + _SIG_BLOCK[sub],))
            q = re.fullmatch(r"self_attn\.q_proj\.(weight|bias)", sub)
            if q:
                ours = tuple(f"{_SIG}encoder.layers.{block}.self_attn.{p}_proj.{q[1]}" for p in "qkv")
                return _Rule("fuse", ours, (f"{theirs}attn.qkv.{q[1]}",))
            if re.fullmatch(r"self_attn\.[kv]_proj\.(weight|bias)", sub):
                return None
    else:  # projector, language_model, action_head, proprio_projector: names are shared
        return _Rule("copy", (name,), (name,))
    raise CheckpointError(f"no OpenVLA name is known for model tensor {name!r}")


def export_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> OpenVLA-named tensors (works on ``meta`` tensors too)."""
    out: dict[str, torch.Tensor] = {}
    for rule in _rules(list(state)):
        src = [state[n] for n in rule.ours]
        if rule.kind == "copy":
            out[rule.theirs[0]] = src[0]
        elif rule.kind == "fuse":
            out[rule.theirs[0]] = torch.cat(src, dim=0)
        elif rule.kind == "split":
            d = src[0].shape[0] // 3
            out[rule.theirs[0]], out[rule.theirs[1]] = src[0][:d], src[0][d:]
        elif rule.kind == "dino_pos":
            out[rule.theirs[0]] = src[0][:, 1:]
        elif rule.kind == "unsqueeze":
            out[rule.theirs[0]] = src[0].unsqueeze(0)
    return {k: v.contiguous() for k, v in out.items()}


def import_state_dict(tensors: dict[str, torch.Tensor], model: VLAModel) -> dict[str, torch.Tensor]:
    """OpenVLA-named tensors -> our state dict, strict about names and shapes."""
    expected = {k: tuple(v.shape) for k, v in export_state_dict(model.state_dict()).items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {_first(unexpected)}")
        raise CheckpointError("checkpoint does not match the model config: " + "; ".join(parts))
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"tensor {name!r} has shape {tuple(tensors[name].shape)}; the config expects {shape}")
    ours_shape = {k: v.shape for k, v in model.state_dict().items()}
    state: dict[str, torch.Tensor] = {}
    for rule in _rules(list(ours_shape)):
        src = [tensors[n] for n in rule.theirs]
        if rule.kind == "copy":
            state[rule.ours[0]] = src[0]
        elif rule.kind == "fuse":
            sizes = [ours_shape[n][0] for n in rule.ours]
            state.update(zip(rule.ours, torch.split(src[0], sizes, dim=0), strict=True))
        elif rule.kind == "split":
            state[rule.ours[0]] = torch.cat(src, dim=0)
        elif rule.kind == "dino_pos":
            state[rule.ours[0]] = torch.cat([torch.zeros_like(src[0][:, :1]), src[0]], dim=1)
        elif rule.kind == "unsqueeze":
            state[rule.ours[0]] = src[0].squeeze(0)
        elif rule.kind == "drop":
            state[rule.ours[0]] = torch.zeros(ours_shape[rule.ours[0]], dtype=next(iter(tensors.values())).dtype)
    return {k: v.contiguous() for k, v in state.items()}


def _first(names: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def read_tensors(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint directory (sharded with an index, or one model.safetensors)."""
    index = checkpoint_dir / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise CheckpointError(f"{index} is not a safetensors index (needs a 'weight_map'): {err}") from None
        files = sorted(set(weight_map.values()))
    elif (checkpoint_dir / SINGLE_FILE).exists():
        weight_map, files = None, [SINGLE_FILE]
    else:
        raise CheckpointError(f"{checkpoint_dir} has no weights: expected {INDEX_FILE} with shards, or {SINGLE_FILE}")
    tensors: dict[str, torch.Tensor] = {}
    for fname in files:
        path = checkpoint_dir / fname
        if not path.exists():
            raise CheckpointError(f"shard {fname} listed in {INDEX_FILE} is missing from {checkpoint_dir}")
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"cannot read {path}: {err}") from None
        tensors.update(part)
    if weight_map is not None:
        listed = set(weight_map)
        if listed != set(tensors):
            diff = sorted(listed ^ set(tensors))
            raise CheckpointError(f"{INDEX_FILE} and the shards disagree on tensor(s) {_first(diff)}")
    return tensors


def load_checkpoint(checkpoint_dir: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, **config_overrides) -> VLAModel:
    """Load a model from a local checkpoint directory (no network).

    ``config_overrides`` change config fields the files do not hold, e.g. ``chunk_len`` and ``num_cameras``
    for an OpenVLA-OFT directory whose statistics name no platform OFT knows.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(f"{checkpoint_dir} is not a directory; expected a checkpoint directory with config.json")
    try:
        config = VLAConfig.from_dir(checkpoint_dir, **config_overrides)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None
    tensors = read_tensors(checkpoint_dir)
    if config.head == "oft" and is_oft_dir(checkpoint_dir):
        tensors.update(read_side_tensors(checkpoint_dir))
    model = build_model(config, device="meta")
    state = import_state_dict(tensors, model)
    dtype = dtype or next(iter(state.values())).dtype
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    _rebuild_buffers(model, device)
    return model.eval()


def _rebuild_buffers(model: VLAModel, device: str | torch.device) -> None:
    """Recreate the non-persistent buffers a ``meta`` build leaves empty."""
    llm = model.language_model.model
    with torch.device(device):
        llm.rotary_emb = LlamaRotaryEmbedding(llm.config)
    emb = model.vision_backbone.fused_featurizer.embeddings
    emb.position_ids = torch.arange(emb.num_positions, device=device).expand(1, -1)
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise CheckpointError(f"buffers left uninitialised after loading: {left}")


def save_checkpoint(model: VLAModel, checkpoint_dir: str | Path, tokenizer=None,
                    max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write config.json, tokenizer files and OpenVLA-named safetensors shards with an index."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tensors = export_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(checkpoint_dir / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (checkpoint_dir / INDEX_FILE).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True))
    (checkpoint_dir / "config.json").write_text(json.dumps(model.config.to_json_dict(), indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(checkpoint_dir))
    return checkpoint_dir


def load_model_and_tokenizer(checkpoint_dir: str | Path, device: str | torch.device = "cpu",
                             dtype: torch.dtype | None = None, **config_overrides):
    return load_checkpoint(checkpoint_dir, device, dtype, **config_overrides), load_tokenizer(checkpoint_dir)
