"""``recorder_node``: record chosen topics to an MCAP file (rosbag2 layout, ROS 2 CDR), crash-safely.

``topics`` lists ``name:type[:qos]`` entries, e.g. ``odom:nav_msgs/msg/Odometry:sensor`` (qos ``sensor`` =
best effort, ``default`` = reliable (the default), ``latched`` = reliable + transient local); names resolve
against the node's namespace. A short form ``odom`` uses the type and QoS of :data:`KNOWN_TOPICS`. Each run
writes ``<output_dir>/<prefix>_<YYYYmmdd-HHMMSS>.mcap`` through
:class:`~sim2real.ros_nodes.mcap_log.McapLogWriter`: chunks are flushed every ``flush_interval_s`` (a timer
flushes even when no message arrives), so a killed recorder loses at most that much; SIGINT/SIGTERM close
the file with its index and footer. Each message keeps two times, as ``ros2 bag record`` does: its log time (when the
recorder received it) and its publish time (when the publisher wrote it, from the middleware's source timestamp;
the log time where the middleware gives none). Read recordings with :func:`~sim2real.ros_nodes.mcap_log.read_messages`
or :func:`~sim2real.ros_nodes.mcap_log.read_transitions`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from sim2real.ros_nodes.mcap_log import McapLogWriter
from sim2real.ros_nodes.messages import MESSAGE_TYPES
from sim2real.ros_nodes.node_main import run_node
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA, Node, QoS, source_time_ns

QOS = {"sensor": SENSOR_DATA, "default": DEFAULT, "latched": LATCHED}
#: Type and QoS of the deployments' topics (short entries in ``topics``): the quadrotor's, then the legged robot's.
KNOWN_TOPICS = {
    "odom": ("nav_msgs/msg/Odometry", "sensor"),
    "cmd_rpm": ("std_msgs/msg/Float32MultiArray", "default"),
    "policy/obs": ("std_msgs/msg/Float32MultiArray", "default"),
    "policy/action": ("std_msgs/msg/Float32MultiArray", "default"),
    "policy/setpoint_active": ("geometry_msgs/msg/PointStamped", "latched"),
    "arm": ("std_msgs/msg/Bool", "default"),
    "estop": ("std_msgs/msg/Bool", "default"),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", "default"),
    "joint_states": ("sensor_msgs/msg/JointState", "sensor"),
    "imu": ("sensor_msgs/msg/Imu", "sensor"),
    "cmd_vel": ("geometry_msgs/msg/Twist", "default"),
    "joint_commands": ("std_msgs/msg/Float64MultiArray", "default"),
    "legged_policy/obs": ("std_msgs/msg/Float32MultiArray", "default"),
    "legged_policy/action": ("std_msgs/msg/Float32MultiArray", "default"),
}


def parse_topic(entry: str) -> tuple[str, type, QoS]:
    """``name:type[:qos]`` (or a known short name) -> (name, message class, QoS); ValueError when unknown."""
    parts = entry.split(":")
    name = parts[0].strip()
    if len(parts) == 1:
        if name not in KNOWN_TOPICS:
            raise ValueError(f"topic {name!r} needs a type (name:pkg/msg/Type[:qos]); known short names: "
                             f"{', '.join(KNOWN_TOPICS)}")  # fmt: skip
        type_name, qos = KNOWN_TOPICS[name]
    else:
        type_name, qos = parts[1].strip(), (parts[2].strip() if len(parts) > 2 else "default")
    if type_name not in MESSAGE_TYPES:
        raise ValueError(f"topic {name}: unknown type {type_name!r}; supported: {', '.join(sorted(MESSAGE_TYPES))}")
    if qos not in QOS:
        raise ValueError(f"topic {name}: qos must be one of {', '.join(QOS)}, got {qos!r}")
    return name, MESSAGE_TYPES[type_name], QOS[qos]


class RecorderNode:
    """Subscribes to the configured topics and appends every message to the MCAP file."""

    def __init__(self, node: Node) -> None:
        self.node = node
        out_dir = Path(node.declare_parameter("output_dir", "runs/recordings", "directory of the recordings"))
        prefix = node.declare_parameter("prefix", "robot", "file name prefix")
        topics = node.declare_parameter("topics", list(KNOWN_TOPICS), "name[:type[:qos]] entries to record",
                                        param_type="list[str]")  # fmt: skip
        chunk = node.declare_parameter("chunk_bytes", 256 * 1024, "MCAP chunk size (bytes)", min=1024)
        flush = node.declare_parameter("flush_interval_s", 0.5, "flush at least this often (s)", min=0.01, max=60.0)
        compression = node.declare_parameter("compression", "zstd", "chunk compression", choices=["zstd", "lz4", "none"])
        queue = node.declare_parameter("queue_depth", 1000, "messages each topic's reader holds while the recorder "
                                       "writes a chunk (keep-last: a deeper backlog loses the oldest; 10 s at "
                                       "100 Hz)", min=1)  # fmt: skip
        self.drain_s = node.declare_parameter("drain_s", 0.3, "keep recording this long after SIGINT (in-flight "
                                              "messages of nodes stopping at the same time)", min=0.0, max=10.0)  # fmt: skip
        specs = [parse_topic(t) for t in topics]
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.path = out_dir / f"{prefix}_{stamp}.mcap"
        n = 1
        while self.path.exists():
            self.path, n = out_dir / f"{prefix}_{stamp}_{n}.mcap", n + 1
        self.writer = McapLogWriter(self.path, chunk_bytes=chunk, flush_interval_s=flush, compression=compression)
        for name, cls, qos in specs:  # recorded under the resolved, remapped name (what a bag shows)
            deep = replace(qos, depth=max(qos.depth, queue))  # depth is the reader's own (not matched with writers)
            node.create_subscription(cls, name, self._writer_for(node.resolve_topic_name(name)), deep)
        node.create_timer(flush, self._flush)
        node.logger.info("recording %d topics to %s", len(specs), self.path)

    def _writer_for(self, topic: str):
        def record(msg: object) -> None:  # logged now; published when the publisher wrote it (bag's send time)
            self.writer.write(topic, msg, publish_time_ns=source_time_ns(msg))

        return record

    def _flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Write the index and footer (SIGINT/SIGTERM and normal exit)."""
        if not self.writer.closed:
            self.writer.close()
            self.node.logger.info("closed %s: %d messages", self.path, self.writer.messages)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recorder_node`` executable."""
    return run_node("recorder", RecorderNode, argv)


if __name__ == "__main__":
    sys.exit(main())
