"""The ``rclpy`` backend: the Node API on a real ``rclpy.node.Node`` (ROS 2 Humble or newer).

Publishers, subscriptions and timers are rclpy's, driven by an ``rclpy`` ``SingleThreadedExecutor``; parameters
are declared in rclpy with a ``ParameterDescriptor`` (description, read-only, ``FloatingPointRange``/
``IntegerRange``, choices as ``additional_constraints``) so ``ros2 param`` works, and the package's own checks
(:class:`~sim2real.ros_nodes.transport.params.ParameterSpec`) run in an rclpy set-parameters callback, followed
by the callbacks added with :meth:`RclpyNode.add_on_set_parameters_callback`. Messages are converted field by
field (:mod:`~sim2real.ros_nodes.transport.ros_convert`). Name resolution, remapping, ``--ros-args`` and the
clock (``use_sim_time``) are rcl's. Log records of :attr:`Node.logger` go to the rclpy logger (console, /rosout).

rclpy is imported when a node is created: this module imports on machines without ROS.
"""

# pyright: reportMissingImports=false
# (rclpy and rcl_interfaces exist on ROS 2 machines only; elsewhere this module is not imported.)

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, Literal

from sim2real.ros_nodes import messages
from sim2real.ros_nodes.transport.base import (
    DEFAULT,
    RCLPY_HINT,
    MsgT,
    Node,
    Publisher,
    QoS,
    Subscription,
    Timer,
    TimerSchedule,
)
from sim2real.ros_nodes.transport.names import resolve_topic_name
from sim2real.ros_nodes.transport.params import (
    ParameterCallback,
    ParameterError,
    ParameterSpec,
    SetResult,
    run_parameter_callbacks,
)
from sim2real.ros_nodes.transport.ros_convert import (
    from_ros,
    import_ros_class,
    param_type_name,
    qos_profile_fields,
    to_ros,
)

__all__ = ["RclpyNode", "to_rclpy_qos"]

_context_lock = threading.Lock()
_context_users = 0
_context_ours = False


def _rclpy() -> Any:
    try:
        import rclpy
        import rclpy.executors  # noqa: F401 - the submodules used below
        import rclpy.node  # noqa: F401
        import rclpy.parameter  # noqa: F401
    except Exception as e:
        raise RuntimeError(f"the rclpy backend needs ROS 2's rclpy ({type(e).__name__}: {e}): {RCLPY_HINT}") from e
    return rclpy


def _external_shutdown(rclpy: Any) -> type[BaseException]:
    """``rclpy.executors.ExternalShutdownException`` where it exists (an exception never raised otherwise)."""
    return getattr(rclpy.executors, "ExternalShutdownException", _NeverRaised)


class _NeverRaised(Exception):
    pass


def _acquire_context(rclpy: Any) -> None:
    """``rclpy.init`` (with the process arguments) unless the program already did; counted per node."""
    global _context_users, _context_ours
    with _context_lock:
        if not rclpy.ok():
            rclpy.init(args=sys.argv)
            _context_ours = True
        _context_users += 1


def _release_context(rclpy: Any) -> None:
    global _context_users, _context_ours
    with _context_lock:
        _context_users -= 1
        if _context_users == 0 and _context_ours:
            _context_ours = False
            if rclpy.ok():
                rclpy.shutdown()


def to_rclpy_qos(qos: QoS) -> Any:
    """The ``rclpy.qos.QoSProfile`` of a profile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    f = qos_profile_fields(qos)
    return QoSProfile(
        history=HistoryPolicy[f["history"]],
        depth=f["depth"],
        reliability=ReliabilityPolicy[f["reliability"]],
        durability=DurabilityPolicy[f["durability"]],
    )


def _plain(value: Any) -> Any:
    """Parameter values from rclpy as plain Python (``array.array`` arrays -> lists)."""
    return value if isinstance(value, (bool, int, float, str, type(None))) else list(value)


class _RosLogHandler(logging.Handler):
    """Forwards Python log records to the node's rcutils logger (console format, /rosout)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:
            self.handleError(record)


# ------------------------------------------------------------------------------------------------ entities
class RclpyPublisher(Publisher[MsgT]):
    def __init__(self, node: RclpyNode, msg_type: type[MsgT], topic: str, qos: QoS) -> None:
        self.msg_type, self.qos, self._node = msg_type, qos, node
        ros_cls = import_ros_class(messages.ros_type_name(msg_type))
        self._pub: Any = node.rcl_node.create_publisher(ros_cls, topic, to_rclpy_qos(qos))
        self.topic_name = self._pub.topic_name

    def publish(self, msg: MsgT) -> None:
        self._check(msg)
        if self._pub is None:
            raise RuntimeError(f"publisher on {self.topic_name} was destroyed")
        self._pub.publish(to_ros(msg))

    @property
    def subscription_count(self) -> int:
        return 0 if self._pub is None else int(self._pub.get_subscription_count())

    def destroy(self) -> None:
        if self._pub is not None:
            self._node.rcl_node.destroy_publisher(self._pub)
            self._pub = None


class RclpySubscription(Subscription[MsgT]):
    def __init__(
        self, node: RclpyNode, msg_type: type[MsgT], topic: str, callback: Callable[[MsgT], Any], qos: QoS
    ) -> None:
        self.msg_type, self.qos, self.callback, self._node = msg_type, qos, callback, node
        ros_cls = import_ros_class(messages.ros_type_name(msg_type))
        import rclpy.subscription

        # rclpy from Iron on passes a MessageInfo to callbacks taking two arguments (Humble: the message only)
        with_info = hasattr(rclpy.subscription.Subscription, "CallbackType")
        deliver = self._deliver_with_info if with_info else self._deliver
        self._sub: Any = node.rcl_node.create_subscription(ros_cls, topic, deliver, to_rclpy_qos(qos))
        self.topic_name = self._sub.topic_name

    def _deliver_with_info(self, ros_msg: Any, info: Any) -> None:
        self._deliver(ros_msg, info.get("source_timestamp") if isinstance(info, dict) else None)

    def _deliver(self, ros_msg: Any, source_timestamp: int | None = None) -> None:
        try:
            msg = from_ros(ros_msg, self.msg_type)
        except Exception:
            self._node.logger.exception("cannot convert a %s from %s", type(ros_msg).__name__, self.topic_name)
            return
        if source_timestamp:  # read by transport.source_time_ns, as Cyclone DDS's sample info on the dds backend
            msg.sample_info = SimpleNamespace(source_timestamp=int(source_timestamp))  # type: ignore[attr-defined]
        self._node._count += 1
        self._node._invoke("subscription", self.callback, msg)

    @property
    def publisher_count(self) -> int:
        return 0 if self._sub is None else int(self._node.rcl_node.count_publishers(self.topic_name))

    def destroy(self) -> None:
        if self._sub is not None:
            self._node.rcl_node.destroy_subscription(self._sub)
            self._sub = None


class RclpyTimer(Timer):
    """An rclpy timer; overruns are counted against the ideal schedule (rclpy skips missed ticks silently)."""

    def __init__(self, node: RclpyNode, period_s: float, callback: Callable[[], Any]) -> None:
        self.schedule = TimerSchedule(period_s, node.monotonic_s())
        self.callback, self._node = callback, node
        self._timer: Any = node.rcl_node.create_timer(self.schedule.period_s, self._fire)

    def _fire(self) -> None:
        self.schedule.advance(self._node.monotonic_s())
        self._node._count += 1
        self._node._invoke("timer", self.callback)

    @property
    def is_canceled(self) -> bool:
        return self._timer is None

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._node.rcl_node.destroy_timer(self._timer)
            self._timer = None


# ------------------------------------------------------------------------------------------------ node
class RclpyNode(Node):
    """A node on rclpy; constructor arguments as :class:`Node`.

    ``argv=None`` uses the process arguments (rcl's global arguments, as ``ros2 run``/``ros2 launch`` pass them);
    an explicit ``argv`` applies to this node only.

    Raises:
        RuntimeError: If rclpy cannot be imported (with what to source/install).
    """

    backend = "rclpy"

    def __init__(
        self,
        name: str,
        namespace: str = "",
        argv: Sequence[str] | None = None,
        *,
        on_callback_error: Literal["log", "raise"] = "log",
    ) -> None:
        super().__init__(name, namespace, argv, on_callback_error=on_callback_error)
        rclpy = self._rclpy = _rclpy()
        _acquire_context(rclpy)
        try:
            self.rcl_node: Any = rclpy.node.Node(
                name,
                namespace=namespace or "/",
                cli_args=self._cli_args(argv),
                use_global_arguments=argv is None,
            )
        except Exception:
            _release_context(rclpy)
            raise
        self.name, self.namespace = self.rcl_node.get_name(), self.rcl_node.get_namespace()
        self.fully_qualified_name = self.rcl_node.get_fully_qualified_name()
        self._executor = rclpy.executors.SingleThreadedExecutor(context=self.rcl_node.context)
        self._executor.add_node(self.rcl_node)
        self._specs: dict[str, ParameterSpec] = {}
        self._callbacks: list[ParameterCallback] = []
        self.rcl_node.add_on_set_parameters_callback(self._on_set_parameters)
        self.logger = logging.getLogger(self.fully_qualified_name[1:].replace("/", "."))
        self.logger.addHandler(_RosLogHandler(self.rcl_node.get_logger()))
        self.logger.propagate = False  # printed once, by rcutils
        if self.ros_args.log_level:
            self.logger.setLevel(self.ros_args.log_level.upper())
        self._count = 0
        self._ok = True

    @staticmethod
    def _cli_args(argv: Sequence[str] | None) -> list[str] | None:
        """Node-specific rcl arguments: the ``--ros-args`` parts of ``argv`` as one section (``None``: none)."""
        out, inside = [], False
        for arg in argv or []:
            if arg == "--ros-args":
                inside = True
            elif arg == "--" and inside:
                inside = False
            elif inside:
                out.append(arg)
        return ["--ros-args", *out] if out else None

    # ---------------------------------------------------------------------------------------- entities
    def create_publisher(self, msg_type: type[MsgT], topic: str, qos: QoS | int = DEFAULT) -> RclpyPublisher[MsgT]:
        self._check_msg_type(msg_type)
        resolve_topic_name(topic, self.name, self.namespace)  # our error messages; rcl resolves and remaps
        return RclpyPublisher(self, msg_type, topic, QoS.coerce(qos))

    def create_subscription(
        self, msg_type: type[MsgT], topic: str, callback: Callable[[MsgT], Any], qos: QoS | int = DEFAULT
    ) -> RclpySubscription[MsgT]:
        self._check_msg_type(msg_type)
        if not callable(callback):
            raise TypeError(f"subscription callback must be callable, got {callback!r}")
        resolve_topic_name(topic, self.name, self.namespace)
        return RclpySubscription(self, msg_type, topic, callback, QoS.coerce(qos))

    def create_timer(self, period_s: float, callback: Callable[[], Any]) -> RclpyTimer:
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, got {callback!r}")
        return RclpyTimer(self, period_s, callback)

    # ---------------------------------------------------------------------------------------- parameters
    def _descriptor(self, spec: ParameterSpec) -> Any:
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

        d = ParameterDescriptor(
            name=spec.name,
            type=getattr(ParameterType, "PARAMETER_" + param_type_name(spec.type)),
            description=spec.description,
            read_only=spec.read_only,
        )
        if spec.choices is not None:
            d.additional_constraints = "one of: " + ", ".join(map(str, spec.choices))
        if spec.type == "float" and (spec.min is not None or spec.max is not None):
            lo = float("-inf") if spec.min is None else float(spec.min)
            hi = float("inf") if spec.max is None else float(spec.max)
            d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
        elif spec.type == "int" and (spec.min is not None or spec.max is not None):
            lo = -(2**63) if spec.min is None else int(-(-spec.min // 1))  # ceil
            hi = 2**63 - 1 if spec.max is None else int(spec.max // 1)
            d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
        return d

    def _parameter(self, spec: ParameterSpec, value: Any) -> Any:
        return self._rclpy.parameter.Parameter(
            spec.name, getattr(self._rclpy.parameter.Parameter.Type, param_type_name(spec.type)), value
        )

    def _fix_override(self, spec: ParameterSpec) -> None:
        """Check an rcl override with our rules and retype it (``-p gain:=1`` for a float is 1.0, not an error)."""
        overrides = getattr(self.rcl_node, "_parameter_overrides", None)
        if isinstance(overrides, dict) and spec.name in overrides:
            overrides[spec.name] = self._parameter(spec, spec.coerce(_plain(overrides[spec.name].value), "override"))

    def _declare(self, spec: ParameterSpec) -> Any:
        name = spec.name
        if name in self._specs or self.rcl_node.has_parameter(name):
            raise ParameterError(f"parameter {name!r} is already declared")
        self._fix_override(spec)
        self._specs[name] = spec
        ptype = getattr(self._rclpy.parameter.Parameter.Type, param_type_name(spec.type))
        try:
            if isinstance(spec.default, list) and not spec.default:
                # rclpy infers no type from [] (it guesses BYTE_ARRAY): declare statically typed, set the empty
                # default unless an override gave a value, then make it read-only if asked
                writable = self._descriptor(spec)
                writable.read_only = False
                self.rcl_node.declare_parameter(name, ptype, writable)
                if self._raw(name) is None:
                    self.rcl_node.set_parameters([self._parameter(spec, [])])
                if spec.read_only:
                    self.rcl_node.set_descriptor(name, self._descriptor(spec))
            else:
                self.rcl_node.declare_parameter(name, spec.default, self._descriptor(spec))
        except Exception as e:  # rclpy.exceptions.InvalidParameterValueException, ...TypeException
            del self._specs[name]
            raise ParameterError(f"parameter {name!r}: {e}") from e
        return self.get_parameter(name)

    def _raw(self, name: str) -> Any:
        try:
            return self.rcl_node.get_parameter(name).value
        except Exception:  # ParameterUninitializedException (statically typed, no value yet)
            return None

    def get_parameter(self, name: str) -> Any:
        if name not in self._specs:
            raise ParameterError(f"parameter {name!r} is not declared (declared: {sorted(self._specs)})")
        return _plain(self.rcl_node.get_parameter(name).value)

    def has_parameter(self, name: str) -> bool:
        return name in self._specs

    def describe_parameter(self, name: str) -> ParameterSpec:
        """The declaration of a parameter (type, bounds, description)."""
        self.get_parameter(name)
        return self._specs[name]

    def set_parameters(self, values: dict[str, Any]) -> list[SetResult]:
        results = []
        for name, value in values.items():
            spec = self._specs.get(name)
            if spec is None:
                results.append(SetResult(False, f"parameter {name!r} is not declared"))
                continue
            try:
                param = self._parameter(spec, spec.coerce(value))
            except ParameterError as e:
                results.append(SetResult(False, str(e)))
                continue
            try:
                r = self.rcl_node.set_parameters([param])[0]
                results.append(SetResult(bool(r.successful), r.reason))
            except Exception as e:
                results.append(SetResult(False, f"parameter {name!r}: {e}"))
        return results

    def add_on_set_parameters_callback(self, callback: ParameterCallback) -> None:
        if not callable(callback):
            raise TypeError(f"parameter callback must be callable, got {callback!r}")
        self._callbacks.append(callback)

    def _on_set_parameters(self, params: list[Any]) -> Any:
        """The rclpy set-parameters callback: our type/range/choices checks on declared parameters, then the user callbacks."""
        from rcl_interfaces.msg import SetParametersResult

        values = {}
        for p in params:
            spec = self._specs.get(p.name)
            if spec is None or p.value is None:
                continue  # rclpy's own (use_sim_time...) or an uninitialized declaration
            try:
                values[p.name] = spec.coerce(_plain(p.value))
            except ParameterError as e:
                return SetParametersResult(successful=False, reason=str(e))
        verdict = run_parameter_callbacks(self._callbacks, values) if values else SetResult(True)
        return SetParametersResult(successful=verdict.successful, reason=verdict.reason)

    # ---------------------------------------------------------------------------------------- time
    def now(self) -> messages.Time:
        sec, nanosec = self.rcl_node.get_clock().now().seconds_nanoseconds()
        return messages.Time(int(sec), int(nanosec))

    def now_s(self) -> float:
        return self.rcl_node.get_clock().now().nanoseconds * 1e-9

    # ---------------------------------------------------------------------------------------- executor
    @property
    def ok(self) -> bool:
        return self._ok and bool(self._rclpy.ok(context=self.rcl_node.context))

    def spin_once(self, timeout_s: float | None = None) -> int:
        if not self.ok:
            return 0
        before = self._count
        try:
            self._executor.spin_once(timeout_sec=timeout_s)
        except _external_shutdown(self._rclpy):  # Ctrl-C, handled by rclpy's signal handler (Iron+)
            self.shutdown()
        return self._count - before

    def shutdown(self) -> None:
        if not self._ok:
            return
        self._ok = False
        self._executor.remove_node(self.rcl_node)
        self._executor.shutdown()
        self.rcl_node.destroy_node()
        for handler in list(self.logger.handlers):
            if isinstance(handler, _RosLogHandler):
                self.logger.removeHandler(handler)
        _release_context(self._rclpy)
