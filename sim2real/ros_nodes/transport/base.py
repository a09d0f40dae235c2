"""The backend-neutral Node API: QoS profiles, publishers, subscriptions, timers, parameters, the executor loop.

Nodes (policy, simulated robot, recorder) are written once against :class:`Node`;
:func:`~sim2real.ros_nodes.transport.factory.create_node` picks the
backend: ``rclpy`` on a ROS 2 machine (where ``import rclpy`` works), otherwise ``dds`` (Cyclone DDS speaking the
ROS 2 wire format, so real ROS 2 nodes and tools see the topics). ``SIM2REAL_ROS_BACKEND=dds|rclpy`` chooses one
when the code asks for ``auto``.

Example::

    from sim2real.ros_nodes import messages as m
    from sim2real.ros_nodes.transport import SENSOR_DATA, create_node

    with create_node("echo", namespace="/cf1") as node:
        rate = node.declare_parameter("rate_hz", 50.0, "loop rate", min=1.0, max=1000.0)
        pub = node.create_publisher(m.Twist, "cmd_vel")                  # /cf1/cmd_vel, reliable, depth 10
        node.create_subscription(m.Odometry, "odom", print, SENSOR_DATA)  # /cf1/odom, best effort, depth 5
        node.create_timer(1.0 / rate, lambda: pub.publish(m.Twist()))
        node.spin()                                                       # until shutdown() or Ctrl-C
"""

from __future__ import annotations

import abc
import importlib
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from cyclonedds.idl import IdlStruct

from sim2real.ros_nodes import messages
from sim2real.ros_nodes.transport.names import (
    apply_remaps,
    fully_qualified_node_name,
    normalize_namespace,
    resolve_topic_name,
    validate_node_name,
)
from sim2real.ros_nodes.transport.params import ParameterCallback, ParameterSpec, RosArgs, SetResult, parse_ros_args

__all__ = [
    "BACKEND_ENV",
    "DEFAULT",
    "LATCHED",
    "SENSOR_DATA",
    "Node",
    "Publisher",
    "QoS",
    "Subscription",
    "Timer",
    "TimerSchedule",
    "select_backend",
    "source_time_ns",
]

MsgT = TypeVar("MsgT", bound=IdlStruct)
BACKEND_ENV = "SIM2REAL_ROS_BACKEND"
"""Environment variable choosing the backend when the code asks for ``auto``: ``dds`` or ``rclpy``."""
RCLPY_HINT = (
    "source a ROS 2 installation first (`source /opt/ros/<distro>/setup.bash`, Humble or newer; rclpy is not on "
    "PyPI), or use the dds backend (`pip install cyclonedds`, SIM2REAL_ROS_BACKEND=dds)"
)


# ------------------------------------------------------------------------------------------------ QoS
@dataclass(frozen=True)
class QoS:
    """A ROS 2 QoS profile (history is always keep-last ``depth``).

    Attributes:
        reliability: ``best_effort`` (sensor streams: drop rather than delay) or ``reliable``.
        depth: Keep-last history depth (writer cache, reader queue).
        durability: ``volatile`` or ``transient_local`` (late-joining readers get the last ``depth`` samples, if
            their reader asks for it too).
    """

    reliability: Literal["best_effort", "reliable"] = "reliable"
    depth: int = 10
    durability: Literal["volatile", "transient_local"] = "volatile"

    def __post_init__(self) -> None:
        if self.reliability not in ("best_effort", "reliable"):
            raise ValueError(f"QoS reliability {self.reliability!r}: use 'best_effort' or 'reliable'")
        if self.durability not in ("volatile", "transient_local"):
            raise ValueError(f"QoS durability {self.durability!r}: use 'volatile' or 'transient_local'")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"QoS depth must be a positive int, got {self.depth!r}")

    @classmethod
    def coerce(cls, qos: QoS | int) -> QoS:
        """A profile from a profile or an int depth (rclpy's ``create_publisher(T, topic, 10)``: reliable)."""
        if isinstance(qos, QoS):
            return qos
        if isinstance(qos, int) and not isinstance(qos, bool):
            return cls(depth=qos)
        raise TypeError(f"qos must be a QoS profile or an int depth, got {type(qos).__name__}")


SENSOR_DATA = QoS("best_effort", 5, "volatile")
"""``rclpy.qos.qos_profile_sensor_data``: best effort, keep last 5, volatile (robot state streams)."""
DEFAULT = QoS("reliable", 10, "volatile")
"""ROS's default profile: reliable, keep last 10, volatile (commands)."""
LATCHED = QoS("reliable", 1, "transient_local")
"""Reliable, keep last 1, transient local: e-stop and status that a late-joining node must still see."""


# ------------------------------------------------------------------------------------------------ entities
class Publisher(abc.ABC, Generic[MsgT]):
    """Publishes messages of one type on one topic (from :meth:`Node.create_publisher`)."""

    msg_type: type[MsgT]
    topic_name: str
    """Fully-qualified ROS name (``/cf1/odom``)."""
    qos: QoS

    def _check(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"{self.topic_name} carries {self.msg_type.__name__}, got {type(msg).__name__}")

    @abc.abstractmethod
    def publish(self, msg: MsgT) -> None:
        """Send one message.

        Raises:
            TypeError: If ``msg`` is not a ``msg_type``.
        """

    @property
    @abc.abstractmethod
    def subscription_count(self) -> int:
        """Number of matched subscriptions (readers with compatible QoS) in the graph."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the publisher from the graph."""


class Subscription(abc.ABC, Generic[MsgT]):
    """Delivers messages of one topic to a callback, from the node's executor (:meth:`Node.spin_once`)."""

    msg_type: type[MsgT]
    topic_name: str
    qos: QoS
    callback: Callable[[MsgT], Any]

    @property
    @abc.abstractmethod
    def publisher_count(self) -> int:
        """Number of matched publishers."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Remove the subscription from the graph."""


class TimerSchedule:
    """Drift-free periodic deadlines on the monotonic clock.

    The next deadline is the previous deadline plus the period (never "now + period"), so a late call does not
    shift later ones. If the loop is late by one period or more, the missed ticks are skipped (not run in a
    burst) and counted as overruns, as ROS timers do.

    Args:
        period_s: Period in seconds (> 0).
        start_s: Monotonic time the timer starts at; the first deadline is ``start_s + period_s``.
    """

    def __init__(self, period_s: float, start_s: float) -> None:
        if not (isinstance(period_s, (int, float)) and math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"timer period must be a positive finite number of seconds, got {period_s!r}")
        self.period_s = float(period_s)
        self.next_s = start_s + self.period_s
        self.overruns = 0
        self.calls = 0
        self.late_s = 0.0  # how late the last deadline was served (s after it)
        self.worst_late_s = 0.0  # the latest a deadline was served

    def advance(self, now_s: float) -> int:
        """Move past the deadline just served; returns the number of ticks skipped because ``now_s`` is late."""
        self.calls += 1
        self.late_s = now_s - self.next_s
        self.worst_late_s = max(self.worst_late_s, self.late_s)
        self.next_s += self.period_s
        if now_s < self.next_s:
            return 0
        missed = int((now_s - self.next_s) // self.period_s) + 1
        self.next_s += missed * self.period_s
        self.overruns += missed
        return missed

    def reset(self, now_s: float) -> None:
        """Restart the phase: next deadline ``now_s + period``."""
        self.next_s = now_s + self.period_s


class Timer(abc.ABC):
    """A periodic callback (from :meth:`Node.create_timer`); backends keep its deadlines in ``schedule``."""

    callback: Callable[[], Any]
    schedule: TimerSchedule

    @property
    def period_s(self) -> float:
        """The period in seconds."""
        return self.schedule.period_s

    @property
    def overruns(self) -> int:
        """Ticks skipped because a callback (or anything else in the loop) ran past a whole period."""
        return self.schedule.overruns

    @property
    @abc.abstractmethod
    def is_canceled(self) -> bool:
        """Whether :meth:`cancel` was called."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the timer (it can be dropped afterwards)."""


def source_time_ns(msg: Any) -> int | None:
    """When the publisher wrote a received ``msg`` [ns since the epoch, the publisher's clock], or None if unknown.

    Both backends attach the middleware's sample info to the messages they deliver (Cyclone DDS's source timestamp;
    rclpy's ``MessageInfo`` where rclpy passes one). Unlike the reception time, it does not bunch up when the
    receiver is paused, so it is what a recording keeps as a message's publish time (as ``ros2 bag record`` does).
    """
    stamp = getattr(getattr(msg, "sample_info", None), "source_timestamp", None)
    return int(stamp) if isinstance(stamp, int) and stamp > 0 else None


def callable_name(cb: Callable[..., Any]) -> str:
    """A readable name for a callback in log messages (``PolicyNode._on_odom``, ``<lambda>``)."""
    return getattr(cb, "__qualname__", None) or getattr(cb, "__name__", None) or repr(cb)


# ------------------------------------------------------------------------------------------------ node
class Node(abc.ABC):
    """A ROS 2 node: name and namespace, topics, timers, parameters and a single-threaded executor.

    Args:
        name: Node name (one token, e.g. ``policy``); ``-r __node:=x`` in ``argv`` overrides it.
        namespace: ``""``/``"/"`` or ``/cf1``; ``-r __ns:=/x`` overrides it.
        argv: Program arguments (``sys.argv[1:]`` when ``None``); their ``--ros-args`` part gives parameter
            overrides, remaps, name/namespace and log level.
        on_callback_error: ``log`` (default: log the exception with the callback's name and keep spinning) or
            ``raise`` (let it propagate out of ``spin``/``spin_once``).

    Raises:
        InvalidNameError: On an invalid name or namespace.
        RosArgsError: On malformed ``--ros-args``.
    """

    backend: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        namespace: str = "",
        argv: Sequence[str] | None = None,
        *,
        on_callback_error: Literal["log", "raise"] = "log",
    ) -> None:
        validate_node_name(name)
        normalize_namespace(namespace)
        if on_callback_error not in ("log", "raise"):
            raise ValueError(f"on_callback_error must be 'log' or 'raise', got {on_callback_error!r}")
        self.ros_args: RosArgs = parse_ros_args(sys.argv[1:] if argv is None else argv, name, namespace)
        self.name = validate_node_name(self.ros_args.node_name or name)
        ns = self.ros_args.namespace if self.ros_args.namespace is not None else namespace
        self.namespace = normalize_namespace(ns)
        self.fully_qualified_name = fully_qualified_node_name(self.name, self.namespace)
        self.on_callback_error = on_callback_error
        self.logger = logging.getLogger(self.fully_qualified_name[1:].replace("/", "."))
        if self.ros_args.log_level:
            self.logger.setLevel(self.ros_args.log_level.upper())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fully_qualified_name} ({self.backend})>"

    # ---------------------------------------------------------------------------------------- names
    def resolve_topic_name(self, topic: str) -> str:
        """The fully-qualified name of ``topic`` for this node, after ``-r`` remapping (``odom`` -> ``/cf1/odom``).

        Raises:
            InvalidNameError: If the name is not a valid ROS topic name.
        """
        fq = resolve_topic_name(topic, self.name, self.namespace)
        return apply_remaps(fq, self.ros_args.remaps, self.name, self.namespace)

    @staticmethod
    def _check_msg_type(msg_type: Any) -> None:
        if not (isinstance(msg_type, type) and issubclass(msg_type, IdlStruct)):
            raise TypeError(f"msg_type must be a message class from sim2real.ros_nodes.messages, got {msg_type!r}")
        try:
            messages.ros_type_name(msg_type)
        except KeyError as e:
            raise TypeError(str(e).strip("'\"")) from None

    def _invoke(self, kind: str, cb: Callable[..., Any], *args: Any) -> None:
        """Run a user callback; log (or re-raise, see ``on_callback_error``) what it raises."""
        try:
            cb(*args)
        except Exception:
            if self.on_callback_error == "raise":
                raise
            self.logger.exception("%s callback %s raised; the node keeps running", kind, callable_name(cb))

    # ---------------------------------------------------------------------------------------- topics and timers
    @abc.abstractmethod
    def create_publisher(self, msg_type: type[MsgT], topic: str, qos: QoS | int = DEFAULT) -> Publisher[MsgT]:
        """A publisher of ``msg_type`` on ``topic`` (resolved against the namespace, remapped).

        Raises:
            TypeError: If ``msg_type`` is not one of :data:`messages.MESSAGE_TYPES`.
            InvalidNameError: On an invalid topic name.
        """

    @abc.abstractmethod
    def create_subscription(
        self, msg_type: type[MsgT], topic: str, callback: Callable[[MsgT], Any], qos: QoS | int = DEFAULT
    ) -> Subscription[MsgT]:
        """Call ``callback(msg)`` from the executor for each message received on ``topic``.

        Raises:
            TypeError: If ``msg_type`` is not a known message class or ``callback`` is not callable.
            InvalidNameError: On an invalid topic name.
        """

    @abc.abstractmethod
    def create_timer(self, period_s: float, callback: Callable[[], Any]) -> Timer:
        """Call ``callback()`` every ``period_s`` seconds from the executor (drift-free, see :class:`TimerSchedule`).

        Raises:
            ValueError: If the period is not a positive finite number.
        """

    # ---------------------------------------------------------------------------------------- parameters
    def declare_parameter(
        self,
        name: str,
        default: Any,
        description: str = "",
        *,
        min: float | None = None,
        max: float | None = None,
        choices: Iterable[Any] | None = None,
        read_only: bool = False,
        param_type: str | None = None,
    ) -> Any:
        """Declare a typed parameter and return its value (the command-line/file override if any, else default).

        Args:
            name: Dotted name (``limits.max_rpm``).
            default: Default value; its type is the parameter's type (bool, int, float, str or a list of one).
            description: Human description (``ros2 param describe``).
            min: Inclusive lower bound (numbers, every element of numeric lists).
            max: Inclusive upper bound.
            choices: Allowed values.
            read_only: Refuse :meth:`set_parameters` on it.
            param_type: Explicit type (``list[str]``...), needed when the default is an empty list.

        Returns:
            The value in effect.

        Raises:
            ParameterError: Bad name or type, constraint broken by the default or the override, already declared,
                or rejected by a set-parameters callback.
        """
        spec = ParameterSpec.make(
            name, default, description, min=min, max=max, choices=choices, read_only=read_only, param_type=param_type
        )
        return self._declare(spec)

    @abc.abstractmethod
    def _declare(self, spec: ParameterSpec) -> Any:
        """Backend part of :meth:`declare_parameter`: register ``spec``, return the value in effect."""

    @abc.abstractmethod
    def get_parameter(self, name: str) -> Any:
        """The current value of a declared parameter.

        Raises:
            ParameterError: If it is not declared.
        """

    @abc.abstractmethod
    def set_parameters(self, values: dict[str, Any]) -> list[SetResult]:
        """Set parameters one by one: type/range/choices checks, read-only check, then the callbacks.

        Returns:
            One :class:`SetResult` per parameter, in order; a failed one leaves the old value.
        """

    @abc.abstractmethod
    def add_on_set_parameters_callback(self, callback: ParameterCallback) -> None:
        """Register ``callback({name: value})`` run before a parameter changes (return ``SetResult``/bool)."""

    # ---------------------------------------------------------------------------------------- time
    def now(self) -> messages.Time:
        """The node clock as a ``builtin_interfaces/Time`` (wall clock, or ROS time on the rclpy backend)."""
        return messages.Time.now()

    def now_s(self) -> float:
        """The node clock in seconds (for stamps; use :meth:`monotonic_s` for timeouts and watchdogs)."""
        return time.time()

    @staticmethod
    def monotonic_s() -> float:
        """A monotonic clock in seconds (never jumps: watchdogs, rate measurement)."""
        return time.monotonic()

    # ---------------------------------------------------------------------------------------- executor
    @property
    @abc.abstractmethod
    def ok(self) -> bool:
        """False once :meth:`shutdown` was called."""

    @abc.abstractmethod
    def spin_once(self, timeout_s: float | None = None) -> int:
        """Wait for the next due timer or incoming message, then run the callbacks that are ready.

        Args:
            timeout_s: Longest wait in seconds (``None``: no limit; ``0``: only what is ready now).

        Returns:
            The number of callbacks run (0 on timeout or after shutdown).
        """

    def spin(self) -> None:
        """Run callbacks until :meth:`shutdown` (Ctrl-C raises ``KeyboardInterrupt`` within ~0.1 s)."""
        while self.ok:
            self.spin_once(0.1)

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop spinning and release publishers, subscriptions and timers (idempotent)."""

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# ------------------------------------------------------------------------------------------------ factory
def rclpy_importable() -> tuple[bool, str]:
    """Whether ``import rclpy`` works here, and the error if not."""
    try:
        importlib.import_module("rclpy")
    except Exception as e:  # ImportError, or a broken ROS install (wrong Python version, missing .so)
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def select_backend(backend: str = "auto") -> str:
    """Resolve ``auto`` to a backend: ``$SIM2REAL_ROS_BACKEND`` if set, else ``rclpy`` if it imports, else ``dds``.

    Args:
        backend: ``auto``, ``rclpy`` or ``dds`` (an explicit choice wins over the environment variable).

    Returns:
        ``rclpy`` or ``dds``.

    Raises:
        ValueError: On an unknown backend name (argument or environment variable).
        RuntimeError: If ``rclpy`` is asked for and cannot be imported (the message says what to install/source).
    """
    choice = backend
    if choice == "auto":
        choice = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
        if choice not in ("auto", "dds", "rclpy"):
            raise ValueError(f"{BACKEND_ENV}={choice!r}: use 'dds' or 'rclpy' (or unset it for auto)")
    if choice not in ("auto", "dds", "rclpy"):
        raise ValueError(f"unknown ROS backend {backend!r}: use 'auto', 'dds' or 'rclpy'")
    if choice == "dds":
        return "dds"
    ok, error = rclpy_importable()
    if ok:
        return "rclpy"
    if choice == "rclpy":
        raise RuntimeError(f"the rclpy backend needs ROS 2's rclpy, which does not import ({error}): {RCLPY_HINT}")
    return "dds"
