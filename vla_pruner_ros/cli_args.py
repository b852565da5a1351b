"""Argument types and checks shared by the ``vla-pruner`` commands."""

from __future__ import annotations

import argparse

from .errors import SettingsError


def floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def ros_module(name: str, command: str):
    """Import a module that needs rclpy, or say which command needs it and how to get it."""
    import importlib

    try:
        return importlib.import_module(name, __package__)
    except ImportError as err:
        raise SettingsError(f"{command} needs rclpy (the 'ros' extra, or a sourced ROS 2 Jazzy): {err}") from None


def need_sim():
    """The simulator's recording module, or one line saying MuJoCo is missing."""
    try:
        from .sim import record
    except ImportError as err:
        raise SettingsError(f"the simulator needs MuJoCo (the 'sim' extra: pip install '.[sim]'): {err}") from None
    return record


def check_replan(steps: int | None) -> None:
    if steps is not None and steps < 0:
        raise SettingsError(f"--replan-steps {steps} must be >= 0 (0 = the chunk length)")


EVAL_ROW_PARAMS = ("pruning.method", "pruning.keep_ratio", "pruning.layer")  # set per row by eval


def control_params(args: argparse.Namespace) -> dict:
    """The control settings a command's flags override (the simulator's SIM_CONTROL otherwise)."""
    out = {} if args.replan_steps is None else {"control.replan_steps": args.replan_steps}
    if getattr(args, "gripper_threshold", None):
        out["control.gripper_threshold"] = args.gripper_threshold
    return out


def add_param_args(p: argparse.ArgumentParser, scope: str) -> None:
    """``--params`` and ``--set``: the node's parameters, described one way for every command (``scope``:
    which of them the command uses)."""
    p.add_argument("--params", default=None, metavar="YAML",
                   help=f"a vla_node parameter file (config/<robot>.yaml, config/pruning.yaml), read by rcl's rules; "
                        f"{scope}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a node parameter over the file's, e.g. pruning.hybrid.window=5 (vla-pruner params lists "
                        "them); repeatable")


def param_values(args: argparse.Namespace, prefix: str = "", own: tuple[str, ...] = (), why: str = "") -> dict:
    """The node parameters of ``--params`` (those whose name starts with ``prefix``) and ``--set``, in
    that order. ``own``: parameters the command sets itself (``why`` says how): the file's are left to
    it, and ``--set`` refuses them."""
    from .settings import load_param_file

    values = load_param_file(args.params) if getattr(args, "params", None) else {}
    values = {k: v for k, v in values.items() if k.startswith(prefix) and k not in own}
    values.update(set_params(args.set, own, why))
    return values


def set_params(items: list[str], own: tuple[str, ...] = (), why: str = "") -> dict:
    """``--set KEY=VALUE`` node parameters (VALUE read as YAML: 0.125, null, true, [1, 2])."""
    import yaml

    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError(f"--set {item!r}: expected KEY=VALUE, e.g. pruning.hybrid.interaction_keep_ratio=0.125")
        if key in own:
            raise SettingsError(f"--set {key}: {why}")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise SettingsError(f"--set {item!r}: the value is not valid YAML ({err})") from None
    return out
