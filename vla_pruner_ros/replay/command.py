"""``vla-pruner replay BAG``: one bag, one or several methods, a report, plots, overlays, an output bag."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import codecs as C
from ..errors import SettingsError
from ..factory import load_settings_model
from ..model import takes_any_camera_count
from ..progress import Progress
from ..settings import NodeSettings, load_param_file, settings_from_flat
from .bag import BAG, IMAGE_TYPES, POSE_TYPE, STRING_TYPE, TRAJECTORY_TYPE, Bag, BagError
from .replayer import MethodRun, ReplayInput, frames_of, replay_method
from .report import build_report, format_table, reference_actions, write_json
from .writer import BagWriter


@dataclass
class ReplayArgs:
    bag: str
    params: str | None = None
    model: str | None = None
    method: str | None = None
    keep: float | None = None
    compare: tuple[str, ...] = ()
    image_topic: str | None = None
    wrist_topic: str | None = None
    instruction_topic: str | None = None
    instruction: str | None = None
    reference_topic: str | None = None
    pose_topic: str | None = None
    start: float | None = None
    end: float | None = None
    episode_gap: float = 1.0
    out: str | None = None
    report: str | None = None
    plots: str | None = None
    overlays: str | None = None
    quiet: bool = False
    overrides: dict | None = None  # node parameters over the file's (e.g. the simulator's control protocol)


def camera_topics(bag: Bag, image: str | None, wrist: str | None) -> tuple[str, str | None]:
    """(camera topic, wrist camera topic or None): as asked; else a wrist topic is the image topic with
    "wrist" in its name, and the camera topic the only other image topic."""
    if wrist:
        wrist = bag.pick(wrist, IMAGE_TYPES, "wrist")
    else:
        named = [t for t, c in bag.topics.items() if c.msgtype in IMAGE_TYPES and "wrist" in t and t != image]
        wrist = named[0] if len(named) == 1 else None
    if image:
        return bag.pick(image, IMAGE_TYPES, "image"), wrist
    others = sorted(t for t, c in bag.topics.items() if c.msgtype in IMAGE_TYPES and t != wrist)
    if len(others) == 1:
        return others[0], wrist
    return bag.pick(None, IMAGE_TYPES, "image"), wrist  # none or several: its error names the topics


def load_settings(args: ReplayArgs) -> NodeSettings:
    values = load_param_file(args.params) if args.params else {}
    values.update(args.overrides or {})
    if args.model:
        values["model.path"] = args.model
    return settings_from_flat(values)


def _progress(method: str, quiet: bool):
    return None if quiet else Progress(method)


def run_replay(args: ReplayArgs) -> dict:
    settings = load_settings(args)
    methods = list(dict.fromkeys(["none", *args.compare])) if args.compare else [args.method or
                                                                                 settings.pruning.method]
    with Bag(args.bag) as bag:
        image_topic, wrist_topic = camera_topics(bag, args.image_topic, args.wrist_topic)
        instruction_topic = bag.pick(args.instruction_topic, {STRING_TYPE}, "instruction", required=False)
        if instruction_topic is None and not args.instruction:
            raise SettingsError(f"{args.bag} has no instruction topic (std_msgs/String); pass --instruction TEXT. "
                             f"Its topics are:\n{bag.describe()}")
        reference_topic = bag.pick(args.reference_topic, {TRAJECTORY_TYPE}, "reference", required=False) \
            if args.reference_topic else None
        try:  # the end-effector pose (proprio, absolute targets): as asked, else the only PoseStamped topic
            pose_topic = bag.pick(args.pose_topic, {POSE_TYPE}, "pose", required=False)
        except BagError:
            if args.pose_topic:
                raise
            pose_topic = None
        topics = [t for t in (image_topic, wrist_topic, instruction_topic, reference_topic, pose_topic) if t]
        messages = bag.messages(topics, args.start, args.end)
        reordered = bag.reordered
        qos = {t: bag.topics[t].qos for t in topics}
    inp = ReplayInput(messages, image_topic, instruction_topic, args.instruction, pose_topic, args.episode_gap,
                      settings.camera.size_change, wrist_topic)
    if takes_any_camera_count(settings.model.path) and settings.model.num_cameras is None:  # pi0: the bag's cameras
        settings = dataclasses.replace(settings, camera=dataclasses.replace(settings.camera,
                                                                            wrist=wrist_topic is not None))
    model, tokenizer = load_settings_model(settings)
    runs: dict[str, MethodRun] = {}
    for method in methods:
        keep = args.keep if method != "none" else None
        runs[method] = replay_method(inp, settings, model, tokenizer, method, keep, _progress(method, args.quiet))
    reference = reference_actions(messages, reference_topic)
    t0 = next(m.time for m in messages if m.topic == image_topic)
    meta = {"bag": str(args.bag), "image_topic": image_topic, "wrist_topic": wrist_topic,
            "instruction_topic": instruction_topic,
            "reference_topic": reference_topic, "model": settings.model.path, "rate_hz": settings.control.rate_hz,
            "keep_ratio": args.keep if args.keep is not None else settings.pruning.keep_ratio,
            "messages": len(messages), "reordered_messages": reordered, "start_time": t0}
    report = build_report(runs, reference, meta, settings.control.dt)
    if reordered:
        report["meta"]["note"] = f"{reordered} message(s) were out of time order in the bag and were replayed sorted"
    if args.out:
        write_output_bag(args.out, messages, runs, settings, qos, (image_topic, wrist_topic, instruction_topic))
    if args.report:
        write_json(args.report, report)
    if args.plots:
        from ..plots import write_plots

        report["plots"] = [str(p) for p in write_plots(runs, reference, tuple(settings.action_names), args.plots, t0)]
    if args.overlays:
        from ..plots import write_overlays

        written = write_overlays(runs, frames_of(inp), model.config.grid, args.overlays)
        report["overlays"] = len(written)
    return report


def write_output_bag(path: str, messages, runs: dict[str, MethodRun], settings: NodeSettings, qos: dict,
                     inputs: tuple[str | None, ...]) -> Path:
    """The ``inputs`` topics (cameras, instruction) as they were, plus per method the action chunks and
    per-chunk diagnostics."""
    frame = settings.control.action_frame
    with BagWriter(path, "mcap") as w:
        for m in messages:
            if m.topic in inputs:
                w.connection(m.topic, m.msgtype, qos.get(m.topic) or ())
                w.write_raw(m.topic, m.msgtype, m.raw, m.log_ns)
        for name, run in runs.items():
            for c in run.chunks:
                t_ns = int(round(c.t * 1e9))
                w.write(f"/replay/{name}/action_chunk",
                        C.joint_trajectory(BAG, c.actions, tuple(settings.action_names), settings.control.dt, c.stamp,
                                         frame), t_ns)
            chunks = {c.tick: c for c in run.chunks}
            for k, tick in enumerate(run.tick_log):
                values = {"method": name, **{key: v for key, v in tick.items() if key != "t"}}
                c = chunks.get(k)
                if c is not None:
                    values.update(tokens_kept=sum(c.stats.tokens_kept), tick_ms=round(c.stats.latency_ms["total"], 2))
                w.write(f"/replay/{name}/diagnostics", C.diagnostics(BAG, tick["t"], f"replay/{name}", values),
                        int(round(tick["t"] * 1e9)))
    return Path(path)


def print_summary(report: dict) -> None:
    print(format_table(report))
    for name, r in report["methods"].items():
        for warning in r["warnings"][:5]:
            print(f"warning ({name}): {warning}", file=sys.stderr)
    if report["meta"].get("note"):
        print(f"note: {report['meta']['note']}", file=sys.stderr)
