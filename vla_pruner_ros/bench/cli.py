"""``vla-pruner bench``, ``bench-papers`` and ``bench-node``: the benchmark programs' command lines."""

from __future__ import annotations

import argparse
import functools
import sys

from ..cli_args import floats, names, ros_module
from ..errors import SettingsError


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.speed import format_table, progress_printer, run_bench, write_json
    from ..pruning import PRUNERS, UnknownPrunerError

    bad = [m for m in args.methods if m not in PRUNERS]
    if bad:
        raise UnknownPrunerError(f"unknown method(s) {bad}; valid methods: {sorted(PRUNERS)}")
    for keep in args.keep:
        if not 0 < keep <= 1:
            raise SettingsError(f"--keep {keep} must be in (0, 1]")
    records, meta = run_bench(args.model, args.head, args.methods, args.keep, args.ticks, args.warmup, args.layer,
                              args.device, args.dtype, args.cameras, args.threads, args.seed,
                              progress=None if args.quiet else progress_printer("bench"))
    print(format_table(records, meta))
    if args.json:
        write_json(args.json, records, meta)
        print(f"wrote {args.json}")
    return 0


def cmd_bench_papers(args: argparse.Namespace) -> int:
    from ..bench.papers import run_papers

    run_papers(args.out, args.model, args.device, args.dtype, args.ticks, args.warmup, args.quiet)
    return 0


def cmd_bench_node(args: argparse.Namespace) -> int:
    bench = ros_module(".bench.two_host" if args.two_host else ".bench.node_bench", "bench-node")
    run = (functools.partial(bench.run_two_host, ipfrag_tuning=args.two_host == "tuned") if args.two_host
           else bench.run_node_bench)
    format_report, write_json = bench.format_report, bench.write_json

    def show(done: float, total: float) -> None:
        sys.stderr.write(f"\rbench-node {done:6.0f}/{total:.0f} s")
        sys.stderr.flush()

    report = run(args.model, args.seconds, args.camera_hz, args.rate_hz, args.method, args.keep,
                 args.replan_steps, args.frame_size, progress=None if args.quiet else show)
    if not args.quiet:
        sys.stderr.write("\n")
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("bench", help="tick latency per pruning method and keep ratio, side by side")
    p.add_argument("--model", default="small",
                   help="preset (tiny, small, openvla-7b, pi0-tiny, pi0) or checkpoint dir (OpenVLA family or pi0)")
    p.add_argument("--head", choices=["tokens", "chunk", "oft"], default="chunk",
                   help="an OpenVLA preset's head (oft: OpenVLA-OFT's head and sequence); a checkpoint has its own, "
                        "pi0 has no other")
    p.add_argument("--methods", type=names, default=("none", "random", "fastv"))
    p.add_argument("--keep", type=floats, default=(1.0, 0.5, 0.25, 0.125))
    p.add_argument("--ticks", type=int, default=15, help="measured rounds per configuration")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--layer", type=int, default=None,
                   help="pruning layer K (default: the model's prune_layer if it names one, else each method's own)")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the records as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("bench-papers", help="GPU: OpenVLA-7B (tokens head), OpenVLA-OFT-7B (OFT's head, 2 cameras, "
                                            "proprio) and pi0 (3 cameras, state, 10 steps) in bf16, every method, "
                                            "keep 1/0.5/0.25/0.125")
    p.add_argument("--out", default="out/bench_papers", metavar="DIR", help="where the JSON and Markdown go")
    p.add_argument("--model", default="openvla-7b",
                   help="openvla-7b: the real sizes; tiny: a dry run (tiny and pi0-tiny presets)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    p.add_argument("--ticks", type=int, default=10, help="measured rounds per configuration")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_bench_papers)
    p = sub.add_parser("bench-node", help="the live node with a camera in another process: rate, latency, memory")
    p.add_argument("--model", default="tiny")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--camera-hz", type=float, default=30.0)
    p.add_argument("--rate-hz", type=float, default=10.0, help="control.rate_hz of the node")
    p.add_argument("--replan-steps", type=int, default=1)
    p.add_argument("--method", default="vla_pruner")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--frame-size", type=int, default=96, help="camera frames are square, this many pixels")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--two-host", nargs="?", const="kernel", choices=["kernel", "tuned"], default=None,
                   help="camera and arm in one network namespace, the node in another, over an emulated link "
                        "(root): --seconds clean, --seconds with 50 ms delay and 5%% loss, a 2 s cut, 5 s after; "
                        "'tuned': ROS 2's IP fragment tuning on both hosts (default: the kernel's)")
    p.set_defaults(func=cmd_bench_node)
