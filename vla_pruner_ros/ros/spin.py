"""The ``main`` of a node process: check the command line, init, build, spin, shut down; every start-up
error is one line and exit status 2, a signal a clean exit."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence

import rclpy
import rclpy.exceptions
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from ..errors import SettingsError, VLAPrunerError
from ..param_file import ParamType, check_ros_args

# rclpy's own parameter errors: a value of the wrong type for a declared parameter, and the like
RCLPY_PARAMETER_ERRORS = (rclpy.exceptions.InvalidParameterTypeException,
                          rclpy.exceptions.InvalidParameterValueException,
                          rclpy.exceptions.ParameterUninitializedException)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[list[str]]:
    """Hold back what C code writes to stderr (rcl logs its own copy of a refusal); yields a list that
    receives the text, which is written out again when the block ends without an exception."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield captured
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))
            if ok and captured[-1]:
                sys.stderr.write(captured[-1])


def condense_rcl_error(text: str) -> str:
    """rcl's error text in one line, without 'failed to initialize rcl:' and ', at /path/file.c:N'."""
    text = re.sub(r",? at \S+\.c:\d+", "", text.replace("\n", " "))
    return re.sub(r"^failed to initialize rcl: ", "", text).strip()


def rcl_refusal(ros_args: Sequence[str]) -> str | None:
    """What rcl's own parser says of these arguments (``--ros-args ...``); None when it accepts them."""
    context = Context()
    try:
        with quiet_stderr():
            rclpy.init(args=["rcl_check", *ros_args], context=context, signal_handler_options=None)
    except Exception as err:  # rclpy's RCLError is private to it
        return condense_rcl_error(str(err))
    rclpy.shutdown(context=context)
    return None


def init(args: Sequence[str] | None, declared: dict[str, ParamType] | None = None) -> None:
    """rclpy.init, after checking ``--params-file`` and ``-p`` arguments by rcl's rules (a refusal names
    the key and the fix); an rcl refusal becomes a ``SettingsError`` of one line."""
    argv = list(sys.argv if args is None else args)
    if declared is not None:
        check_ros_args(argv, declared)
    try:
        with quiet_stderr():
            rclpy.init(args=argv)
    except Exception as err:  # rclpy's RCLError is private to it
        if "RCLError" not in type(err).__name__:
            raise
        raise SettingsError(f"rcl refused the command line: {condense_rcl_error(str(err))}") from None


def run_node(make: Callable[[], Node], name: str, args: list[str] | None = None,
             declared: dict[str, ParamType] | None = None) -> int:
    """Exit status 2 with ``name: error: ...`` for a start-up error; 0 on a signal or shutdown.

    ``declared``: the node's parameters and defaults, to check ``--params-file`` and ``-p`` by rcl's
    rules first. One executor thread: rclpy's MultiThreadedExecutor contends for the GIL with the nodes' worker threads
    so hard that a 60 Hz camera made a 0.2 s policy tick take seconds (measured); the callbacks here
    are light and the heavy work runs on each node's own thread.
    """
    node = None
    try:
        init(args, declared)
        executor = SingleThreadedExecutor()  # before the (slow) node: a signal may come at any moment
        node = make()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (VLAPrunerError, *RCLPY_PARAMETER_ERRORS) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
