"""``policy_node``: run an exported ``policy.onnx`` on the robot, behind the safety layer.

Topics (relative to the node's namespace; remap them in the launch file):

=================  =========================  ==================================================================
``odom``           nav_msgs/Odometry in       robot state (pose in the world frame, twist in the body frame)
``arm``            std_msgs/Bool in           true arms (staged start), false disarms
``estop``          std_msgs/Bool in           true latches the safe output; ``~/clear_estop`` (true) releases it
``~/reload``       std_msgs/String in         path of a new policy.onnx, loaded and checked in the background
``~/setpoint``     PointStamped in            a new hover position, inside the limits' set-point box around ``setpoint``
``~/setpoint_active`` PointStamped out (latched)  the set-point in force (the position error's origin, for logs)
``cmd_rpm``        Float32MultiArray out      4 motor set-points in RPM, every control tick (safe output too)
``~/obs``          Float32MultiArray out      the observation fed to the policy (ticks that ran it)
``~/action``       Float32MultiArray out      the normalised action commanded (every tick)
``/diagnostics``   DiagnosticArray out        state, counters (``missed_ticks``: control periods the timer skipped,
                                             ``missed_ticks_in_swaps``: of those, while a policy was loading or
                                             swapped in, ``worst_late_ms``: the latest a tick ran), last reload
                                             error (``diagnostics_rate_hz``)
=================  =========================  ==================================================================

The control loop runs on a timer at the policy's control rate (from its metadata), or on every odometry
message with ``trigger:=odometry`` (lowest latency; the timer then only runs the watchdog). Setting the
``policy_path`` parameter at run time also reloads. All logic is in
:class:`~sim2real.ros_nodes.policy_core.PolicyController`.
"""

# pyright: reportArgumentType=false
# (message fields declared as IDL sequences take and give plain lists: see sim2real.ros_nodes.messages)

from __future__ import annotations

import sys

from sim2real.core.files import CheckpointError
from sim2real.core.policy_file import OnnxPolicy
from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.node_main import declare_config, run_node
from sim2real.ros_nodes.policy_core import OdometrySample, PolicyController, SafetyConfig, State, TickResult
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA, Node, SetResult
from sim2real.sim.safety import SafetyLimits

_LEVEL = {State.RUNNING: m.DiagnosticStatus.OK, State.DISARMED: m.DiagnosticStatus.OK,
          State.STALE: m.DiagnosticStatus.WARN, State.FAULT: m.DiagnosticStatus.ERROR,
          State.ESTOP: m.DiagnosticStatus.ERROR}  # fmt: skip

_DESCRIPTIONS = {
    "watchdog_timeout_s": "odometry older than this (s) -> safe output",
    "max_action_step": "largest change of a normalised motor command per tick (2 = no limit)",
    "safe_mode": "safe output: idle (0 RPM) or hover (open-loop hover RPM from the policy metadata)",
    "autoarm": "arm as soon as odometry is fresh (simulation); a robot should arm on the arm topic",
}


class PolicyNode:
    """Wires a :class:`PolicyController` to a :class:`~sim2real.ros_nodes.transport.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        path = node.declare_parameter("policy_path", "", "exported policy.onnx to run")
        if not path:
            raise CheckpointError("parameter policy_path is required (an exported policy.onnx)")
        setpoint = node.declare_parameter("setpoint", [0.0, 0.0, 0.0], "hover position, world frame (m)")
        safety = declare_config(node, SafetyConfig, _DESCRIPTIONS, {"safe_mode": ["idle", "hover"]})
        limits_file = node.declare_parameter("safety_limits", "", "YAML of safety limits (position_box_m around "
                                             "setpoint, setpoint_box_m, max_tilt_deg, max_speed_mps, "
                                             "max_body_rate_radps, action_min, action_max); '' = built-in")  # fmt: skip
        limits = SafetyLimits.from_yaml(limits_file) if limits_file else SafetyLimits()
        self.require_recorder = node.declare_parameter(
            "require_recorder", False, "refuse to arm until something subscribes to ~/obs (the flight gets logged)"
        )
        self.trigger = node.declare_parameter("trigger", "timer", "timer (control rate) or odometry (each message)",
                                              choices=["timer", "odometry"])  # fmt: skip
        diag_hz = node.declare_parameter("diagnostics_rate_hz", 5.0, "rate of /diagnostics", min=0.1, max=100.0)
        rate_override = node.declare_parameter(
            "control_rate_hz", 0.0, "control timer rate (Hz); 0 = the policy's trained rate (metadata)", min=0.0, max=2000.0
        )
        self.frame = node.declare_parameter("odom_frame", "", "required header.frame_id of the odometry ('' = any)")
        robot_model = node.declare_parameter("robot_model", "", "refuse policies trained for another robot model "
                                             "(e.g. crazyflie-paper; '' = the policy's)")  # fmt: skip
        self.rt_priority = node.declare_parameter("rt_priority", 50, "SCHED_FIFO priority of the control loop "
                                                  "(1..99; 0 = normal scheduling); not permitted -> normal, with a "
                                                  "warning", min=0, max=99)  # fmt: skip
        """The node's process spins at this priority (:func:`~sim2real.ros_nodes.node_main.run_node`)."""
        policy = OnnxPolicy(path)
        trained_for = policy.metadata.robot.get("model", "")
        if robot_model and trained_for != robot_model:
            raise CheckpointError(f"{path} was trained for robot model {trained_for!r}, this robot is {robot_model!r}")
        self.ctl = PolicyController(policy, safety, tuple(setpoint), limits=limits)
        rate = float(rate_override or self.ctl.adapter.control_rate_hz)
        if rate_override and abs(rate_override - self.ctl.adapter.control_rate_hz) > 1e-9:
            node.logger.warning("control_rate_hz %.1f differs from the policy's trained %.1f Hz", rate,
                                self.ctl.adapter.control_rate_hz)  # fmt: skip
        node.logger.info("policy %s (run %s): %d -> %d at %.0f Hz, safe mode %s, trigger %s", path,
                         self.ctl.policy.metadata.run_id, self.ctl.adapter.obs_dim, self.ctl.adapter.act_dim,
                         rate, self.ctl.cfg.safe_mode, self.trigger)  # fmt: skip

        self.cmd = node.create_publisher(m.Float32MultiArray, "cmd_rpm", DEFAULT)
        self.obs_pub = node.create_publisher(m.Float32MultiArray, "~/obs", DEFAULT)
        self.act_pub = node.create_publisher(m.Float32MultiArray, "~/action", DEFAULT)
        self.diag = node.create_publisher(m.DiagnosticArray, "/diagnostics", DEFAULT)
        self.setpoint_pub = node.create_publisher(m.PointStamped, "~/setpoint_active", LATCHED)
        node.create_subscription(m.PointStamped, "~/setpoint", self._on_setpoint, DEFAULT)
        node.create_subscription(m.Odometry, "odom", self._on_odom, SENSOR_DATA)
        node.create_subscription(m.Bool, "arm", lambda msg: self.ctl.on_arm(msg.data), DEFAULT)
        node.create_subscription(m.Bool, "estop", self._on_estop, DEFAULT)
        node.create_subscription(m.Bool, "~/clear_estop", self._on_clear, DEFAULT)
        node.create_subscription(m.String, "~/reload", lambda msg: self._reload(msg.data), DEFAULT)
        node.add_on_set_parameters_callback(self._on_params)
        self.control_timer = node.create_timer(1.0 / rate, self._on_timer)
        node.create_timer(1.0 / diag_hz, self._publish_diagnostics)
        self._last_state: State | None = None
        self._overruns_seen = 0
        self._swap_ticks = 0  # ticks left in the window of the last swap
        self._reloads_seen = 0
        self.swap_missed_ticks = 0
        """Periods skipped while a new policy was loading or in the two ticks from its swap."""
        self._publish_setpoint()

    # ------------------------------------------------------------------------------------------ callbacks
    def _on_odom(self, msg: m.Odometry) -> None:
        if self.frame and msg.header.frame_id != self.frame:
            self.ctl.reject_input(f"odometry in frame {msg.header.frame_id!r}, expected {self.frame!r}")
            self.node.logger.warning("odometry rejected: %s", self.ctl.diagnostics()["fault"])
        elif not self.ctl.on_odometry(OdometrySample.from_msg(msg, self.node.monotonic_s())):
            self.node.logger.warning("odometry rejected: %s", self.ctl.diagnostics()["fault"])
        if self.trigger == "odometry":
            self._publish(self.ctl.tick(self.node.monotonic_s()))

    def _on_timer(self) -> None:
        t = self.control_timer.schedule
        skipped = t.overruns - self._overruns_seen
        if skipped:  # log each skip once, and charge it to a policy swap if one was under way
            self._overruns_seen = t.overruns
            swapping = self._swap_ticks > 0 or self.ctl.reloading
            self.swap_missed_ticks += skipped if swapping else 0
            during = "; during a policy swap" if swapping else ""
            self.node.logger.warning("control timer skipped %d period(s) (%.1f ms late; state %s%s)", skipped,
                                     1e3 * t.late_s, self.ctl.state.value, during)  # fmt: skip
        if self.require_recorder:
            self.ctl.arm_inhibit = "" if self.obs_pub.subscription_count > 0 else "waiting for a recorder on ~/obs"
        if self.trigger == "timer":
            self._publish(self.ctl.tick(self.node.monotonic_s()))
        elif self.ctl.is_stale(self.node.monotonic_s()):  # odometry-triggered: the watchdog still runs
            self._publish(self.ctl.tick(self.node.monotonic_s()))
        # A swap's window: from the request, through the tick that swapped, to the two ticks after it.
        if self.ctl.counters.reloads != self._reloads_seen:
            self._reloads_seen, self._swap_ticks = self.ctl.counters.reloads, 2
        else:
            self._swap_ticks = max(0, self._swap_ticks - 1)

    def _on_setpoint(self, msg: m.PointStamped) -> None:
        p = msg.point
        if self.frame and msg.header.frame_id != self.frame:
            self.ctl.counters.rejected_setpoints += 1
            self.ctl.counters.last_setpoint_error = f"set-point in frame {msg.header.frame_id!r}, expected {self.frame!r}"
        elif self.ctl.on_setpoint((p.x, p.y, p.z)):
            self._publish_setpoint()
            return
        self.node.logger.warning("set-point refused: %s", self.ctl.counters.last_setpoint_error)

    def _publish_setpoint(self) -> None:
        x, y, z = (float(v) for v in self.ctl.setpoint)
        self.setpoint_pub.publish(m.PointStamped(m.Header(self.node.now(), self.frame), m.Point(x, y, z)))

    def _on_estop(self, msg: m.Bool) -> None:
        if msg.data:
            self.ctl.on_estop(True)
            self.node.logger.error("E-STOP: safe output latched (publish true on ~/clear_estop, then arm again)")
            self._publish(self.ctl.tick(self.node.monotonic_s()))  # act now, not at the next tick

    def _on_clear(self, msg: m.Bool) -> None:
        if msg.data:
            self.ctl.clear_estop()
            self.node.logger.warning("e-stop cleared; disarmed until armed again")

    def _reload(self, path: str) -> None:
        self.node.logger.info("reloading policy from %s (in the background)", path)
        self.ctl.request_reload(path)

    def _on_params(self, params: dict) -> SetResult:
        if "policy_path" in params:
            self._reload(str(params["policy_path"]))
        return SetResult(True)

    # ------------------------------------------------------------------------------------------ outputs
    def _publish(self, out: TickResult) -> None:
        self.cmd.publish(m.Float32MultiArray.vector(out.rpm.tolist(), "rpm"))
        if out.obs is not None:
            self.obs_pub.publish(m.Float32MultiArray.vector(out.obs.tolist(), "obs"))
        self.act_pub.publish(m.Float32MultiArray.vector(out.action.tolist(), "action"))
        if out.state is not self._last_state:
            log = self.node.logger.info if out.state in (State.RUNNING, State.DISARMED) else self.node.logger.warning
            log("state %s%s", out.state.value, f" ({out.reason})" if out.reason else "")
            self._last_state = out.state

    def close(self) -> None:
        """Log the final counters (the node is stopping)."""
        c = self.ctl.counters
        self.node.logger.info("stopped after %d ticks (%d ran the policy, %d safe; %d inputs rejected; %d missed)",
                              c.ticks, c.policy_ticks, c.safe_ticks, c.rejected_inputs, self.control_timer.overruns)  # fmt: skip

    def _publish_diagnostics(self) -> None:
        t = self.control_timer.schedule
        d = {**self.ctl.diagnostics(), "missed_ticks": str(t.overruns),  # control periods skipped
             "missed_ticks_in_swaps": str(self.swap_missed_ticks),  # of which while a policy was swapped in
             "worst_late_ms": f"{1e3 * t.worst_late_s:.1f}"}  # the latest a tick ran after its deadline
        status = m.DiagnosticStatus(_LEVEL[self.ctl.state], f"{self.node.fully_qualified_name}: policy",
                                    d["state"], "sim2real", [m.KeyValue(k, v) for k, v in d.items()])  # fmt: skip
        self.diag.publish(m.DiagnosticArray(m.Header(self.node.now(), ""), [status]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``policy_node`` executable (``--ros-args`` as ``ros2 launch`` passes them)."""
    return run_node("policy", PolicyNode, argv)


if __name__ == "__main__":
    sys.exit(main())
