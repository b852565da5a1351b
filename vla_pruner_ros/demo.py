"""``vla-pruner demo``: the README's main job, every method on the shipped episode (or generated frames)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_args import add_param_args, names, param_values

SAMPLE_EPISODE = Path(__file__).resolve().parent / "data" / "sample_episode"


DEMO_METHODS = ("random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid")
OWN = ("pruning.method", "pruning.keep_ratio")  # set from --methods and --keep


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: with the embedded model and the shipped episode, a replay comparing the
    methods against ``none`` that writes the output bag, plots and report; otherwise (or with
    --synthetic) the policy on generated frames."""
    from .model import embedded_available

    model = args.model
    pruning = param_values(args, "pruning.", OWN, "demo sets it; use --methods or --keep")  # checked first
    if model == "auto":
        shipped = embedded_available() and (SAMPLE_EPISODE / "metadata.yaml").exists()
        model = "embedded" if shipped and not args.synthetic else "small"
        if model == "embedded":
            from .replay.command import ReplayArgs, print_summary, run_replay

            methods = tuple(m for m in (args.methods or DEMO_METHODS) if m != "none")
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            if (out / "replay_bag").is_dir():  # the previous demo's bag: the writer never overwrites
                import shutil

                shutil.rmtree(out / "replay_bag")
            print(f"replaying the shipped episode {SAMPLE_EPISODE.name} with the embedded model, "
                  f"keep {args.keep}: {', '.join(methods)} against none; output in {out}/")
            from .settings import SIM_CONTROL

            report = run_replay(ReplayArgs(str(SAMPLE_EPISODE), model="embedded", compare=methods, keep=args.keep,
                                           reference_topic="/expert/action", out=str(out / "replay_bag"),
                                           report=str(out / "report.json"), plots=str(out / "plots"),
                                           overrides={**SIM_CONTROL, **pruning}))  # a simulator episode: its control
            print_summary(report)
            print(f"wrote {out / 'replay_bag'} (the episode plus each method's action chunks), "
                  f"{out / 'report.json'} and {len(report.get('plots', []))} plot(s) in {out / 'plots'}")
            return 0
    return _synthetic_demo(args, model, pruning)


def _synthetic_demo(args: argparse.Namespace, model_name: str, pruning: dict) -> int:
    import numpy as np

    from .factory import build_settings_pruner
    from .model import load_model
    from .policy import Observation, VLAPolicy
    from .pruning import PRUNERS
    from .settings import settings_from_flat
    from .synthetic import moving_square_frames

    model, tokenizer = load_model(model_name, head=args.head)
    cfg = model.config
    frames = moving_square_frames(args.ticks, cfg.image_size, seed=args.seed)
    methods = args.methods or tuple(PRUNERS)
    print(f"model={model_name} head={cfg.head} visual tokens/camera={cfg.tokens_per_camera} "
          f"layers={cfg.num_layers}; {args.ticks} generated frames, instruction {args.instruction!r}")
    for method in methods:
        chosen = {"pruning.method": method, **({} if method == "none" else {"pruning.keep_ratio": args.keep})}
        pruner = build_settings_pruner(settings_from_flat({**pruning, **chosen}), cfg.prune_layer)
        policy = VLAPolicy(model, tokenizer, pruner)
        print(f"\n== {method} (keep_ratio {pruner.config.keep_ratio:.3f}, layer {pruner.config.layer})")
        totals = []
        for i, frame in enumerate(frames):
            proprio = np.zeros(cfg.proprio_dim) if cfg.proprio_dim else None
            chunk = policy.step(Observation([frame] * cfg.num_cameras, args.instruction, proprio, stamp=i * 0.2))
            s = chunk.stats
            totals.append(s.latency_ms["total"])
            first = " ".join(f"{v:+.3f}" for v in chunk.actions[0])
            print(f"tick {i:2d}  tokens {sum(s.tokens_kept):4d}/{sum(s.tokens_total)}  {s.phase:<11} "
                  f"{s.latency_ms['total']:7.1f} ms  FLOPs x{s.llm_flops_ratio:.2f}  action[0] {first}")
        print(f"median {np.median(totals):.1f} ms over {len(totals)} ticks")
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("demo", help="the main job: every pruning method on the shipped episode (or generated frames)")
    p.add_argument("--model", default="auto",
                   help="auto: the embedded model on the shipped episode if installed, else the small preset")
    p.add_argument("--synthetic", action="store_true", help="generated frames instead of the shipped episode")
    p.add_argument("--head", choices=["tokens", "chunk"], default="chunk")
    p.add_argument("--methods", type=names, default=None,
                   help="comma-separated (default: fastv,vla_pruner,vla_iap,hybrid on the episode; all on "
                        "generated frames)")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--out", default="demo_out", metavar="DIR",
                   help="episode replay: output bag, report.json and plots go here (replaced if present)")
    add_param_args(p, "its pruning.* parameters apply (--methods and --keep choose the methods and the ratio)")
    p.add_argument("--ticks", type=int, default=6)
    p.add_argument("--instruction", default="pick up the red cube")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
