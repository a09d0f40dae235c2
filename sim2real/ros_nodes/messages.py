"""The ROS 2 standard messages the nodes use, as Cyclone DDS IDL types that speak the ROS 2 wire format.

Each class is the DDS form of a ROS 2 message, exactly as ``rosidl`` generates it for rmw_cyclonedds and
rmw_fastrtps (ROS 2 design article "ROS 2 DDS-Interop", design.ros2.org, article 116):

* type name ``<pkg>::msg::dds_::<Name>_`` (cyclonedds-python spells it with dots);
* ``@final`` structs, so samples are XCDR1, little-endian, with the 4-byte encapsulation header ``00 01 00 00``;
* field order and types as in the ``.msg`` files: ``float64[N]`` is a fixed array (no length prefix),
  ``T[]`` a sequence, ``string`` a length-prefixed NUL-terminated string, ``byte`` an octet;
* no keys, no optional members.

``msg.serialize()`` gives the bytes a ROS 2 node would put on the wire (and into a rosbag2/MCAP file with
``cdr`` encoding); ``Cls.deserialize(data)`` reads them. Field defaults follow ROS (zeros, empty strings,
identity quaternion ``w = 1``). :data:`MESSAGE_TYPES` maps ROS names (``std_msgs/msg/Header``) to classes.
"""

# pyright: reportAssignmentType=false, reportArgumentType=false
# (The IDL annotations, ``types.sequence[...]``/``types.array[...]``, tell Cyclone DDS how to serialise a field;
# the values are plain lists, which the type checker cannot know.)

# No ``from __future__ import annotations``: cyclonedds resolves the field annotations as real objects.
import math
import time
from dataclasses import dataclass, field

import cyclonedds.idl.types as t
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final


def _cov(n: int) -> list[float]:
    return [0.0] * n


# ----------------------------------------------------------------------------------- builtin_interfaces
@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces.msg.dds_.Time_"):
    """``builtin_interfaces/Time``: ``sec`` int32, ``nanosec`` uint32 in [0, 1e9)."""

    sec: t.int32 = 0
    nanosec: t.uint32 = 0

    @classmethod
    def from_seconds(cls, seconds: float) -> "Time":
        """Floor split, as rclpy does: -1.7 s -> (sec -2, nanosec 300000000)."""
        ns = int(round(seconds * 1e9))
        sec, nanosec = divmod(ns, 1_000_000_000)
        return cls(sec, nanosec)

    @classmethod
    def now(cls) -> "Time":
        """Wall-clock (system) time, ROS's default clock."""
        sec, nanosec = divmod(time.time_ns(), 1_000_000_000)
        return cls(sec, nanosec)

    def to_seconds(self) -> float:
        return self.sec + self.nanosec * 1e-9


@final
@dataclass
class Duration(IdlStruct, typename="builtin_interfaces.msg.dds_.Duration_"):
    """``builtin_interfaces/Duration``: ``sec`` int32, ``nanosec`` uint32 in [0, 1e9)."""

    sec: t.int32 = 0
    nanosec: t.uint32 = 0

    @classmethod
    def from_seconds(cls, seconds: float) -> "Duration":
        ns = round(seconds * 1e9)
        return cls(ns // 1_000_000_000, ns % 1_000_000_000)


# ----------------------------------------------------------------------------------- std_msgs
@final
@dataclass
class Header(IdlStruct, typename="std_msgs.msg.dds_.Header_"):
    """``std_msgs/Header``: stamp and frame id (ROS 2 has no ``seq``)."""

    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@final
@dataclass
class Bool(IdlStruct, typename="std_msgs.msg.dds_.Bool_"):
    data: bool = False


@final
@dataclass
class String(IdlStruct, typename="std_msgs.msg.dds_.String_"):
    data: str = ""


@final
@dataclass
class MultiArrayDimension(IdlStruct, typename="std_msgs.msg.dds_.MultiArrayDimension_"):
    label: str = ""
    size: t.uint32 = 0
    stride: t.uint32 = 0


@final
@dataclass
class MultiArrayLayout(IdlStruct, typename="std_msgs.msg.dds_.MultiArrayLayout_"):
    dim: t.sequence[MultiArrayDimension] = field(default_factory=list)
    data_offset: t.uint32 = 0


def _layout_1d(n: int, label: str) -> MultiArrayLayout:
    """The layout of a 1-D array of ``n`` values (``size = stride = n``)."""
    return MultiArrayLayout([MultiArrayDimension(label, n, n)], 0)


@final
@dataclass
class Float32MultiArray(IdlStruct, typename="std_msgs.msg.dds_.Float32MultiArray_"):
    """``std_msgs/Float32MultiArray``: a layout and a ``float32[]`` (e.g. 4 motor RPM set-points)."""

    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: t.sequence[t.float32] = field(default_factory=list)

    @classmethod
    def vector(cls, values: list[float], label: str = "") -> "Float32MultiArray":
        """A 1-D array with its dimension described (``size = stride = len(values)``)."""
        return cls(_layout_1d(len(values), label), [float(v) for v in values])


@final
@dataclass
class Float64MultiArray(IdlStruct, typename="std_msgs.msg.dds_.Float64MultiArray_"):
    """``std_msgs/Float64MultiArray``: what ros2_control's ``forward_command_controller`` takes (joint targets)."""

    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: t.sequence[float] = field(default_factory=list)

    @classmethod
    def vector(cls, values: list[float], label: str = "") -> "Float64MultiArray":
        """A 1-D array with its dimension described (``size = stride = len(values)``)."""
        return cls(_layout_1d(len(values), label), [float(v) for v in values])


# ----------------------------------------------------------------------------------- geometry_msgs
@final
@dataclass
class Vector3(IdlStruct, typename="geometry_msgs.msg.dds_.Vector3_"):
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@final
@dataclass
class Point(IdlStruct, typename="geometry_msgs.msg.dds_.Point_"):
    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@final
@dataclass
class PointStamped(IdlStruct, typename="geometry_msgs.msg.dds_.PointStamped_"):
    header: Header = field(default_factory=Header)
    point: Point = field(default_factory=Point)


@final
@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs.msg.dds_.Quaternion_"):
    """``geometry_msgs/Quaternion``: **x, y, z, w** order on the wire (ours is w, x, y, z in the simulator)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    w: float = 1.0


@final
@dataclass
class Pose(IdlStruct, typename="geometry_msgs.msg.dds_.Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@final
@dataclass
class Twist(IdlStruct, typename="geometry_msgs.msg.dds_.Twist_"):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@final
@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs.msg.dds_.PoseStamped_"):
    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


@final
@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs.msg.dds_.TwistStamped_"):
    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


@final
@dataclass
class Vector3Stamped(IdlStruct, typename="geometry_msgs.msg.dds_.Vector3Stamped_"):
    header: Header = field(default_factory=Header)
    vector: Vector3 = field(default_factory=Vector3)


@final
@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs.msg.dds_.PoseWithCovariance_"):
    """Pose and its 6x6 row-major covariance (x, y, z, rotation about X, Y, Z)."""

    pose: Pose = field(default_factory=Pose)
    covariance: t.array[float, 36] = field(default_factory=lambda: _cov(36))


@final
@dataclass
class TwistWithCovariance(IdlStruct, typename="geometry_msgs.msg.dds_.TwistWithCovariance_"):
    twist: Twist = field(default_factory=Twist)
    covariance: t.array[float, 36] = field(default_factory=lambda: _cov(36))


# ----------------------------------------------------------------------------------- sensor_msgs
@final
@dataclass
class Imu(IdlStruct, typename="sensor_msgs.msg.dds_.Imu_"):
    """``sensor_msgs/Imu``; a covariance with element 0 = -1 marks the quantity as not provided."""

    header: Header = field(default_factory=Header)
    orientation: Quaternion = field(default_factory=Quaternion)
    orientation_covariance: t.array[float, 9] = field(default_factory=lambda: _cov(9))
    angular_velocity: Vector3 = field(default_factory=Vector3)
    angular_velocity_covariance: t.array[float, 9] = field(default_factory=lambda: _cov(9))
    linear_acceleration: Vector3 = field(default_factory=Vector3)
    linear_acceleration_covariance: t.array[float, 9] = field(default_factory=lambda: _cov(9))


@final
@dataclass
class JointState(IdlStruct, typename="sensor_msgs.msg.dds_.JointState_"):
    header: Header = field(default_factory=Header)
    name: t.sequence[str] = field(default_factory=list)
    position: t.sequence[float] = field(default_factory=list)
    velocity: t.sequence[float] = field(default_factory=list)
    effort: t.sequence[float] = field(default_factory=list)


# ----------------------------------------------------------------------------------- trajectory_msgs
@final
@dataclass
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs.msg.dds_.JointTrajectoryPoint_"):
    positions: t.sequence[float] = field(default_factory=list)
    velocities: t.sequence[float] = field(default_factory=list)
    accelerations: t.sequence[float] = field(default_factory=list)
    effort: t.sequence[float] = field(default_factory=list)
    time_from_start: Duration = field(default_factory=Duration)


@final
@dataclass
class JointTrajectory(IdlStruct, typename="trajectory_msgs.msg.dds_.JointTrajectory_"):
    """``trajectory_msgs/JointTrajectory``: the joint names and their points (a one-point trajectory: a target)."""

    header: Header = field(default_factory=Header)
    joint_names: t.sequence[str] = field(default_factory=list)
    points: t.sequence[JointTrajectoryPoint] = field(default_factory=list)


# ----------------------------------------------------------------------------------- nav_msgs
@final
@dataclass
class Odometry(IdlStruct, typename="nav_msgs.msg.dds_.Odometry_"):
    """``nav_msgs/Odometry``: pose in ``header.frame_id``, twist in ``child_frame_id`` (the body frame)."""

    header: Header = field(default_factory=Header)
    child_frame_id: str = ""
    pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)
    twist: TwistWithCovariance = field(default_factory=TwistWithCovariance)


# ----------------------------------------------------------------------------------- diagnostic_msgs
@final
@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs.msg.dds_.KeyValue_"):
    key: str = ""
    value: str = ""


@final
@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs.msg.dds_.DiagnosticStatus_"):
    """``diagnostic_msgs/DiagnosticStatus``; ``level`` is a ROS ``byte`` (an octet): OK 0, WARN 1, ERROR 2, STALE 3."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3

    level: t.byte = 0
    name: str = ""
    message: str = ""
    hardware_id: str = ""
    values: t.sequence[KeyValue] = field(default_factory=list)


@final
@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs.msg.dds_.DiagnosticArray_"):
    header: Header = field(default_factory=Header)
    status: t.sequence[DiagnosticStatus] = field(default_factory=list)


MESSAGE_TYPES: dict[str, type[IdlStruct]] = {
    "builtin_interfaces/msg/Time": Time,
    "builtin_interfaces/msg/Duration": Duration,
    "std_msgs/msg/Header": Header,
    "std_msgs/msg/Bool": Bool,
    "std_msgs/msg/String": String,
    "std_msgs/msg/MultiArrayDimension": MultiArrayDimension,
    "std_msgs/msg/MultiArrayLayout": MultiArrayLayout,
    "std_msgs/msg/Float32MultiArray": Float32MultiArray,
    "std_msgs/msg/Float64MultiArray": Float64MultiArray,
    "geometry_msgs/msg/Vector3": Vector3,
    "geometry_msgs/msg/Point": Point,
    "geometry_msgs/msg/PointStamped": PointStamped,
    "geometry_msgs/msg/Quaternion": Quaternion,
    "geometry_msgs/msg/Pose": Pose,
    "geometry_msgs/msg/Twist": Twist,
    "geometry_msgs/msg/PoseStamped": PoseStamped,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "geometry_msgs/msg/Vector3Stamped": Vector3Stamped,
    "geometry_msgs/msg/PoseWithCovariance": PoseWithCovariance,
    "geometry_msgs/msg/TwistWithCovariance": TwistWithCovariance,
    "sensor_msgs/msg/Imu": Imu,
    "sensor_msgs/msg/JointState": JointState,
    "trajectory_msgs/msg/JointTrajectoryPoint": JointTrajectoryPoint,
    "trajectory_msgs/msg/JointTrajectory": JointTrajectory,
    "nav_msgs/msg/Odometry": Odometry,
    "diagnostic_msgs/msg/KeyValue": KeyValue,
    "diagnostic_msgs/msg/DiagnosticStatus": DiagnosticStatus,
    "diagnostic_msgs/msg/DiagnosticArray": DiagnosticArray,
}
"""ROS 2 message name -> class."""


def ros_type_name(cls: type[IdlStruct]) -> str:
    """``std_msgs/msg/Header`` for :class:`Header` (the name ``ros2 topic`` shows)."""
    for name, c in MESSAGE_TYPES.items():
        if c is cls:
            return name
    raise KeyError(f"{cls.__name__} is not one of the ROS 2 message types in sim2real.ros_nodes.messages")


def dds_type_name(cls: type[IdlStruct]) -> str:
    """The DDS type name on the wire: ``std_msgs::msg::dds_::Header_``."""
    pkg, _, name = ros_type_name(cls).split("/")
    return f"{pkg}::msg::dds_::{name}_"


def all_finite(*values: float) -> bool:
    """Whether every value is a finite float (NaN/Inf rejection of incoming messages)."""
    return all(math.isfinite(v) for v in values)
