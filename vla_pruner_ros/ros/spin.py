"""The ``main`` of a node process: init, build, spin, report start-up errors in one line, shut down."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
import rclpy.exceptions
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def run_node(make: Callable[[], Node], name: str, errors: tuple[type[BaseException], ...],
             args: list[str] | None = None) -> int:
    """Exit status 2 with ``name: error: ...`` for a start-up error in ``errors``; 0 on shutdown.

    One executor thread: rclpy's MultiThreadedExecutor contends for the GIL with the nodes' worker
    threads so hard that a 60 Hz camera made a 0.2 s policy tick take seconds (measured); the
    callbacks here are light and the heavy work runs on each node's own thread.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (*errors, rclpy.exceptions.InvalidParameterTypeException) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
