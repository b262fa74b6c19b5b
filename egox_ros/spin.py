"""The `main()` of every long-running egox node: init, build, spin until SIGINT, clean up."""
from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from egox_model.errors import ConfigError

__all__ = ["spin_node"]


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Run `make_node()` under rclpy.spin; SIGINT and external shutdown end it quietly.

    A ConfigError while building the node is logged as fatal under `name` and exits with
    status 2; the node is always destroyed (its own destroy_node drains or closes what it
    holds) and rclpy shut down.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as err:
        rclpy.logging.get_logger(name).fatal(f"invalid configuration: {err}")
        raise SystemExit(2) from err
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
