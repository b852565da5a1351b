"""``vla-pruner params``: the node's parameters, and a parameter file checked by rcl's rules and rcl's parser."""

from __future__ import annotations

import argparse

from .errors import SettingsError


def cmd_params(args: argparse.Namespace) -> int:
    from .settings import load_param_file, parameters, settings_from_flat

    values = load_param_file(args.params_file) if args.params_file else {}  # rcl's rules, named fixes
    if args.params_file:
        settings_from_flat(values)  # validates the values; errors name the parameter
        rcl = _rcl_opinion(args.params_file)
    for name, param in parameters().items():
        if args.grep and args.grep not in name:
            continue
        value = values.get(name, param.default)
        mark = "*" if name in values else " "
        shown = f"{value!r}" if value is not None else f"not set ({param.type})"
        print(f"{mark} {name} = {shown}\n      {param.description}")
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


def register(sub) -> None:
    """Add this module's commands to the ``vla-pruner`` subcommands."""
    p = sub.add_parser("params", help="the node's parameters with defaults and descriptions; validate a YAML")
    p.add_argument("params_file", nargs="?", default=None, help="a ROS 2 parameter file to validate and show")
    p.add_argument("--grep", default=None, help="only parameters whose name contains this")
    p.set_defaults(func=cmd_params)
