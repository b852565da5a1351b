"""``vla-pruner info``: a checkpoint directory or preset described without loading weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEAD_NAMES = {"chunk": "chunk (this project's L1 regression head, parallel decoding)",
              "oft": "oft (OpenVLA-OFT's L1 regression MLP-ResNet, bidirectional attention, side files)"}


def cmd_info(args: argparse.Namespace) -> int:
    from ..model import PI0_PRESETS, PRESET_NAMES, VLAConfig, build_model, build_preset, resolve_model_path
    from ..model.checkpoint import INDEX_FILE, export_state_dict
    from ..model.oft import is_oft_dir, read_side_tensors
    from ..model.pi0_files import is_pi0_dir

    path = Path(resolve_model_path(args.checkpoint))
    if args.checkpoint in PI0_PRESETS or is_pi0_dir(path):
        from ..model.pi0 import describe_pi0

        info, complete = describe_pi0(path if path.is_dir() else args.checkpoint)
        return _print_info(info, complete, path, args.json)
    if path.is_dir():
        overrides = {"head": args.head, "chunk_len": 8} if args.head == "chunk" else {}
        cfg = VLAConfig.from_dir(path, **overrides)
        model = build_model(cfg, device="meta")
    elif args.checkpoint in PRESET_NAMES:
        model, _ = build_preset(args.checkpoint, head=args.head or "tokens", device="meta")
        cfg = model.config
    else:
        raise FileNotFoundError(f"{args.checkpoint!r} is neither a checkpoint directory nor a preset "
                                f"({', '.join(PRESET_NAMES)})")
    tensors = export_state_dict(model.state_dict())
    n_params = sum(t.numel() for t in tensors.values())
    vision = sum(t.numel() for k, t in tensors.items() if k.startswith("vision_backbone."))
    llm = sum(t.numel() for k, t in tensors.items() if k.startswith("language_model."))
    index = path / INDEX_FILE if path.is_dir() else None
    stored, missing, unexpected = None, [], []
    if index is not None and index.exists():
        names = set(json.loads(index.read_text())["weight_map"])
        stored = len(names)
        if cfg.head == "oft" and is_oft_dir(path):  # the head and proprio projector are side files
            names |= set(read_side_tensors(path))
        missing, unexpected = sorted(set(tensors) - names), sorted(names - set(tensors))
    info = {
        "name": cfg.name,
        "architecture": "OpenVLA (Prismatic): DINOv2-reg + SigLIP fused vision, GELU MLP projector, Llama LM",
        "vision": {"featurizer": f"DINOv2-reg d={cfg.featurizer['hidden_size']} x{cfg.featurizer['num_hidden_layers']}",
                   "fused_featurizer": f"SigLIP d={cfg.fused_featurizer['hidden_size']} "
                                       f"x{cfg.fused_featurizer['num_hidden_layers']}",
                   "image_size": cfg.image_size, "patch_grid": f"{cfg.grid}x{cfg.grid}"},
        "llm": {"layers": cfg.num_layers, "hidden": cfg.llm_dim, "heads": cfg.text_config["num_attention_heads"],
                "vocab": cfg.vocab_size},
        "parameters": n_params, "parameters_vision": vision, "parameters_llm": llm,
        "tensors": len(tensors), "tensors_in_index": stored,
        "visual_tokens": {"per_camera": cfg.tokens_per_camera, "cameras": cfg.num_cameras,
                          "total": cfg.num_visual_tokens},
        "action_head": ({"type": "tokens (autoregressive, 256 bins)", "action_dim": cfg.action_dim}
                        if cfg.head == "tokens" else
                        {"type": HEAD_NAMES[cfg.head], "chunk_len": cfg.chunk_len, "action_dim": cfg.action_dim,
                         "proprio_dim": cfg.proprio_dim, "normalisation": cfg.norm_type}),
        "norm_stats_keys": sorted(cfg.norm_stats),
        "tensors_missing": missing, "tensors_unexpected": unexpected,
    }
    return _print_info(info, not (missing or unexpected), path, args.json)


def _print_info(info: dict, complete: bool, path: Path, as_json: bool) -> int:
    if as_json:
        print(json.dumps(info, indent=2))
        return 0 if complete else 1
    for key, value in info.items():
        if key == "norm_stats_keys":
            print(f"{'norm_stats keys':<20} {len(value)}: {', '.join(value)}")
        elif key in ("tensors_missing", "tensors_unexpected", "tensors_misshaped"):
            if value:
                what = {"tensors_missing": "missing from the index (and side files)",
                        "tensors_unexpected": "in the checkpoint files, not in the model",
                        "tensors_misshaped": "in another shape than the config implies"}[key]
                print(f"{key:<20} {len(value)} {what}: {', '.join(value)}")
        elif isinstance(value, dict):
            print(f"{key:<20} " + ", ".join(f"{k}={v}" for k, v in value.items()))
        elif isinstance(value, int):
            print(f"{key:<20} {value:,}")
        elif value is not None:
            print(f"{key:<20} {value}")
    if not complete:
        counts = ", ".join(f"{len(info.get(key) or [])} {key.split('_')[1]}" for key in
                           ("tensors_missing", "tensors_unexpected", "tensors_misshaped") if key in info)
        print(f"vla-pruner info: {path} does not hold the tensors its config implies ({counts}); it will not load",
              file=sys.stderr)
    return 0 if complete else 1


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("info", help="describe a checkpoint directory (or a preset) without loading weights")
    p.add_argument("checkpoint", help="checkpoint directory with config.json, or a preset name")
    p.add_argument("--head", choices=["tokens", "chunk"], default=None, help="override the action head")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)
