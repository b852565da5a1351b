"""``vla-pruner replay`` (``command.py`` runs it) and ``vla-pruner play`` (``ros/player.py``)."""

from __future__ import annotations

import argparse

from ..cli_args import add_param_args, names, ros_module, set_params


def cmd_replay(args: argparse.Namespace) -> int:
    from ..replay.command import ReplayArgs, print_summary, run_replay

    fields = {f for f in ReplayArgs.__dataclass_fields__}
    report = run_replay(ReplayArgs(**{k: v for k, v in vars(args).items() if k in fields},
                                   overrides=set_params(args.set)))
    print_summary(report)
    for what in ("out", "report", "plots", "overlays"):
        if getattr(args, what):
            print(f"wrote {what}: {getattr(args, what)}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    player = ros_module(".ros.player", "play")
    sent = player.play(player.PlayArgs(args.bag, args.rate, args.loop, args.topics, args.clock, args.wait, args.quiet))
    print(f"published {sent} message(s) from {args.bag}")
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("replay", help="run a recorded bag through the pruned policy offline; compare methods")
    p.add_argument("bag", help="bag directory (metadata.yaml + .db3/.mcap) or a single .mcap/.db3 file")
    add_param_args(p, "all its parameters apply, as they would to the node")
    p.add_argument("--model", default=None, help="override model.path (checkpoint directory or preset)")
    p.add_argument("--method", default=None, help="pruning method (default: the parameter file's)")
    p.add_argument("--keep", type=float, default=None, help="keep ratio (default: the parameter file's)")
    p.add_argument("--compare", type=names, default=(), help="methods to replay side by side; none is always added")
    p.add_argument("--image-topic", default=None)
    p.add_argument("--wrist-topic", default=None,
                   help="second camera for two-camera models (default: the image topic with 'wrist' in its name)")
    p.add_argument("--instruction-topic", default=None)
    p.add_argument("--instruction", default=None, help="task text when the bag has no instruction topic")
    p.add_argument("--reference-topic", default=None, help="recorded actions (JointTrajectory) to score against")
    p.add_argument("--pose-topic", default=None, help="end-effector pose (PoseStamped) for absolute targets")
    p.add_argument("--start", type=float, default=None, help="bag seconds from the first message")
    p.add_argument("--end", type=float, default=None, help="bag seconds from the first message")
    p.add_argument("--episode-gap", type=float, default=1.0, help="a camera gap longer than this starts an episode")
    p.add_argument("--out", default=None, metavar="OUT_BAG", help="output bag (mcap) with chunks and diagnostics")
    p.add_argument("--report", default=None, metavar="JSON")
    p.add_argument("--plots", default=None, metavar="DIR")
    p.add_argument("--overlays", default=None, metavar="DIR_OR_MP4", help="kept-token overlays: a folder or x.mp4")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("play", help="publish a bag's camera and instruction topics into a live ROS 2 graph")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--topics", type=names, default=(), help="comma-separated (default: cameras and instructions)")
    p.add_argument("--clock", action="store_true", help="also publish /clock in bag time (node: use_sim_time:=true)")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for subscribers before playing")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_play)
