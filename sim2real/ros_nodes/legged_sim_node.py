"""``legged_sim_node``: the humanoid of ``mujoco-humanoid-walk`` in real time behind a legged robot's topics.

Publishes ``joint_states`` (sensor_msgs/JointState, the model's joint order) and ``imu`` (sensor_msgs/Imu of the
torso; no linear acceleration: its covariance[0] is -1, the ROS convention for "not provided") at the control rate;
takes ``joint_commands`` (std_msgs/Float64MultiArray, position targets in ``command_joints`` order) that the joint
servos track with the policy's PD gains at every physics step. Diagnostics report the torso height, the steps and
the command timeouts. All simulation logic is in :class:`~sim2real.ros_nodes.legged_sim_core.LeggedSimRobot`.
"""

# pyright: reportArgumentType=false
# (message fields declared as IDL sequences take and give plain lists: see sim2real.ros_nodes.messages)

from __future__ import annotations

import sys

from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.legged_sim_core import LeggedSimConfig, LeggedSimRobot
from sim2real.ros_nodes.node_main import declare_config, run_node
from sim2real.ros_nodes.transport import DEFAULT, SENSOR_DATA, Node

_DESCRIPTIONS = {
    "seed": "seed of the start state",
    "command_timeout_s": "no command for this long (s) is counted (the last targets are kept)",
    "harness_s": "hold the torso in the air until this long (s) after the first command (0 = no harness)",
}


class LeggedSimNode:
    """Wires a :class:`LeggedSimRobot` to a node: timer -> step + joint states + IMU, subscription -> targets."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.robot = LeggedSimRobot(declare_config(node, LeggedSimConfig, _DESCRIPTIONS))
        joints = node.declare_parameter("command_joints", [], "joint order of joint_commands; [] = the servos' order "
                                        "(the policy's)", param_type="list[str]")  # fmt: skip
        self.command_joints = list(joints) or self.robot.actuator_joints
        self.frame = node.declare_parameter("imu_frame", "torso", "header.frame_id of the IMU")
        self.joints_pub = node.create_publisher(m.JointState, "joint_states", SENSOR_DATA)
        self.imu_pub = node.create_publisher(m.Imu, "imu", SENSOR_DATA)
        self.diag = node.create_publisher(m.DiagnosticArray, "/diagnostics", DEFAULT)
        node.create_subscription(m.Float64MultiArray, "joint_commands", self._on_cmd, DEFAULT)
        node.create_timer(self.robot.dt, self._on_timer)
        node.create_timer(0.5, self._publish_status)
        self._publish_state()
        node.logger.info("simulated humanoid at %.0f Hz (seed %d)", 1.0 / self.robot.dt, self.robot.cfg.seed)

    def _on_cmd(self, msg: m.Float64MultiArray) -> None:
        if not self.robot.command(self.command_joints, list(msg.data), self.node.monotonic_s()):
            self.node.logger.warning("command rejected (need %d finite targets): %s", len(self.command_joints),
                                     list(msg.data)[:4])  # fmt: skip

    def _on_timer(self) -> None:
        self.robot.step(self.node.monotonic_s())
        self._publish_state()

    def _publish_state(self) -> None:
        stamp = self.node.now()
        names, q, qd = self.robot.joint_state()
        self.joints_pub.publish(m.JointState(m.Header(stamp, ""), list(names), q.tolist(), qd.tolist(), []))
        gyro, quat = self.robot.imu()
        orientation = m.Quaternion(float(quat[1]), float(quat[2]), float(quat[3]), float(quat[0]))
        imu = m.Imu(m.Header(stamp, self.frame), orientation, angular_velocity=m.Vector3(*(float(v) for v in gyro)),
                    linear_acceleration_covariance=[-1.0] + [0.0] * 8)  # covariance[0] = -1: not provided
        self.imu_pub.publish(imu)

    def _publish_status(self) -> None:
        r = self.robot
        values = {"steps": r.steps, "command_timeouts": r.command_timeouts, "rejected_commands": r.rejected_commands,
                  "torso_height": round(r.torso_height(), 4), "harnessed": r.harnessed(self.node.monotonic_s())}  # fmt: skip
        status = m.DiagnosticStatus(m.DiagnosticStatus.OK, f"{self.node.fully_qualified_name}: legged sim robot",
                                    "simulated", "sim2real", [m.KeyValue(k, str(v)) for k, v in values.items()])  # fmt: skip
        self.diag.publish(m.DiagnosticArray(m.Header(self.node.now(), ""), [status]))

    def close(self) -> None:
        self.robot.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``legged_sim_node`` executable."""
    return run_node("legged_sim", LeggedSimNode, argv)


if __name__ == "__main__":
    sys.exit(main())
