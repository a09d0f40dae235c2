"""The common ``main`` of the deploy nodes: create the node from ``--ros-args``, spin, stop cleanly."""

from __future__ import annotations

import gc
import logging
import os
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


def realtime_priority(priority: int) -> tuple[bool, str]:
    """Run the calling thread (and the threads it starts) at ``SCHED_FIFO`` ``priority`` (1..99; 0: leave it).

    A runnable real-time thread takes a CPU from every normal one at once, so a control loop's tick is not kept
    waiting behind a learner, a simulator or a recorder on the same computer (they get the CPUs the loop leaves).
    Returns ``(as asked, what was done)`` for the log; not being permitted (no ``CAP_SYS_NICE``, no ``rtprio``
    limit) is not an error: the thread keeps its normal priority, ``as asked`` is false and the message says why.
    """
    if not (isinstance(priority, int) and 0 <= priority <= 99):
        raise ValueError(f"rt_priority must be 0..99, got {priority!r}")
    if priority == 0:
        return True, "normal scheduling (rt_priority 0)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, AttributeError, OSError) as e:
        return False, (f"normal scheduling: real-time priority {priority} is not permitted here ({e.__class__.__name__}); "
                "grant it (CAP_SYS_NICE, or rtprio in /etc/security/limits.conf) or set rt_priority:=0")  # fmt: skip
    return True, f"real-time scheduling (SCHED_FIFO {priority})"


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
    in flight), one with ``rt_priority`` spins at that real-time priority (:func:`realtime_priority`), and its
    ``close()`` (if any) runs in every case. Returns the
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
    # The imported modules' heap (torch, onnxruntime: ~2e5 objects) is never scanned again by the cyclic collector:
    # a full collection of it takes ~0.1 s, ten periods of a 100 Hz control loop. (Before the node's timers start.)
    gc.collect()
    gc.freeze()
    try:
        with create_node(name, argv=argv) as node:
            built = build(node)
            priority = getattr(built, "rt_priority", None)
            if priority is not None:  # this thread spins: the timers' callbacks run on it
                as_asked, scheduling = realtime_priority(priority)
                (node.logger.info if as_asked else node.logger.warning)("spinning with %s", scheduling)
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
