"""The ``dds`` backend: the Node API on Cyclone DDS, speaking the ROS 2 wire format (no ROS installation needed).

What a ROS 2 node (rmw_cyclonedds or rmw_fastrtps) expects, and what this backend does:

* DDS topic ``rt`` + the fully-qualified ROS name (``/cf1/odom`` -> ``rt/cf1/odom``);
* DDS type names ``<pkg>::msg::dds_::<Name>_``, XCDR1 final types (the :mod:`~sim2real.ros_nodes.messages` classes);
* QoS: keep-last ``depth``, reliable or best effort, volatile or transient-local; writers advertise XCDR1 only
  and do not auto-dispose (as rmw_cyclonedds);
* domain from ``ROS_DOMAIN_ID`` (default 0, 0-232);
* the participant carries USER_DATA ``enclave=/;`` like ROS 2 participants do.

One DDS participant per domain is shared by all nodes of the process (ROS 2 also has one per context). Nodes do
not announce themselves on ``ros_discovery_info``, so ``ros2 topic list/echo/info`` see the topics but
``ros2 node list`` does not list the nodes.

Discovery: unless ``CYCLONEDDS_URI`` is already set, :func:`ensure_discovery_config` sets it before the first
participant to a configuration that always finds nodes on the same host without multicast (unicast peer
``127.0.0.1``, automatic participant index), keeps Cyclone's network choice otherwise (multicast discovery on the
LAN), and confines everything to loopback when ``ROS_LOCALHOST_ONLY=1`` (or ``ROS_AUTOMATIC_DISCOVERY_RANGE=
LOCALHOST``). ``ROS_STATIC_PEERS`` (``;``-separated) adds unicast peers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from cyclonedds.core import GuardCondition, InstanceState, Policy, Qos, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.internal import InvalidSample
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from sim2real.ros_nodes.transport.base import DEFAULT, MsgT, Node, Publisher, QoS, Subscription, Timer, TimerSchedule
from sim2real.ros_nodes.transport.params import ParameterCallback, ParameterSpec, ParameterStore, SetResult

__all__ = ["DdsNode", "discovery_config", "domain_id_from_env", "dds_qos", "ensure_discovery_config"]

TAKE_MAX = 256
"""Samples taken from one reader per executor pass."""
MAX_AUTO_PARTICIPANT_INDEX = 32
"""Participants per domain and host that unicast loopback discovery can find (each one uses a port pair)."""
RELIABLE_MAX_BLOCKING_NS = duration(milliseconds=100)
"""How long a reliable ``publish`` may block when its writer cache is full (rmw uses infinity; a robot loop
should rather drop late than hang)."""
_ENCLAVE = b"enclave=/;"


# ------------------------------------------------------------------------------------------------ configuration
def domain_id_from_env(env: Mapping[str, str] | None = None) -> int:
    """The ROS domain: ``ROS_DOMAIN_ID`` (default 0).

    Raises:
        ValueError: If it is not an integer in 0-232 (Cyclone's port formula leaves no room above).
    """
    text = (os.environ if env is None else env).get("ROS_DOMAIN_ID", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID={text!r} is not an integer (use 0-232; ROS recommends 0-101)") from None
    if not 0 <= value <= 232:
        raise ValueError(f"ROS_DOMAIN_ID={value} is out of range 0-232 (ROS recommends 0-101)")
    return value


def discovery_config(env: Mapping[str, str] | None = None) -> str:
    """The Cyclone DDS XML configuration this backend uses when ``CYCLONEDDS_URI`` is not set.

    Args:
        env: Environment (``os.environ``): ``ROS_LOCALHOST_ONLY``, ``ROS_AUTOMATIC_DISCOVERY_RANGE``,
            ``ROS_STATIC_PEERS``.

    Returns:
        An XML string (valid as a ``CYCLONEDDS_URI`` value).
    """
    env = os.environ if env is None else env
    scope = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    localhost = env.get("ROS_LOCALHOST_ONLY", "").strip() == "1" or scope in ("LOCALHOST", "OFF")
    peers = ["127.0.0.1"] if scope != "OFF" else []
    peers += [p.strip() for p in env.get("ROS_STATIC_PEERS", "").split(";") if p.strip()]
    general = ""
    if localhost:
        general = (
            '<General><Interfaces><NetworkInterface address="127.0.0.1"/></Interfaces>'
            "<AllowMulticast>false</AllowMulticast></General>"
        )
    peer_xml = "".join(f'<Peer address="{p}"/>' for p in dict.fromkeys(peers))
    return (
        '<CycloneDDS><Domain Id="any">'
        f"{general}<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{MAX_AUTO_PARTICIPANT_INDEX}</MaxAutoParticipantIndex>"
        f"<Peers>{peer_xml}</Peers></Discovery></Domain></CycloneDDS>"
    )


def ensure_discovery_config() -> bool:
    """Set ``CYCLONEDDS_URI`` to :func:`discovery_config` unless the user set it (call before any participant).

    Returns:
        Whether it was set here.
    """
    if os.environ.get("CYCLONEDDS_URI", "").strip():
        return False
    os.environ["CYCLONEDDS_URI"] = discovery_config()
    return True


def dds_qos(qos: QoS, writer: bool) -> Qos:
    """The Cyclone DDS QoS of a ROS profile for a writer or a reader (rmw_cyclonedds's choices)."""
    reliability = (
        Policy.Reliability.Reliable(max_blocking_time=RELIABLE_MAX_BLOCKING_NS)
        if qos.reliability == "reliable"
        else Policy.Reliability.BestEffort
    )
    durability = Policy.Durability.TransientLocal if qos.durability == "transient_local" else Policy.Durability.Volatile
    policies: list[Any] = [Policy.History.KeepLast(qos.depth), reliability, durability]
    if writer:
        policies += [
            Policy.WriterDataLifecycle(autodispose=False),
            Policy.DataRepresentation(use_cdrv0_representation=True),  # XCDR1 only: what ROS 2 readers accept
        ]
    return Qos(*policies)


# ------------------------------------------------------------------------------------------------ participant
def _delete(entity: Any) -> None:
    """Delete a Cyclone entity now (its Python ``__del__`` is what deletes it; a second call is a no-op)."""
    if entity is not None:
        entity.__del__()


class _SharedParticipant:
    """One participant per domain and process, shared by the nodes, with the topics created on it."""

    _lock = threading.Lock()
    _by_domain: dict[int, _SharedParticipant] = {}

    def __init__(self, domain_id: int) -> None:
        self.domain_id = domain_id
        self.dp = DomainParticipant(domain_id, qos=Qos(Policy.Userdata(_ENCLAVE)))
        self.refs = 0
        self.topics: dict[str, Topic] = {}

    @classmethod
    def acquire(cls, domain_id: int) -> _SharedParticipant:
        with cls._lock:
            ensure_discovery_config()
            shared = cls._by_domain.get(domain_id)
            if shared is None:
                shared = cls._by_domain[domain_id] = cls(domain_id)
            shared.refs += 1
            return shared

    def release(self) -> None:
        with self._lock:
            self.refs -= 1
            if self.refs > 0:
                return
            del self._by_domain[self.domain_id]
            self.topics.clear()
            _delete(self.dp)  # deletes the topics and anything left on it

    def topic(self, dds_name: str, msg_type: type[Any]) -> Topic:
        with self._lock:
            topic = self.topics.get(dds_name)
            if topic is None:
                topic = self.topics[dds_name] = Topic(self.dp, dds_name, msg_type)
            elif topic.data_type is not msg_type:
                raise TypeError(
                    f"topic {dds_name[2:]} already carries {topic.data_type.__name__} in this process, "
                    f"not {msg_type.__name__}"
                )
            return topic


# ------------------------------------------------------------------------------------------------ entities
class DdsPublisher(Publisher[MsgT]):
    def __init__(self, node: DdsNode, msg_type: type[MsgT], topic_name: str, qos: QoS) -> None:
        self.msg_type, self.topic_name, self.qos, self._node = msg_type, topic_name, qos, node
        topic = node._participant.topic("rt" + topic_name, msg_type)
        self._writer: DataWriter | None = DataWriter(node._participant.dp, topic, qos=dds_qos(qos, writer=True))

    def publish(self, msg: MsgT) -> None:
        self._check(msg)
        if self._writer is None:
            raise RuntimeError(f"publisher on {self.topic_name} was destroyed")
        self._writer.write(msg)

    @property
    def subscription_count(self) -> int:
        return 0 if self._writer is None else len(self._writer.get_matched_subscriptions())

    def destroy(self) -> None:
        with self._node._lock:
            if self._writer is not None:
                _delete(self._writer)
                self._writer = None
                self._node._publishers.remove(self)


class DdsSubscription(Subscription[MsgT]):
    def __init__(
        self, node: DdsNode, msg_type: type[MsgT], topic_name: str, callback: Callable[[MsgT], Any], qos: QoS
    ) -> None:
        self.msg_type, self.topic_name, self.qos, self.callback, self._node = msg_type, topic_name, qos, callback, node
        topic = node._participant.topic("rt" + topic_name, msg_type)
        self._reader: DataReader | None = DataReader(node._participant.dp, topic, qos=dds_qos(qos, writer=False))
        self._condition = ReadCondition(self._reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        node._waitset.attach(self._condition)
        self.invalid_samples = 0
        """Samples without data skipped (a writer left: ``take()`` reports the instance state change)."""

    def take(self) -> list[MsgT]:
        """The valid samples waiting in the reader (each carries ``sample_info``: source timestamp...)."""
        if self._reader is None:
            return []
        samples = self._reader.take(TAKE_MAX)
        valid = [s for s in samples if not isinstance(s, InvalidSample)]
        self.invalid_samples += len(samples) - len(valid)
        return valid

    @property
    def publisher_count(self) -> int:
        return 0 if self._reader is None else len(self._reader.get_matched_publications())

    def destroy(self) -> None:
        with self._node._lock:
            if self._reader is not None:
                self._node._waitset.detach(self._condition)
                _delete(self._condition)
                _delete(self._reader)
                self._reader = None
                self._node._subscriptions.remove(self)


class DdsTimer(Timer):
    def __init__(self, node: DdsNode, period_s: float, callback: Callable[[], Any]) -> None:
        self.schedule = TimerSchedule(period_s, node.monotonic_s())
        self.callback, self._node, self._canceled = callback, node, False

    @property
    def calls(self) -> int:
        """How many times the callback ran."""
        return self.schedule.calls

    @property
    def is_canceled(self) -> bool:
        return self._canceled

    def cancel(self) -> None:
        with self._node._lock:
            if not self._canceled:
                self._canceled = True
                self._node._timers.remove(self)
                self._node._guard.set(True)  # a spin waiting for this timer's deadline re-plans


# ------------------------------------------------------------------------------------------------ node
class DdsNode(Node):
    """A node on Cyclone DDS (see the module docstring); constructor arguments as :class:`Node`, plus ``domain_id``.

    Args:
        domain_id: DDS domain; ``None`` reads ``ROS_DOMAIN_ID``.

    Raises:
        ValueError: On an invalid ``ROS_DOMAIN_ID``.
    """

    backend = "dds"

    def __init__(
        self,
        name: str,
        namespace: str = "",
        argv: Sequence[str] | None = None,
        *,
        domain_id: int | None = None,
        on_callback_error: Literal["log", "raise"] = "log",
    ) -> None:
        super().__init__(name, namespace, argv, on_callback_error=on_callback_error)
        self.domain_id = domain_id_from_env() if domain_id is None else domain_id
        if not 0 <= self.domain_id <= 232:
            raise ValueError(f"domain_id {self.domain_id} is out of range 0-232")
        self._params = ParameterStore(self.ros_args.params)
        self._participant = _SharedParticipant.acquire(self.domain_id)
        self._lock = threading.RLock()  # entity lists, dispatch (callbacks may create entities: re-entrant)
        self._spin_lock = threading.Lock()  # one spinning thread; held while waiting, unlike _lock
        self._spinner: int | None = None
        self._destroyed = False
        self._waitset = WaitSet(self._participant.dp)
        self._guard = GuardCondition(self._participant.dp)
        self._waitset.attach(self._guard)
        self._publishers: list[DdsPublisher[Any]] = []
        self._subscriptions: list[DdsSubscription[Any]] = []
        self._timers: list[DdsTimer] = []
        self._ok = True

    # ---------------------------------------------------------------------------------------- entities
    def _check_open(self) -> None:
        if not self._ok:
            raise RuntimeError(f"node {self.fully_qualified_name} is shut down")

    def create_publisher(self, msg_type: type[MsgT], topic: str, qos: QoS | int = DEFAULT) -> DdsPublisher[MsgT]:
        self._check_msg_type(msg_type)
        with self._lock:
            self._check_open()
            pub = DdsPublisher(self, msg_type, self.resolve_topic_name(topic), QoS.coerce(qos))
            self._publishers.append(pub)
        return pub

    def create_subscription(
        self, msg_type: type[MsgT], topic: str, callback: Callable[[MsgT], Any], qos: QoS | int = DEFAULT
    ) -> DdsSubscription[MsgT]:
        self._check_msg_type(msg_type)
        if not callable(callback):
            raise TypeError(f"subscription callback must be callable, got {callback!r}")
        with self._lock:
            self._check_open()
            sub = DdsSubscription(self, msg_type, self.resolve_topic_name(topic), callback, QoS.coerce(qos))
            self._subscriptions.append(sub)
        return sub

    def create_timer(self, period_s: float, callback: Callable[[], Any]) -> DdsTimer:
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, got {callback!r}")
        timer = DdsTimer(self, period_s, callback)
        with self._lock:
            self._check_open()
            self._timers.append(timer)
            self._guard.set(True)  # a spin waiting in another thread re-plans its wake-up
        return timer

    # ---------------------------------------------------------------------------------------- parameters
    def _declare(self, spec: ParameterSpec) -> Any:
        return self._params.declare(spec)

    def get_parameter(self, name: str) -> Any:
        return self._params.get(name)

    def has_parameter(self, name: str) -> bool:
        return name in self._params.specs

    def describe_parameter(self, name: str) -> ParameterSpec:
        """The declaration of a parameter (type, bounds, description)."""
        self._params.get(name)
        return self._params.specs[name]

    def set_parameters(self, values: dict[str, Any]) -> list[SetResult]:
        return self._params.set(values)

    def add_on_set_parameters_callback(self, callback: ParameterCallback) -> None:
        if not callable(callback):
            raise TypeError(f"parameter callback must be callable, got {callback!r}")
        self._params.callbacks.append(callback)

    # ---------------------------------------------------------------------------------------- executor
    @property
    def ok(self) -> bool:
        return self._ok

    def _dispatch(self) -> int:
        """Run the callbacks that are ready: subscriptions (all taken samples), then due timers."""
        count = 0
        with self._lock:
            for sub in list(self._subscriptions):
                for msg in sub.take():
                    self._invoke("subscription", sub.callback, msg)
                    count += 1
                    if not self._ok:
                        return count
            now = self.monotonic_s()
            for timer in list(self._timers):
                if not timer.is_canceled and now >= timer.schedule.next_s:
                    timer.schedule.advance(now)  # before the call, as rcl: a long callback makes the next tick late
                    self._invoke("timer", timer.callback)
                    count += 1
                    if not self._ok:
                        return count
        return count

    def _wait(self, until: float | None) -> None:
        """Block until data, a guard trigger, the next timer deadline or ``until`` (monotonic seconds)."""
        with self._lock:
            deadlines = [t.schedule.next_s for t in self._timers]
        if until is not None:
            deadlines.append(until)
        wake = min(deadlines) if deadlines else None
        now = self.monotonic_s()
        if wake is None:
            self._waitset.wait(duration(infinite=True))
        elif wake > now:
            self._waitset.wait(max(1, int((wake - now) * 1e9)))
        self._guard.set(False)

    def spin_once(self, timeout_s: float | None = None) -> int:
        if not self._ok:
            return 0
        with self._spin_lock:
            self._spinner = threading.get_ident()
            try:
                until = None if timeout_s is None else self.monotonic_s() + max(0.0, timeout_s)
                while self._ok:
                    self._wait(until)
                    ran = self._dispatch() if self._ok else 0
                    if ran or (until is not None and self.monotonic_s() >= until):
                        return ran
                return 0
            finally:
                self._spinner = None
                if not self._ok:
                    self._destroy()

    def shutdown(self) -> None:
        """Stop and release everything; from another thread, wakes the spinning thread and waits for it to return.

        Called from a callback, the release happens when the current ``spin_once`` returns.
        """
        with self._lock:
            if not self._ok:
                return
            self._ok = False
            self._guard.set(True)
        if self._spinner == threading.get_ident():
            return
        with self._spin_lock:
            self._destroy()

    def _destroy(self) -> None:
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
            for timer in list(self._timers):
                timer.cancel()
            for sub in list(self._subscriptions):
                sub.destroy()
            for pub in list(self._publishers):
                pub.destroy()
            self._waitset.detach(self._guard)
            _delete(self._guard)
            _delete(self._waitset)
            self._waitset.attached = []
            self._participant.release()
