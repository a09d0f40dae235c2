"""The simulated robot behind sim_robot_node, flown by the policy node's controller through real CDR messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from helpers import REPO, TRAINED_POLICY

from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.policy_core import OdometrySample, PolicyController, SafetyConfig, State  # noqa: E402
from sim2real.ros_nodes.sim_robot_core import SimRobot, SimRobotConfig  # noqa: E402

TRAINED = TRAINED_POLICY
DT = 0.01


def _fly(robot: SimRobot, ctl: PolicyController, ticks: int, t0: float = 0.0, send: bool = True) -> list[float]:
    """Odometry -> bytes -> controller -> Float32MultiArray bytes -> robot, as the two nodes exchange them."""
    errors = []
    for k in range(ticks):
        t = t0 + k * DT
        wire = robot.odometry(m.Time.from_seconds(t)).serialize()
        ctl.on_odometry(OdometrySample.from_msg(m.Odometry.deserialize(wire), t))
        out = ctl.tick(t)
        if send:
            cmd = m.Float32MultiArray.deserialize(m.Float32MultiArray.vector(out.rpm.tolist(), "rpm").serialize())
            assert robot.command(cmd.data, t)
        robot.step(t)
        errors.append(float(np.linalg.norm(robot.position)))
    return errors


def test_policy_hovers_the_sim_robot_over_the_wire_format() -> None:
    robot = SimRobot(SimRobotConfig(seed=4))
    ctl = PolicyController(OnnxPolicy(TRAINED), SafetyConfig(autoarm=True))
    errors = _fly(robot, ctl, 500)
    assert np.mean(errors[-200:]) < 0.10 and max(errors) < 0.6 and ctl.state is State.RUNNING
    assert robot.command_timeouts == 0


def test_command_timeout_idles_the_motors() -> None:
    robot = SimRobot(SimRobotConfig(seed=5, command_timeout_s=0.05))
    ctl = PolicyController(OnnxPolicy(TRAINED), SafetyConfig(autoarm=True))
    _fly(robot, ctl, 200)
    z = robot.position[2]
    _fly(robot, ctl, 50, t0=2.0, send=False)  # the policy node died: no more commands
    assert robot.timed_out and robot.command_timeouts == 1
    assert robot.position[2] < z - 0.05  # motors idle: it falls
    assert robot.env.state[0, 13:17].max() < 0.5  # motor speeds decaying toward 0


def test_parameter_shift_noise_and_bad_commands() -> None:
    nominal = SimRobot(SimRobotConfig(seed=6))
    heavy = SimRobot(SimRobotConfig(seed=6, shift_file=str(REPO / "config" / "shifts" / "heavy_weak.yaml")))
    for robot in (nominal, heavy):
        for k in range(30):
            robot.command([nominal.max_rpm * 0.6] * 4, k * DT)
            robot.step(k * DT)
    assert heavy.position[2] < nominal.position[2]  # same thrust, more mass: lower
    noisy = SimRobot(SimRobotConfig(seed=6, position_noise_m=0.01))
    a, b = noisy.odometry(m.Time()), noisy.odometry(m.Time())
    assert a.pose.pose.position.x != b.pose.pose.position.x
    assert not nominal.command([math.nan, 0, 0, 0], 0.0) and not nominal.command([1, 2, 3], 0.0)
    assert nominal.rejected_commands == 2
    with pytest.raises(ValueError, match="start"):
        SimRobotConfig(start="upside-down")
