"""A node for the cross-process tests, started the way ``ros2 launch`` starts nodes (``--ros-args``).

It echoes ``nav_msgs/Odometry`` from ``in`` to ``out`` (``qos`` parameter: reliable or best_effort), announces
itself on the latched ``~/ready`` topic and exits on a ``std_msgs/Bool`` on ``~/quit`` or after ``duration_s``.
"""

from __future__ import annotations

from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.transport import LATCHED, QoS, create_node


def main() -> None:
    with create_node("echo", backend="dds") as node:  # argv=None: the process's --ros-args
        duration = node.declare_parameter("duration_s", 20.0, min=0.0)
        qos = QoS(node.declare_parameter("qos", "reliable", choices=["reliable", "best_effort"]), 10)
        out = node.create_publisher(m.Odometry, "out", qos)
        node.create_subscription(m.Odometry, "in", out.publish, qos)
        node.create_subscription(m.Bool, "~/quit", lambda msg: node.shutdown(), 10)
        node.create_publisher(m.String, "~/ready", LATCHED).publish(m.String(node.fully_qualified_name))
        start = node.monotonic_s()
        while node.ok and node.monotonic_s() - start < duration:
            node.spin_once(0.1)


if __name__ == "__main__":
    main()
