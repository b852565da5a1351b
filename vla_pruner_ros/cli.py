"""``vla-pruner``: the project's command line (info, bench, demo).

Errors in what the user gave (a path, a parameter) print one line naming the value and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from .errors import SettingsError, VLAPrunerError


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


HEAD_NAMES = {"chunk": "chunk (this project's L1 regression head, parallel decoding)",
              "oft": "oft (OpenVLA-OFT's L1 regression MLP-ResNet, bidirectional attention, side files)"}


def cmd_info(args: argparse.Namespace) -> int:
    from .model import PI0_PRESETS, PRESET_NAMES, VLAConfig, build_model, build_preset, resolve_model_path
    from .model.checkpoint import INDEX_FILE, export_state_dict
    from .model.oft import is_oft_dir, read_side_tensors
    from .model.pi0_files import is_pi0_dir

    path = Path(resolve_model_path(args.checkpoint))
    if args.checkpoint in PI0_PRESETS or is_pi0_dir(path):
        from .model.pi0 import describe_pi0

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


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.speed import format_table, progress_printer, run_bench, write_json
    from .pruning import PRUNERS, UnknownPrunerError

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
    from .bench.papers import run_papers

    run_papers(args.out, args.model, args.device, args.dtype, args.ticks, args.warmup, args.quiet)
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .settings import flat_defaults, load_param_file, settings_from_flat

    values = load_param_file(args.params_file) if args.params_file else {}  # rcl's rules, named fixes
    if args.params_file:
        settings_from_flat(values)  # validates the values; errors name the parameter
        rcl = _rcl_opinion(args.params_file)
    for name, (default, description) in flat_defaults().items():
        if args.grep and args.grep not in name:
            continue
        value = values.get(name, default)
        mark = "*" if name in values else " "
        print(f"{mark} {name} = {value!r}\n      {description}")
    if args.params_file:
        print(f"\n{args.params_file}: valid ({len(values)} parameters set, marked *); {rcl}")
    return 0


def _rcl_opinion(path: str) -> str:
    """What rcl's own parser says of a parameter file (when rclpy is installed)."""
    try:
        from .ros.spin import rcl_refusal
    except ImportError:
        return "rcl's own parser not checked (rclpy is not installed)"
    refusal = rcl_refusal(["--ros-args", "--params-file", path])
    if refusal:
        raise SettingsError(f"{path}: rcl refuses it: {refusal}")
    return "rcl's own parser accepts it"


def _ros_module(name: str, command: str):
    """Import a module that needs rclpy, or say which command needs it and how to get it."""
    import importlib

    try:
        return importlib.import_module(name, __package__)
    except ImportError as err:
        raise SettingsError(f"{command} needs rclpy (the 'ros' extra, or a sourced ROS 2 Jazzy): {err}") from None


def cmd_bench_node(args: argparse.Namespace) -> int:
    bench = _ros_module(".bench.two_host" if args.two_host else ".bench.node_bench", "bench-node")
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


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay.command import ReplayArgs, print_summary, run_replay

    fields = {f for f in ReplayArgs.__dataclass_fields__}
    report = run_replay(ReplayArgs(**{k: v for k, v in vars(args).items() if k in fields}))
    print_summary(report)
    for what in ("out", "report", "plots", "overlays"):
        if getattr(args, what):
            print(f"wrote {what}: {getattr(args, what)}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    player = _ros_module(".ros.player", "play")
    sent = player.play(player.PlayArgs(args.bag, args.rate, args.loop, args.topics, args.clock, args.wait, args.quiet))
    print(f"published {sent} message(s) from {args.bag}")
    return 0


def _sim():
    try:
        from .sim import record
    except ImportError as err:
        raise SettingsError(f"the simulator needs MuJoCo (the 'sim' extra: pip install '.[sim]'): {err}") from None
    return record


def _check_replan(steps: int | None) -> None:
    if steps is not None and steps < 0:
        raise SettingsError(f"--replan-steps {steps} must be >= 0 (0 = the chunk length)")


def _control_params(args: argparse.Namespace) -> dict:
    """The control settings a command's flags override (the simulator's SIM_CONTROL otherwise)."""
    out = {} if args.replan_steps is None else {"control.replan_steps": args.replan_steps}
    if getattr(args, "gripper_threshold", None):
        out["control.gripper_threshold"] = args.gripper_threshold
    return out


EVAL_ROW_PARAMS = ("pruning.method", "pruning.keep_ratio", "pruning.layer")  # set per row by eval


def _set_params(items: list[str]) -> dict:
    """``--set KEY=VALUE`` node parameters (VALUE read as YAML: 0.125, null, true, [1, 2])."""
    import yaml

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE, e.g. pruning.hybrid.interaction_keep_ratio=0.125")
        if key in EVAL_ROW_PARAMS:
            raise SettingsError(f"--set {key}: eval sets it per row; use --methods, --keep or --layer")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SettingsError(f"--set {item!r}: the value is not valid YAML ({err})") from None
    return out


def cmd_sim_record(args: argparse.Namespace) -> int:
    from .progress import Progress

    record = _sim()
    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    if args.policy is None and (args.beta or args.replan_steps is not None):
        raise SettingsError("--beta and --replan-steps set how a learned policy drives; they need --policy MODEL")
    _check_replan(args.replan_steps)
    summary = record.record(args.out, args.task, args.episodes, args.split, args.seed, args.compressed, args.noise,
                            args.image_size, progress=None if args.quiet else Progress("record", "episodes"),
                            start_spread=args.start_spread, perturb=args.perturb, policy=args.policy, beta=args.beta,
                            policy_params=_control_params(args), wrist=args.wrist)
    print(summary.line())
    return 0


def cmd_sim_relevance(args: argparse.Namespace) -> int:
    from .progress import Progress

    _sim()
    from .sim.relevance import markdown, relevance

    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    rep = relevance(args.model, args.episodes, args.keep, args.seed, args.split,
                    progress=None if args.quiet else Progress("relevance", "episodes"))
    print(markdown(rep))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2))
    return 0


def cmd_sim_expert(args: argparse.Namespace) -> int:
    from .progress import Progress

    record = _sim()
    result = record.expert_success(args.episodes, args.seed, args.noise,
                                   progress=None if args.quiet else Progress("expert", "episodes"),
                                   perturb=args.perturb)
    for family, r in result.items():
        print(f"{family:<6} {r['successes']}/{r['episodes']} = {100 * r['success_rate']:.1f}% "
              f"(mean {r['mean_steps']:.1f} steps)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train.trainer import TrainConfig, train

    cfg = TrainConfig.from_file(args.config, steps=args.steps, batch_size=args.batch_size, seed=args.seed, lr=args.lr)
    if args.init and args.resume:
        raise SettingsError("--init and --resume exclude each other: --resume continues OUT's own run")
    summary = train(args.data, args.out, cfg, resume=args.resume, init=args.init)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .train.probe import probe, table

    result = probe(args.run, args.data, tuple(args.steps), args.episodes, args.counterfactual)
    print("correlation of the object positions the scene head implies with the true ones, by episode step"
          + (" (instructions naming another object of the scene)" if args.counterfactual else ""))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .progress import Progress

    _sim()
    from .sim.evaluate import evaluate, markdown, write

    if args.episodes < 1:
        raise SettingsError(f"--episodes {args.episodes} must be >= 1")
    from .sim.tasks import FAMILIES

    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        raise SettingsError(f"--families {','.join(unknown)}: unknown; expected some of {','.join(FAMILIES)}")
    if args.model is None:
        from .model import EMBEDDED, embedded_available

        args.model = EMBEDDED if embedded_available() else "small"
    _check_replan(args.replan_steps)
    if args.strip_episodes < 1:
        raise SettingsError(f"--strip-episodes {args.strip_episodes} must be >= 1")
    rep = evaluate(args.model, args.methods, args.keep, args.episodes, args.seed, args.split,
                   families=tuple(args.families), layer=args.layer,
                   params={**_control_params(args), **_set_params(args.set)},
                   progress=None if args.quiet else Progress("eval", "episodes"), strips=args.strips,
                   strip_episodes=args.strip_episodes, trace=args.trace)
    print(markdown(rep))
    write(rep, args.json, args.md, args.plot)
    for keep, spent in rep["unmatched_budgets"].items():
        print(f"vla-pruner eval: warning: at keep {keep} the rows spent different budgets ("
              + ", ".join(f"{m} {v:.3f}" for m, v in spent.items()) + "); they do not compare methods",
              file=sys.stderr)
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from .sim.failures import markdown as failure_table
    from .sim.failures import summarise

    summary = summarise(args.trace_dir)
    print(failure_table(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


SAMPLE_EPISODE = Path(__file__).resolve().parent / "data" / "sample_episode"


DEMO_METHODS = ("random", "fastv", "divprune", "vla_pruner", "vla_iap", "hybrid")  # every method, random first: the bar


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's main job: with the embedded model and the shipped episode, a replay comparing the
    methods against ``none`` that writes the output bag, plots and report; otherwise (or with
    --synthetic) the policy on generated frames."""
    from .model import embedded_available

    model = args.model
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
                                           overrides=SIM_CONTROL))  # a simulator episode: its control protocol
            print_summary(report)
            print(f"wrote {out / 'replay_bag'} (the episode plus each method's action chunks), "
                  f"{out / 'report.json'} and {len(report.get('plots', []))} plot(s) in {out / 'plots'}")
            return 0
    return _synthetic_demo(args, model)


def _synthetic_demo(args: argparse.Namespace, model_name: str) -> int:
    import numpy as np

    from .model import load_model
    from .policy import Observation, VLAPolicy
    from .pruning import PRUNERS, build_pruner
    from .pruning.config_file import load_pruner
    from .synthetic import moving_square_frames

    model, tokenizer = load_model(model_name, head=args.head)
    cfg = model.config
    frames = moving_square_frames(args.ticks, cfg.image_size, seed=args.seed)
    methods = args.methods or tuple(PRUNERS)
    print(f"model={model_name} head={cfg.head} visual tokens/camera={cfg.tokens_per_camera} "
          f"layers={cfg.num_layers}; {args.ticks} generated frames, instruction {args.instruction!r}")
    for method in methods:
        overrides = {} if method == "none" else {"keep_ratio": args.keep}
        if args.pruning_config:
            pruner = load_pruner(args.pruning_config, method, overrides)
        else:
            pruner = build_pruner(method, **overrides)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-pruner", description="Visual token pruning for VLA policies.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="describe a checkpoint directory (or a preset) without loading weights")
    p.add_argument("checkpoint", help="checkpoint directory with config.json, or a preset name")
    p.add_argument("--head", choices=["tokens", "chunk"], default=None, help="override the action head")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("bench", help="tick latency per pruning method and keep ratio, side by side")
    p.add_argument("--model", default="small",
                   help="preset (tiny, small, openvla-7b, pi0-tiny, pi0) or checkpoint dir (OpenVLA family or pi0)")
    p.add_argument("--head", choices=["tokens", "chunk", "oft"], default="chunk",
                   help="an OpenVLA preset's head (oft: OpenVLA-OFT's head and sequence); a checkpoint has its own, "
                        "pi0 has no other")
    p.add_argument("--methods", type=_names, default=("none", "random", "fastv"))
    p.add_argument("--keep", type=_floats, default=(1.0, 0.5, 0.25, 0.125))
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

    p = sub.add_parser("replay", help="run a recorded bag through the pruned policy offline; compare methods")
    p.add_argument("bag", help="bag directory (metadata.yaml + .db3/.mcap) or a single .mcap/.db3 file")
    p.add_argument("--params", default=None, metavar="YAML", help="the node's parameter file (config/<robot>.yaml)")
    p.add_argument("--model", default=None, help="override model.path (checkpoint directory or preset)")
    p.add_argument("--method", default=None, help="pruning method (default: the parameter file's)")
    p.add_argument("--keep", type=float, default=None, help="keep ratio (default: the parameter file's)")
    p.add_argument("--compare", type=_names, default=(), help="methods to replay side by side; none is always added")
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
    p.add_argument("--topics", type=_names, default=(), help="comma-separated (default: cameras and instructions)")
    p.add_argument("--clock", action="store_true", help="also publish /clock in bag time (node: use_sim_time:=true)")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for subscribers before playing")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_play)

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
    q.add_argument("--keep", type=_floats, default=(0.25, 0.125))
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--split", choices=["train", "eval"], default="eval")
    q.add_argument("--json", default=None, metavar="PATH")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_sim_relevance)

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
    p.add_argument("--steps", type=lambda t: [int(x) for x in _names(t)], default=[0, 3, 8],
                   help="episode steps to probe")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--counterfactual", action="store_true",
                   help="name another object of each scene in the instruction (needs /scene/object/* topics)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("eval", help="closed-loop task success per pruning method in the simulator")
    p.add_argument("--model", default=None,
                   help="checkpoint directory, 'embedded' (the shipped model, the default) or a preset")
    p.add_argument("--methods", type=_names, default=("none", "random", "fastv", "divprune", "vla_pruner", "vla_iap",
                                                       "hybrid"))
    p.add_argument("--keep", type=_floats, default=(0.5, 0.25, 0.125))
    p.add_argument("--episodes", type=int, default=20, help="episodes per task family (same seeds for every method)")
    p.add_argument("--families", type=_names, default=("pick", "push", "place"), help="task families to run")
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a node parameter for every row, e.g. pruning.hybrid.interaction_keep_ratio=0.125 "
                        "(vla-pruner params lists them); repeatable")
    p.add_argument("--trace", default=None, metavar="DIR",
                   help="per-step CSV per method and keep ratio: hand, named object, plate, action, success")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("failures", help="how the episodes of an eval --trace run ended, per method and family")
    p.add_argument("trace_dir", metavar="DIR", help="the folder eval --trace wrote")
    p.add_argument("--json", default=None, metavar="PATH")
    p.set_defaults(func=cmd_failures)

    p = sub.add_parser("params", help="the node's parameters with defaults and descriptions; validate a YAML")
    p.add_argument("params_file", nargs="?", default=None, help="a ROS 2 parameter file to validate and show")
    p.add_argument("--grep", default=None, help="only parameters whose name contains this")
    p.set_defaults(func=cmd_params)

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

    p = sub.add_parser("demo", help="the main job: every pruning method on the shipped episode (or generated frames)")
    p.add_argument("--model", default="auto",
                   help="auto: the embedded model on the shipped episode if installed, else the small preset")
    p.add_argument("--synthetic", action="store_true", help="generated frames instead of the shipped episode")
    p.add_argument("--head", choices=["tokens", "chunk"], default="chunk")
    p.add_argument("--methods", type=_names, default=None,
                   help="comma-separated (default: fastv,vla_pruner,vla_iap,hybrid on the episode; all on "
                        "generated frames)")
    p.add_argument("--keep", type=float, default=0.25)
    p.add_argument("--out", default="demo_out", metavar="DIR",
                   help="episode replay: output bag, report.json and plots go here (replaced if present)")
    p.add_argument("--pruning-config", default=None, metavar="YAML",
                   help="method parameters (config/pruning.yaml format); --keep still overrides keep_ratio")
    p.add_argument("--ticks", type=int, default=6)
    p.add_argument("--instruction", default="pick up the red cube")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    # The package's own errors and a path that does not exist are the user's to fix: one line. Any
    # other exception is a bug and keeps its traceback.
    errors = (VLAPrunerError, FileNotFoundError, NotADirectoryError, FileExistsError)
    try:
        return args.func(args)
    except errors as err:
        print(f"vla-pruner {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
