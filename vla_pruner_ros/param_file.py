"""ROS 2 parameter files and ``-p`` overrides, read the way rcl reads them.

rcl (behind ``--params-file``, ``-p name:=value`` and ``ros2 launch``) is not PyYAML. It types every
unquoted scalar itself: the YAML 1.1 boolean words (``y n yes no on off true false``, each also
capitalised or in capitals) are booleans; then a C ``strtol`` integer (base 0: ``0x1f`` is hex,
``017`` octal), then a C ``strtod`` double (``1e3``, ``.5``, ``inf``, ``.nan``; out of range: a
string); anything else, and every quoted scalar, is a string. There is no null (``null`` is the
string "null"), an unquoted empty value is an error, every item of a list must have the same type,
and a node's parameters sit under ``<node>: ros__parameters:``. A parameter declared as a double
refuses an integer (``rate_hz: 15`` must be ``15.0``). PyYAML accepts files rcl refuses, so the
node's own file reading goes through here: every refusal names the file, line, key and fix.

``ros/startup.py`` also runs the real parser (through rclpy) for a second opinion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import SettingsError

BOOL_WORDS = {w: value for value, words in ((True, ("y", "yes", "true", "on")), (False, ("n", "no", "false", "off")))
              for base in words for w in (base, base.capitalize(), base.upper())}
_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_DEC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX = re.compile(r"[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")
_NONFINITE = re.compile(r"[+-]?(inf|infinity|nan)", re.IGNORECASE)
_YAML_SPECIAL = {".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
                 **{f"{s}.{w}": (-math.inf if s == "-" else math.inf)
                    for s in ("", "+", "-") for w in ("inf", "Inf", "INF")}}
KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a double", str: "a string"}
NODE_KEY = "ros__parameters"


def rcl_scalar(text: str, quoted: bool = False) -> bool | int | float | str:
    """The value rcl gives one scalar: bool, int (int64), float or str, by its rules above."""
    if quoted:
        return text
    if text in BOOL_WORDS:
        return BOOL_WORDS[text]
    if _INT.fullmatch(text):
        digits = text.lstrip("+-")
        base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") and len(digits) > 1 else 10
        value = (-1 if text.startswith("-") else 1) * int(digits, base)
        if -2**63 <= value < 2**63:  # else strtol sets ERANGE and rcl tries a double
            return value
    if text in _YAML_SPECIAL:
        return _YAML_SPECIAL[text]
    if _NONFINITE.fullmatch(text):
        return float(text)
    if _DEC.fullmatch(text) or _HEX.fullmatch(text):
        value = float(text) if _DEC.fullmatch(text) else float.fromhex(text)
        mantissa = re.split(r"[eEpP]", text)[0] if _DEC.fullmatch(text) else text[2:]
        underflow = (value == 0.0 and any(c in "123456789abcdefABCDEF" for c in mantissa.lstrip("+-0xX"))) or (
            0.0 < abs(value) < 2.2250738585072014e-308)
        if not math.isinf(value) and not underflow:  # strtod sets ERANGE: rcl falls back to a string
            return value
    return text


class ParamFileError(SettingsError):
    """A parameter file or override that rcl refuses, or reads otherwise than the parameter needs."""


def _where(source: str, node: yaml.Node | None) -> str:
    return f"{source}:{node.start_mark.line + 1}" if node is not None else source


def _value(node: yaml.Node, key: str, source: str) -> Any:
    """A parameter value by rcl's rules; lists must be flat and of one type."""
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.value == "":
            raise ParamFileError(f"{_where(source, node)}: {key} has no value (rcl refuses an empty value); write "
                                 f"{key}: '' for an empty string, or leave the line out for the default")
        return rcl_scalar(node.value, node.style in ("'", '"'))
    if isinstance(node, yaml.MappingNode):
        raise ParamFileError(f"{_where(source, node)}: {key} is a mapping inside a list; expected a value")
    items = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode):
            raise ParamFileError(f"{_where(source, item)}: {key} holds a nested list or mapping; ROS 2 parameters "
                                 "are flat lists of one type")
        items.append((item, _value(item, key, source)))
    if not items:
        raise ParamFileError(f"{_where(source, node)}: {key} is an empty list, which has no type for rcl; leave the "
                             "line out for the default")
    kinds = {type(v) for _, v in items}
    if len(kinds) > 1:
        raise ParamFileError(f"{_where(source, node)}: {key}: {_mixed_list(key, items)}")
    return [v for _, v in items]


def _mixed_list(key: str, items: list[tuple[yaml.ScalarNode, Any]]) -> str:
    kinds = {type(v) for _, v in items}
    words = [n.value for n, v in items if isinstance(v, bool) and n.style is None]
    if str in kinds or words:
        read = ", ".join(f"{w!r} as a boolean" for w in words) or "numbers as numbers"
        quoted = ", ".join(repr(n.value) for n, _ in items)
        return (f"rcl reads {read} (YAML 1.1), so this list mixes types, which rcl refuses; quote every item: "
                f"{key}: [{quoted}]")
    if kinds == {int, float}:
        fixed = ", ".join(repr(float(v)) for _, v in items)
        return f"the list mixes integers and doubles, which rcl refuses; write every number as a double: [{fixed}]"
    return f"the list mixes {' and '.join(sorted(KIND_NAMES[k] for k in kinds))}, which rcl refuses"


def _flatten(prefix: str, node: yaml.Node, source: str, out: dict[str, tuple[Any, yaml.Node]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _flatten(f"{prefix}{key_node.value}.", value_node, source, out)
    else:
        out[prefix[:-1]] = (_value(node, prefix[:-1], source), node)


def _node_sections(root: yaml.Node, source: str) -> list[tuple[str, yaml.Node]]:
    """(fully qualified node name, its ros__parameters mapping) for every node in the file."""
    sections = []

    def walk(name: str, node: yaml.Node) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise ParamFileError(f"{_where(source, node)}: {name or 'the file'} must map node names to "
                                 f"'{NODE_KEY}:' (rcl: a value before {NODE_KEY})")
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key == NODE_KEY:
                if not isinstance(value_node, yaml.MappingNode):
                    raise ParamFileError(f"{_where(source, value_node)}: {name}: {NODE_KEY} must be a mapping of "
                                         "parameter names to values")
                sections.append((name, value_node))
            else:
                walk(f"{name}/{key}".replace("//", "/") if name else key, value_node)

    walk("", root)
    if not sections:
        raise ParamFileError(f"{source} has no '<node>: {NODE_KEY}:' section; it is not a ROS 2 parameter file")
    return sections


def applies_to(section: str, node_name: str) -> bool:
    """Whether a file's node key (``vla_node``, ``/ns/vla_node``, ``/**``, ``/**/vla_node``) names the node."""
    last = section.rstrip("/").rsplit("/", 1)[-1]
    return last in (node_name, "**", "*")


@dataclass(frozen=True)
class ParamType:
    """A declared parameter's rcl type: ``kind`` bool, int, float or str, or ``list`` of ``item``."""

    kind: type
    item: type | None = None

    def __str__(self) -> str:
        return f"a list of {KIND_NAMES[self.item][2:]}s" if self.kind is list else KIND_NAMES[self.kind]


def check_types(values: dict[str, Any], declared: dict[str, ParamType], where: dict[str, str] | None = None) -> None:
    """Refuse a value whose rcl type differs from the declared parameter's (as rclpy would)."""
    for name, value in values.items():
        if name not in declared:
            continue
        want, at = declared[name], (where or {}).get(name, "")
        prefix = f"{at}: " if at else ""
        if want.kind is list:
            if not isinstance(value, list):
                raise ParamFileError(f"{prefix}{name}={value!r} is {KIND_NAMES[type(value)]}; expected {want}")
            got = type(value[0]) if value else want.item
            if got is not want.item:
                fix = (f"; write every number as a double: {[float(v) for v in value]}" if want.item is float and
                       got is int else "")
                raise ParamFileError(f"{prefix}{name}: rcl reads a list of {KIND_NAMES[got][2:]}s; the parameter is "
                                     f"{want}{fix}")
            continue
        if isinstance(value, list):
            raise ParamFileError(f"{prefix}{name} is a list; expected {want}")
        if type(value) is want.kind:
            continue
        if want.kind is float and type(value) is int:
            fix = f"write {float(value)!r}"
        elif want.kind is str and isinstance(value, bool):
            fix = "rcl reads this YAML 1.1 word as a boolean; quote it"
        elif want.kind is str:
            fix = f"quote it: '{value}'"
        elif value == "null":
            fix = "ROS 2 parameters cannot be null; leave the line out for the default"
        else:
            fix = f"expected {want}"
        raise ParamFileError(f"{prefix}{name}={value!r} is {KIND_NAMES[type(value)]} to rcl, but the parameter is "
                             f"{want}: {fix}")


def read_param_file(path: str | Path, node_name: str = "vla_node", declared: dict[str, ParamType] | None = None
                    ) -> dict[str, Any]:
    """The parameters of ``node_name`` (sections naming it or ``/**``, later ones winning), typed as rcl
    types them; the whole file is checked by rcl's rules, and ``declared`` (name -> ParamType) by type."""
    path = Path(path)
    try:
        root = yaml.compose(path.read_text())
    except FileNotFoundError:
        raise ParamFileError(f"parameter file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ParamFileError(f"parameter file {path} is not valid YAML: {err}") from None
    if root is None:
        raise ParamFileError(f"parameter file {path} is empty")
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    found = False
    for section, params in _node_sections(root, str(path)):
        flat: dict[str, tuple[Any, yaml.Node]] = {}
        _flatten("", params, str(path), flat)
        if applies_to(section, node_name):
            found = True
            for name, (value, node) in flat.items():
                values[name] = value
                where[name] = _where(str(path), node)
    if not found:
        raise ParamFileError(f"parameter file {path} has no {NODE_KEY} for {node_name!r} or '/**'")
    if declared is not None:
        check_types(values, declared, where)
    return values


def read_override(text: str) -> tuple[str, Any]:
    """``name:=value`` of a ``-p`` argument, the value typed by rcl's rules."""
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise ParamFileError(f"-p {text!r}: expected NAME:=VALUE")
    if value == "":
        raise ParamFileError(f"-p {text!r}: rcl refuses an empty value; for an empty string write -p {name}:=\"''\" "
                             "in a shell")
    try:
        node = yaml.compose(value)
    except yaml.YAMLError as err:
        raise ParamFileError(f"-p {text!r}: the value is not valid YAML ({err})") from None
    if isinstance(node, yaml.MappingNode):
        raise ParamFileError(f"-p {text!r}: the value is a mapping; expected a value or a list")
    return name, _value(node, name, f"-p {name}")


def check_ros_args(args: Sequence[str], declared: dict[str, ParamType], node_name: str = "vla_node") -> None:
    """Check the ``--params-file`` and ``-p`` arguments of a node's command line by rcl's rules before
    rcl sees them, so a refusal names the key and the fix."""
    args = list(args)
    if "--ros-args" not in args:
        return
    i, end = args.index("--ros-args") + 1, len(args)
    while i < end:
        arg = args[i]
        if arg == "--":
            break
        if arg in ("-p", "--param") and i + 1 < end:
            name, value = read_override(args[i + 1])
            check_types({name: value}, declared, {name: f"-p {args[i + 1]}"})
            i += 2
        elif arg == "--params-file" and i + 1 < end:
            try:
                read_param_file(args[i + 1], node_name, declared)
            except ParamFileError as err:
                if "has no ros__parameters for" not in str(err):  # a file for other nodes is fine
                    raise
            i += 2
        else:
            i += 1
