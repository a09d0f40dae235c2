"""``legged_policy_node``: run an exported legged ``policy.onnx`` on a robot through ros2_control's conventions.

Everything robot-specific comes from the policy file (joint names, default pose, action scale, joint ranges, PD
gains, the observation terms and their sources): :class:`~sim2real.ros_nodes.legged_core.LeggedController`.

Topics (relative to the node's namespace; remap them in the launch file):

=====================  ===========================  ==============================================================
``joint_states``       sensor_msgs/JointState in    joint positions and velocities, any order (matched by name)
``imu``                sensor_msgs/Imu in           torso orientation and body angular velocity
``cmd_vel``            geometry_msgs/Twist in       ``linear.x``, ``linear.y`` [m/s], ``angular.z`` [rad/s]
``arm``                std_msgs/Bool in             true: staged start (also after damping); false: stop commanding
``estop``              std_msgs/Bool in             true latches damping; ``~/clear_estop`` (true) releases it
``joint_commands``     Float64MultiArray out        position targets in ``command_joints`` order, every tick once
                                                    started (remap to ``/<controller>/commands`` of a
                                                    ``forward_command_controller``)
``joint_trajectory``   JointTrajectory out          the same targets as a one-point trajectory (``trajectory:=true``)
``~/pd_gains``         Float64MultiArray out (latched)  ``kp`` then ``kd`` in ``command_joints`` order, for the robot side
``~/obs``, ``~/action``  Float32MultiArray out      what the policy saw and did (ticks that ran it)
``/diagnostics``       DiagnosticArray out          state, reason, counters (``diagnostics_rate_hz``)
=====================  ===========================  ==============================================================

Damping (the fallback) sends the measured positions as targets, so the robot's PD loop only damps. The control loop
runs on a timer at the policy's control rate (from its metadata), or on every joint state with
``trigger:=joint_states`` (lowest latency; the timer then only runs the watchdog).
"""

# pyright: reportArgumentType=false
# (message fields declared as IDL sequences take and give plain lists: see sim2real.ros_nodes.messages)

from __future__ import annotations

import sys

from sim2real.core.files import CheckpointError
from sim2real.core.policy_file import OnnxPolicy
from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.legged_core import LeggedController, LeggedSafetyConfig, State, TickResult
from sim2real.ros_nodes.node_main import declare_config, run_node
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA, Node

_LEVEL = {State.RUNNING: m.DiagnosticStatus.OK, State.WAITING: m.DiagnosticStatus.OK,
          State.STARTING: m.DiagnosticStatus.OK, State.DAMPING: m.DiagnosticStatus.ERROR,
          State.ESTOP: m.DiagnosticStatus.ERROR}  # fmt: skip

_DESCRIPTIONS = {
    "watchdog_timeout_s": "joint states or IMU older than this (s) -> damping",
    "cmd_timeout_s": "cmd_vel older than this (s) counts as a zero command",
    "start_duration_s": "staged start: from the measured pose to the default pose in this time (s)",
    "hold_s": "staged start: hold the default pose this long (s) before the policy takes over",
    "max_tilt_deg": "torso tilt beyond this -> damping",
    "max_joint_velocity": "any joint faster than this (rad/s) -> damping",
    "autostart": "start as soon as joint states and IMU are fresh (simulation); a robot should arm on `arm`",
}


class LeggedPolicyNode:
    """Wires a :class:`LeggedController` to a :class:`~sim2real.ros_nodes.transport.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        path = node.declare_parameter("policy_path", "", "exported legged policy.onnx to run")
        if not path:
            raise CheckpointError("parameter policy_path is required (an exported policy.onnx)")
        safety = declare_config(node, LeggedSafetyConfig, _DESCRIPTIONS)
        joints = node.declare_parameter("command_joints", [], "joint order of joint_commands (the controller's "
                                        "`joints`); [] = the policy's order", param_type="list[str]")  # fmt: skip
        ignore = node.declare_parameter("ignore_joints", [], "robot joints in joint_states the policy does not drive "
                                        "(any other extra joint is an error)", param_type="list[str]")  # fmt: skip
        self.trajectory = node.declare_parameter("trajectory", False, "also publish joint_trajectory")
        self.trigger = node.declare_parameter("trigger", "timer", "timer (control rate) or joint_states (each message)",
                                              choices=["timer", "joint_states"])  # fmt: skip
        rate_override = node.declare_parameter("control_rate_hz", 0.0, "control rate (Hz); 0 = the policy's trained "
                                               "rate (metadata)", min=0.0, max=2000.0)  # fmt: skip
        diag_hz = node.declare_parameter("diagnostics_rate_hz", 5.0, "rate of /diagnostics", min=0.1, max=100.0)
        self.rt_priority = node.declare_parameter("rt_priority", 50, "SCHED_FIFO priority of the control loop (0 = "
                                                  "normal)", min=0, max=99)  # fmt: skip
        self.ctl = LeggedController(OnnxPolicy(path), safety, list(joints) or None, tuple(ignore))
        self.joints = self.ctl.command_map.robot_joints
        rate = float(rate_override or self.ctl.adapter.control_rate_hz)
        node.logger.info("legged policy %s (run %s): %d joints at %.0f Hz, %s", path, self.ctl.policy.metadata.run_id,
                         len(self.joints), rate, "autostart" if safety.autostart else "waiting for arm")  # fmt: skip
        self.cmd = node.create_publisher(m.Float64MultiArray, "joint_commands", DEFAULT)
        self.traj = node.create_publisher(m.JointTrajectory, "joint_trajectory", DEFAULT) if self.trajectory else None
        self.obs_pub = node.create_publisher(m.Float32MultiArray, "~/obs", DEFAULT)
        self.act_pub = node.create_publisher(m.Float32MultiArray, "~/action", DEFAULT)
        self.diag = node.create_publisher(m.DiagnosticArray, "/diagnostics", DEFAULT)
        gains = node.create_publisher(m.Float64MultiArray, "~/pd_gains", LATCHED)
        kp, kd = self.ctl.gains()
        gains.publish(m.Float64MultiArray.vector([*kp.tolist(), *kd.tolist()], "kp|kd"))
        node.create_subscription(m.JointState, "joint_states", self._on_joints, SENSOR_DATA)
        node.create_subscription(m.Imu, "imu", self._on_imu, SENSOR_DATA)
        node.create_subscription(m.Twist, "cmd_vel", self._on_cmd_vel, DEFAULT)
        node.create_subscription(m.Bool, "arm", lambda msg: self.ctl.on_arm(msg.data), DEFAULT)
        node.create_subscription(m.Bool, "estop", self._on_estop, DEFAULT)
        node.create_subscription(m.Bool, "~/clear_estop", lambda msg: msg.data and self.ctl.clear_estop(), DEFAULT)
        self.control_timer = node.create_timer(1.0 / rate, self._on_timer)
        node.create_timer(1.0 / diag_hz, self._publish_diagnostics)
        self._last_state: State | None = None

    # ------------------------------------------------------------------------------------------ callbacks
    def _on_joints(self, msg: m.JointState) -> None:
        if not self.ctl.on_joint_state(list(msg.name), msg.position, msg.velocity, self.node.monotonic_s()):
            self.node.logger.warning("joint state rejected: %s", self.ctl.reason or "see diagnostics")
        if self.trigger == "joint_states":
            self._publish(self.ctl.tick(self.node.monotonic_s()))

    def _on_imu(self, msg: m.Imu) -> None:
        w, q = msg.angular_velocity, msg.orientation
        if not self.ctl.on_imu((w.x, w.y, w.z), (q.w, q.x, q.y, q.z), self.node.monotonic_s()):
            self.node.logger.warning("IMU rejected: %s", self.ctl.reason or "see diagnostics")

    def _on_cmd_vel(self, msg: m.Twist) -> None:
        if not self.ctl.on_cmd_vel(msg.linear.x, msg.linear.y, msg.angular.z, self.node.monotonic_s()):
            self.node.logger.warning("cmd_vel rejected (non-finite)")

    def _on_estop(self, msg: m.Bool) -> None:
        if msg.data:
            self.ctl.on_estop(True)
            self.node.logger.error("E-STOP: damping latched (publish true on ~/clear_estop, then arm again)")
            self._publish(self.ctl.tick(self.node.monotonic_s()))  # act now, not at the next tick

    def _on_timer(self) -> None:
        now = self.node.monotonic_s()
        if self.trigger == "timer" or not self.ctl.inputs_fresh(now):  # joint-state-triggered: the watchdog still runs
            self._publish(self.ctl.tick(now))

    # ------------------------------------------------------------------------------------------ outputs
    def _publish(self, out: TickResult) -> None:
        if out.targets is not None:
            targets = out.targets.tolist()
            self.cmd.publish(m.Float64MultiArray.vector(targets, "position"))
            if self.traj is not None:
                point = m.JointTrajectoryPoint(positions=targets, time_from_start=m.Duration())
                self.traj.publish(m.JointTrajectory(m.Header(self.node.now(), ""), list(self.joints), [point]))
        if out.obs is not None:
            self.obs_pub.publish(m.Float32MultiArray.vector(out.obs.tolist(), "obs"))
        if out.action is not None:
            self.act_pub.publish(m.Float32MultiArray.vector(out.action.tolist(), "action"))
        if out.state is not self._last_state:
            log = self.node.logger.warning if out.state in (State.DAMPING, State.ESTOP) else self.node.logger.info
            log("state %s%s", out.state.value, f" ({out.reason})" if out.reason else "")
            self._last_state = out.state

    def close(self) -> None:
        c = self.ctl.counters
        self.node.logger.info("stopped after %d ticks (%d ran the policy; %d inputs rejected; %d dampings)", c.ticks,
                              c.policy_ticks, c.rejected_inputs, c.dampings)  # fmt: skip

    def _publish_diagnostics(self) -> None:
        t = self.control_timer.schedule
        d = {**self.ctl.diagnostics(), "missed_ticks": str(t.overruns), "worst_late_ms": f"{1e3 * t.worst_late_s:.1f}"}
        status = m.DiagnosticStatus(_LEVEL[self.ctl.state], f"{self.node.fully_qualified_name}: legged policy",
                                    d["state"], "sim2real", [m.KeyValue(k, v) for k, v in d.items()])  # fmt: skip
        self.diag.publish(m.DiagnosticArray(m.Header(self.node.now(), ""), [status]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``legged_policy_node`` executable (``--ros-args`` as ``ros2 launch`` passes them)."""
    return run_node("legged_policy", LeggedPolicyNode, argv)


if __name__ == "__main__":
    sys.exit(main())
