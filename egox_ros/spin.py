"""The `main()` of every egox console script that runs ROS: init, build, spin, clean up.

A user's mistake never ends in a traceback: a bad `--ros-args`, a parameter override of the
wrong type, an invalid configuration or input (`egox_model.errors.EgoxError`) end as one
fatal log line naming the parameter, the value and what is allowed, and exit status 2.
SIGINT and an external shutdown end quietly with status 0.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Callable, Iterator

import rclpy
import rclpy.logging
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              NotInitializedException, ParameterException)
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from egox_model.errors import ConfigError, EgoxError

__all__ = ["init_error", "parameter_error", "ros_main", "spin_node"]

ROS_ARGS_HELP = ("--ros-args takes -p NAME:=VALUE, -r FROM:=TO, --params-file FILE, "
                 "--log-level [LOGGER:=]LEVEL")

# ROS parameter types: what a value is, and how to write one on the command line (YAML).
_TYPE_NAMES = {"BOOL": "a bool", "INTEGER": "an integer", "DOUBLE": "a float",
               "STRING": "a string", "BYTE_ARRAY": "a byte list", "BOOL_ARRAY": "a bool list",
               "INTEGER_ARRAY": "an integer list", "DOUBLE_ARRAY": "a float list",
               "STRING_ARRAY": "a string list"}
_TYPE_HINTS = {
    "BOOL": "true or false",
    "INTEGER": "e.g. 3",
    "DOUBLE": "written with a decimal point, e.g. 2.0 not 2",
    "STRING": "quoted if it would read as a number or bool, e.g. \"'42'\"",
    "BOOL_ARRAY": "e.g. \"[true, false]\"",
    "INTEGER_ARRAY": "e.g. \"[1, 2]\"",
    "DOUBLE_ARRAY": "e.g. \"[1.0, 2.5]\"",
    "STRING_ARRAY": "e.g. \"[/a, /b]\"",
}
_TYPE_MESSAGE = re.compile(r"Trying to set parameter '(?P<name>.*)' to '(?P<value>.*)' of type "
                           r"'(?P<got>\w+)', expecting type '(?P<want>\w+)'")
_VALUE_MESSAGE = re.compile(r"Invalid parameter value \((?P<value>.*)\) for parameter\. "
                            r"Reason: (?P<reason>.*): (?P<name>[^:]*)$", re.S)
_C_LOCATION = re.compile(r",? at [^,]*\.c:\d+")


def parameter_error(err: ParameterException) -> ConfigError:
    """rclpy's parameter exception (rclpy keeps no fields, only its message) -> ConfigError
    whose message names the parameter, the value and what is allowed."""
    text = str(err)
    if isinstance(err, InvalidParameterTypeException) and (m := _TYPE_MESSAGE.match(text)):
        name, value, got, want = m.group("name", "value", "got", "want")
        shown = repr(value) if got == "STRING" else value       # as ConfigError shows values
        wanted = _TYPE_NAMES.get(want, want.lower())
        if want in _TYPE_HINTS:
            wanted += f" ({_TYPE_HINTS[want]})"
        return ConfigError(f"parameter {name}={shown} is {_TYPE_NAMES.get(got, got.lower())}; "
                           f"it must be {wanted}")
    if isinstance(err, InvalidParameterValueException) and (m := _VALUE_MESSAGE.match(text)):
        name, value, reason = m.group("name", "value", "reason")
        return ConfigError(f"parameter {name}={value} is invalid: {reason}")
    return ConfigError(text)


def init_error(err: Exception) -> ConfigError:
    """rclpy.init's error for bad `--ros-args` or ROS environment (RCLError,
    UnknownROSArgsError, RCLInvalidROSArgsError) -> ConfigError, without rcl's C file
    locations."""
    if isinstance(err, _rclpy.UnknownROSArgsError):
        return ConfigError(f"unknown --ros-args {err}; {ROS_ARGS_HELP}")
    text = _C_LOCATION.sub("", str(err)).removeprefix("failed to initialize rcl: ").strip()
    if "parse" in text.lower() or isinstance(err, _rclpy.RCLInvalidROSArgsError):
        return ConfigError(f"invalid --ros-args: {text} ({ROS_ARGS_HELP})")
    return ConfigError(f"cannot start ROS: {text}")


def _init(args: list[str] | None) -> None:
    """rclpy.init(args); a failure raises ConfigError (see init_error).

    rcl also logs "Failed to parse global arguments" on its own logger when the arguments
    are bad; that logger is muted during init so the user reads one line, ours. Levels the
    arguments set (`--log-level rcl:=debug`) are kept.
    """
    previous = rclpy.logging.get_logger_level("rcl")
    rclpy.logging.set_logger_level("rcl", rclpy.logging.LoggingSeverity.FATAL)
    try:
        rclpy.init(args=args)
    except (_rclpy.RCLError, _rclpy.UnknownROSArgsError, _rclpy.RCLInvalidROSArgsError) as err:
        raise init_error(err) from err
    finally:
        if rclpy.logging.get_logger_level("rcl") == rclpy.logging.LoggingSeverity.FATAL:
            rclpy.logging.set_logger_level("rcl", previous)


@contextmanager
def ros_main(name: str, args: list[str] | None = None) -> Iterator[None]:
    """rclpy.init(args) before the body, rclpy.try_shutdown() after it, for a console script.

    In the body, SIGINT (KeyboardInterrupt, or an rclpy call failing on the context that
    rclpy's SIGINT handler shut down) and an external shutdown end quietly. A user
    error, here or in the body, is logged as one fatal line under `name` and raises
    SystemExit(2): a bad `--ros-args` (see init_error), rclpy's parameter exceptions (an
    override of the wrong type, see parameter_error) and every `EgoxError` (ConfigError,
    InputError, ...). Nodes the body leaves behind, even half-built ones, are destroyed by
    the context's shutdown.
    """
    logger = rclpy.logging.get_logger(name)
    try:
        _init(args)
    except ConfigError as err:
        logger.fatal(str(err))
        raise SystemExit(2) from err
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (_rclpy.RCLError, NotInitializedException):
        if rclpy.ok():
            raise
        # rclpy's SIGINT handler shut the context down and an rclpy call (in progress, or
        # made before Python raised KeyboardInterrupt) failed on it: that is the shutdown.
    except (EgoxError, ParameterException) as err:
        if isinstance(err, ParameterException):
            err = parameter_error(err)
        logger.fatal(str(err))
        raise SystemExit(2) from err
    finally:
        rclpy.try_shutdown()


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Run `make_node()` under rclpy.spin until SIGINT or shutdown, inside `ros_main`.

    User errors while building the node end as one fatal line and exit status 2 (see
    ros_main); the node is always destroyed (its own destroy_node drains or closes what it
    holds) before rclpy shuts down.
    """
    with ros_main(name, args):
        node = make_node()
        try:
            rclpy.spin(node)
        finally:
            node.destroy_node()
