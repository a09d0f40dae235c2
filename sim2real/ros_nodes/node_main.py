"""The common ``main`` of the deploy nodes: create the node from ``--ros-args``, spin, stop cleanly."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from sim2real.core.files import CheckpointError
from sim2real.ros_nodes.transport import Node, create_node

T = TypeVar("T")


def declare_config(node: Node, cls: type[T], descriptions: dict[str, str],
                   choices: dict[str, list[Any]] | None = None) -> T:  # fmt: skip
    """An instance of the dataclass ``cls`` whose every field is a declared node parameter.

    Each field becomes a parameter of the same name, typed by its default, described by ``descriptions`` and
    restricted to ``choices[name]`` when given; the dataclass's own checks then run on the values.
    """
    defaults = cls()
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        kw: dict[str, Any] = {"choices": choices[f.name]} if choices and f.name in choices else {}
        values[f.name] = node.declare_parameter(f.name, getattr(defaults, f.name), descriptions.get(f.name, ""), **kw)
    return cls(**values)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (launch escalation, systemd) stops like Ctrl-C: cleanup runs


def _drain(node: Node, seconds: float) -> None:
    """Keep taking messages for ``seconds`` after the stop request (a recorder catches what is in flight)."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            node.spin_once(0.02)
    except KeyboardInterrupt:  # a second Ctrl-C: stop now
        pass


def run_node(name: str, build: Callable[[Node], Any], argv: list[str] | None = None) -> int:
    """Create node ``name`` (the process's ``--ros-args`` when ``argv`` is None), ``build(node)``, spin.

    SIGINT and SIGTERM end the spin; a built object with ``drain_s`` keeps spinning that long first (messages
    in flight), and its ``close()`` (if any) runs in every case. Returns the
    exit status: 0 after a clean stop, 2 when the node cannot start (bad parameter, missing/corrupt file).
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm)
    # A process started in the background of a non-interactive shell inherits SIGINT as *ignored*; a node must
    # still stop on Ctrl-C / the launcher's SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not logging.getLogger().handlers:  # node logs on stderr, ROS-like: [LEVEL] [name]: message
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    built = None
    try:
        with create_node(name, argv=argv) as node:
            built = build(node)
            try:
                node.spin()
            except KeyboardInterrupt:
                _drain(node, float(getattr(built, "drain_s", 0.0)))
    except KeyboardInterrupt:
        return 0
    except (CheckpointError, ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    finally:
        close = getattr(built, "close", None)
        if close is not None:
            close()
    return 0
