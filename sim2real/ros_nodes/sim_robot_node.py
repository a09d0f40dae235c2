"""``sim_robot_node``: the quadrotor simulator in real time behind the robot's topics.

Publishes ``odom`` (nav_msgs/Odometry, sensor-data QoS; pose in ``world_frame``, twist in ``body_frame``) at
``rate_hz`` and takes ``cmd_rpm`` (std_msgs/Float32MultiArray, 4 RPM set-points). With no command for
``command_timeout_s`` the motors go idle (the robot's own failsafe, independent of the policy node). Options:
``start`` (nominal | hard), ``seed``, physical shift (``shift_file``: ``config/shifts/*.yaml``) and sensor noise
(``position_noise_m``, ``velocity_noise_mps``). ``~/status`` (DiagnosticArray on ``/diagnostics``) reports the
position and the command timeouts. All simulation logic is in :class:`~sim2real.ros_nodes.sim_robot_core.SimRobot`.
"""

# pyright: reportArgumentType=false
# (message fields declared as IDL sequences take and give plain lists: see sim2real.ros_nodes.messages)

from __future__ import annotations

import sys

from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.node_main import declare_config, run_node
from sim2real.ros_nodes.sim_robot_core import SimRobot, SimRobotConfig
from sim2real.ros_nodes.transport import DEFAULT, SENSOR_DATA, Node

_DESCRIPTIONS = {
    "rate_hz": "simulation and odometry rate (Hz)",
    "start": "start distribution: nominal | hard",
    "seed": "seed of the start state and disturbance",
    "model": "quadrotor model: crazyflie-paper | crazyflie-newer",
    "command_timeout_s": "motors idle when no command arrived for this long (s)",
    "shift_file": "YAML of physics outside the training randomisation (config/shifts/*.yaml: mass, thrust, "
                  "motor_tau, wind, drag factors); '' = the nominal model",
    "position_noise_m": "std of Gaussian position noise on the odometry (m)",
    "velocity_noise_mps": "std of Gaussian velocity noise on the odometry (m/s)",
    "world_frame": "odometry header frame",
    "body_frame": "odometry child frame",
    "hold_until_command": "keep the start state until a command spins a motor (the robot rests until armed)",
}


class SimRobotNode:
    """Wires a :class:`SimRobot` to a node: timer -> step + odometry, subscription -> command."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.robot = SimRobot(declare_config(node, SimRobotConfig, _DESCRIPTIONS, {"start": ["nominal", "hard"]}))
        self.odom = node.create_publisher(m.Odometry, "odom", SENSOR_DATA)
        self.diag = node.create_publisher(m.DiagnosticArray, "/diagnostics", DEFAULT)
        node.create_subscription(m.Float32MultiArray, "cmd_rpm", self._on_cmd, DEFAULT)
        node.create_timer(1.0 / self.robot.cfg.rate_hz, self._on_timer)
        node.create_timer(0.5, self._publish_status)
        self.odom.publish(self.robot.odometry(node.now()))  # the state before the first step
        node.logger.info("simulated %s at %.0f Hz from a %s start (seed %d)", self.robot.cfg.model,
                         self.robot.cfg.rate_hz, self.robot.cfg.start, self.robot.cfg.seed)  # fmt: skip

    def _on_cmd(self, msg: m.Float32MultiArray) -> None:
        if not self.robot.command(msg.data, self.node.monotonic_s()):
            self.node.logger.warning("command rejected (need 4 finite RPM values): %s", list(msg.data)[:8])

    def _on_timer(self) -> None:
        was = self.robot.timed_out
        self.robot.step(self.node.monotonic_s())
        if self.robot.timed_out and not was and self.robot.command_timeouts:
            self.node.logger.warning("no command for %.2f s: motors idle", self.robot.cfg.command_timeout_s)
        self.odom.publish(self.robot.odometry(self.node.now()))

    def _publish_status(self) -> None:
        r = self.robot
        level = m.DiagnosticStatus.WARN if r.timed_out else m.DiagnosticStatus.OK
        values = {"steps": r.steps, "command_timeouts": r.command_timeouts, "motors_idle_by_timeout": r.timed_out,
                  "rejected_commands": r.rejected_commands, "position": [round(float(v), 4) for v in r.position]}
        status = m.DiagnosticStatus(level, f"{self.node.fully_qualified_name}: sim robot", "simulated", "sim2real",
                                    [m.KeyValue(k, str(v)) for k, v in values.items()])  # fmt: skip
        self.diag.publish(m.DiagnosticArray(m.Header(self.node.now(), ""), [status]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sim_robot_node`` executable."""
    return run_node("sim_robot", SimRobotNode, argv)


if __name__ == "__main__":
    sys.exit(main())
