"""``vla-pruner sim record|expert-eval|relevance``, ``eval`` and ``failures``: the simulator's command lines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_args import (
    EVAL_ROW_PARAMS,
    add_param_args,
    check_replan,
    control_params,
    floats,
    names,
    need_sim,
    param_values,
)
from ..errors import SettingsError


def cmd_sim_record(args: argparse.Namespace) -> int:
    from ..progress import Progress

    record = need_sim()
    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    if args.policy is None and (args.beta or args.replan_steps is not None):
        raise SettingsError("--beta and --replan-steps set how a learned policy drives; they need --policy MODEL")
    check_replan(args.replan_steps)
    summary = record.record(args.out, args.task, args.episodes, args.split, args.seed, args.compressed, args.noise,
                            args.image_size, progress=None if args.quiet else Progress("record", "episodes"),
                            start_spread=args.start_spread, perturb=args.perturb, policy=args.policy, beta=args.beta,
                            policy_params=control_params(args), wrist=args.wrist)
    print(summary.line())
    return 0


def cmd_sim_relevance(args: argparse.Namespace) -> int:
    from ..progress import Progress

    need_sim()
    from ..sim.relevance import markdown, relevance

    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    rep = relevance(args.model, args.episodes, args.keep, args.seed, args.split,
                    progress=None if args.quiet else Progress("relevance", "episodes"))
    print(markdown(rep))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2))
    return 0


def cmd_sim_expert(args: argparse.Namespace) -> int:
    from ..progress import Progress

    record = need_sim()
    result = record.expert_success(args.episodes, args.seed, args.noise,
                                   progress=None if args.quiet else Progress("expert", "episodes"),
                                   perturb=args.perturb)
    for family, r in result.items():
        print(f"{family:<6} {r['successes']}/{r['episodes']} = {100 * r['success_rate']:.1f}% "
              f"(mean {r['mean_steps']:.1f} steps)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..progress import Progress

    need_sim()
    from ..sim.evaluate import evaluate, markdown, write

    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    from ..sim.tasks import FAMILIES

    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        raise SettingsError(f"--families {','.join(unknown)}: unknown; expected some of {','.join(FAMILIES)}")
    if args.model is None:
        from ..model import EMBEDDED, embedded_available

        args.model = EMBEDDED if embedded_available() else "small"
    check_replan(args.replan_steps)
    if args.strip_episodes < 1:
        raise SettingsError(f"--strip-episodes {args.strip_episodes} must be >= 1")
    rep = evaluate(args.model, args.methods, args.keep, args.episodes, args.seed, args.split,
                   families=tuple(args.families), layer=args.layer,
                   params={**control_params(args),
                           **param_values(args, "pruning.", EVAL_ROW_PARAMS,
                                         "eval sets it per row; use --methods, --keep or --layer")},
                   progress=None if args.quiet else Progress("eval", "episodes"), strips=args.strips,
                   strip_episodes=args.strip_episodes, trace=args.trace)
    print(markdown(rep))
    write(rep, args.json, args.md, args.plot)
    for keep, spent in rep["unmatched_budgets"].items():
        print(f"vla-pruner eval: warning: at keep {keep} the rows spent different budgets ("
              + ", ".join(f"{m} {v:.3f}" for m, v in spent.items()) + "); they do not compare methods",
              file=sys.stderr)
    return 0


def cmd_eval_merge(args: argparse.Namespace) -> int:
    from ..sim.evaluate import markdown, merge, read_report, write

    rep = merge([read_report(path) for path in args.reports])
    print(markdown(rep))
    write(rep, args.json, args.md, args.plot)
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from ..sim.failures import markdown as failure_table
    from ..sim.failures import summarise

    summary = summarise(args.trace_dir)
    print(failure_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("sim", help="the MuJoCo tabletop: record expert episodes as bags, expert success")
    simsub = p.add_subparsers(dest="sim_command", required=True)
    q = simsub.add_parser("record", help="record scripted-expert episodes, one mcap bag each")
    q.add_argument("--task", default="all", help="pick, push, place or all")
    q.add_argument("--episodes", type=int, default=10)
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--split", choices=["train", "eval", "all"], default="train",
                   help="train: no held-out combination; eval: held-out ones only")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--noise", type=float, default=0.0, help="expert action noise (m)")
    q.add_argument("--perturb", type=float, default=0.0,
                   help="DART-style pushes (m): on some steps the expert's action plus a push of this size is "
                        "executed, the expert's own action recorded; demonstrations of recovering")
    q.add_argument("--policy", default=None, metavar="MODEL",
                   help="DAgger: this model drives (checkpoint directory, 'embedded' or a preset), the expert's "
                        "action is recorded as the label")
    q.add_argument("--beta", type=float, default=0.0,
                   help="with --policy: share of steps on which the expert's action is executed instead")
    q.add_argument("--replan-steps", type=int, default=None,
                   help="with --policy: executed steps between its chunks (default: the simulator's, 2)")
    q.add_argument("--compressed", action="store_true", help="CompressedImage jpeg instead of raw rgb8")
    q.add_argument("--wrist", action="store_true", help="also record the wrist camera (/camera/wrist/image)")
    q.add_argument("--image-size", type=int, default=128)
    q.add_argument("--start-spread", type=float, default=1.0,
                   help="scale of the hand's random start box around HOME; 0 = always HOME")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_sim_record)
    q = simsub.add_parser("expert-eval", help="scripted-expert success over seeded episodes per family")
    q.add_argument("--episodes", type=int, default=100)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--noise", type=float, default=0.0)
    q.add_argument("--perturb", type=float, default=0.0, help="DART-style pushes (m), as sim record")
    q.add_argument("--json", default=None, metavar="PATH")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_sim_expert)
    q = simsub.add_parser("relevance", help="where each selection score points: the share of the named object, "
                                            "plate and gripper in its top tokens, per camera and phase")
    q.add_argument("--model", default="embedded", help="checkpoint directory (default: the embedded model)")
    q.add_argument("--episodes", type=int, default=10, help="episodes per family")
    q.add_argument("--keep", type=floats, default=(0.25, 0.125))
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--split", choices=["train", "eval"], default="eval")
    q.add_argument("--json", default=None, metavar="PATH")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_sim_relevance)
    p = sub.add_parser("eval", help="closed-loop task success per pruning method in the simulator")
    p.add_argument("--model", default=None,
                   help="checkpoint directory, 'embedded' (the shipped model, the default) or a preset")
    p.add_argument("--methods", type=names, default=("none", "random", "fastv", "divprune", "vla_pruner", "vla_iap",
                                                       "hybrid"))
    p.add_argument("--keep", type=floats, default=(0.5, 0.25, 0.125))
    p.add_argument("--episodes", type=int, default=20, help="episodes per task family (same seeds for every method)")
    p.add_argument("--families", type=names, default=("pick", "push", "place"), help="task families to run")
    p.add_argument("--replan-steps", type=int, default=None,
                   help="executed steps between new chunks (default: the simulator's, 2); 0 = the whole chunk "
                        "open loop (as OFT)")
    p.add_argument("--gripper-threshold", type=float, default=0.0,
                   help="> 0: binary gripper commands, open at or above it (control.gripper_threshold)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["eval", "train", "all"], default="eval",
                   help="eval: the held-out colour/shape combinations")
    p.add_argument("--layer", type=int, default=None,
                   help="pruning layer K for the methods that prune inside the LLM (small models: 1 or 2)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--md", default=None, metavar="PATH", help="also write the table as Markdown")
    p.add_argument("--plot", default=None, metavar="PNG", help="success against LLM FLOPs, per method")
    p.add_argument("--strips", default=None, metavar="DIR",
                   help="PNG strips of the first episodes per family: each planned frame with the kept tokens")
    p.add_argument("--strip-episodes", type=int, default=1, help="episodes per family drawn with --strips")
    add_param_args(p, "its pruning.* parameters apply to every row (method, keep_ratio and layer are set per "
                      "row); the simulator sets control and safety")
    p.add_argument("--trace", default=None, metavar="DIR",
                   help="per-step CSV per method and keep ratio: hand, named object, plate, action, success")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("eval-merge", help="one table from evaluations of other methods on the same episodes "
                                          "(an eval split across processes or machines)")
    p.add_argument("reports", nargs="+", metavar="JSON", help="eval --json reports (same model, seeds and episodes)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--md", default=None, metavar="PATH")
    p.add_argument("--plot", default=None, metavar="PNG", help="success against LLM FLOPs, per method")
    p.set_defaults(func=cmd_eval_merge)
    p = sub.add_parser("failures", help="how the episodes of an eval --trace run ended, per method and family")
    p.add_argument("trace_dir", metavar="DIR", help="the folder eval --trace wrote")
    p.add_argument("--json", default=None, metavar="PATH")
    p.set_defaults(func=cmd_failures)
