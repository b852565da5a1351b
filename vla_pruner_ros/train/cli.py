"""``vla-pruner train`` and ``probe``: training's command lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli_args import names
from ..errors import SettingsError


def cmd_train(args: argparse.Namespace) -> int:
    from ..train.trainer import TrainConfig, train

    cfg = TrainConfig.from_file(args.config, steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr)
    if args.init and args.resume:
        raise SettingsError("--init and --resume exclude each other: --resume continues OUT's own run")
    summary = train(args.data, args.out, cfg, resume=args.resume, init=args.init)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from ..train.probe import probe, table

    result = probe(args.run, args.data, tuple(args.steps), args.episodes, args.counterfactual)
    print("correlation of the object positions the scene head implies with the true ones, by episode step"
          + (" (instructions naming another object of the scene)" if args.counterfactual else ""))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("train", help="train the small VLA on recorded simulator episodes")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of episode bags (vla-pruner sim record)")
    p.add_argument("--config", default=None, metavar="YAML", help="training settings (config/train.yaml)")
    p.add_argument("--out", required=True, metavar="DIR", help="checkpoint/ and trainer_state.pt go here")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (overrides the config's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    p.add_argument("--init", default=None, metavar="CHECKPOINT",
                   help="start from these weights (same sizes) with a fresh optimiser, e.g. on new episodes")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("probe", help="does a training run find the named object? (auxiliary head, by step)")
    p.add_argument("--run", required=True, metavar="DIR", help="a `train --out` directory")
    p.add_argument("--data", required=True, metavar="DIR", help="recorded episodes with /scene topics")
    p.add_argument("--steps", type=lambda t: [int(x) for x in names(t)], default=[0, 3, 8],
                   help="episode steps to probe")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--counterfactual", action="store_true",
                   help="name another object of each scene in the instruction (needs /scene/object/* topics)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.set_defaults(func=cmd_probe)
