"""One Node API, two backends: ``rclpy`` (on ROS 2 machines) and ``dds`` (Cyclone DDS, ROS 2 wire format).

See :mod:`~sim2real.ros_nodes.transport.base` for the API and an example.
"""

from sim2real.ros_nodes.transport.base import (
    BACKEND_ENV,
    DEFAULT,
    LATCHED,
    SENSOR_DATA,
    Node,
    Publisher,
    QoS,
    Subscription,
    Timer,
    TimerSchedule,
    select_backend,
    source_time_ns,
)
from sim2real.ros_nodes.transport.factory import create_node
from sim2real.ros_nodes.transport.names import InvalidNameError, resolve_topic_name
from sim2real.ros_nodes.transport.params import (
    ParameterError,
    ParameterSpec,
    RosArgs,
    RosArgsError,
    SetResult,
    load_params_file,
    parse_ros_args,
)

__all__ = [
    "BACKEND_ENV",
    "DEFAULT",
    "LATCHED",
    "SENSOR_DATA",
    "InvalidNameError",
    "Node",
    "ParameterError",
    "ParameterSpec",
    "Publisher",
    "QoS",
    "RosArgs",
    "RosArgsError",
    "SetResult",
    "Subscription",
    "Timer",
    "TimerSchedule",
    "create_node",
    "load_params_file",
    "parse_ros_args",
    "resolve_topic_name",
    "select_backend",
    "source_time_ns",
]
