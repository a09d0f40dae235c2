"""The legged deploy logic without ROS: the observation from the policy file equals the simulator's, joints by name,
staged start, damping fallback, e-stop, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from helpers import small_humanoid_policy  # noqa: E402

from sim2real.core.files import CheckpointError  # noqa: E402
from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.ros_nodes.legged_core import JointMap, LeggedController, LeggedSafetyConfig, State  # noqa: E402
from sim2real.ros_nodes.legged_sim_core import LeggedSimRobot  # noqa: E402

DT = 0.02


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_humanoid_policy(tmp_path_factory.mktemp("runs"))


@pytest.fixture()
def sim() -> LeggedSimRobot:
    robot = LeggedSimRobot()
    yield robot
    robot.close()


def feed(ctl: LeggedController, sim: LeggedSimRobot, now: float, cmd: tuple[float, float, float] = (0, 0, 0)) -> None:
    names, q, qd = sim.joint_state()
    gyro, quat = sim.imu()
    assert ctl.on_joint_state(names, q, qd, now) and ctl.on_imu(gyro, quat, now)
    ctl.on_cmd_vel(*cmd, now)


def test_observation_and_targets_equal_the_simulators(policy_path: Path, sim: LeggedSimRobot) -> None:
    """From the sim robot's JointState (model order) and IMU, the node's observation is the env's own (1e-5), and its
    targets are the env's ``clip(default + scale * a)`` for the same action, reaching the joints by name."""
    ctl = LeggedController(OnnxPolicy(policy_path), LeggedSafetyConfig(autostart=True, start_duration_s=0, hold_s=0))
    env = sim.env
    assert sim.joint_names != ctl.adapter.joints  # the model's joint order is not the policy's
    cmd = (0.4, -0.1, 0.2)
    env.set_commands(torch.tensor([cmd]))
    t = 0.0
    for _ in range(20):
        feed(ctl, sim, t, cmd)
        env._action[:] = torch.as_tensor(ctl._last_action, dtype=torch.float64)  # the env's last action = the node's
        out = ctl.tick(t)
        assert out.state is State.RUNNING and out.obs is not None and out.action is not None and out.targets is not None
        np.testing.assert_allclose(out.obs, env.observe()["policy"][0].numpy(), atol=1e-5)
        a = torch.as_tensor(out.action, dtype=torch.float64)
        want = torch.clamp(env._pose_t + env._scale_t * a, env.act_low.double(), env.act_high.double()).numpy()
        np.testing.assert_allclose(out.targets, want, atol=1e-9)
        assert sim.command(ctl.command_map.robot_joints, out.targets, t)
        sim.step(t)
        t += DT
    np.testing.assert_allclose(sim._targets, want, atol=1e-9)  # the servos got them, joint by joint


def test_commands_follow_the_robot_controllers_joint_order(policy_path: Path, sim: LeggedSimRobot) -> None:
    order = list(reversed(sim.actuator_joints))
    ctl = LeggedController(OnnxPolicy(policy_path), LeggedSafetyConfig(autostart=True, start_duration_s=0, hold_s=0),
                           command_joints=order)  # fmt: skip
    feed(ctl, sim, 0.0)
    out = ctl.tick(0.0)
    assert out.targets is not None
    policy_order = ctl.adapter.targets(out.action)
    by_name = dict(zip(order, out.targets))
    assert [by_name[j] for j in ctl.adapter.joints] == pytest.approx(list(policy_order))
    kp, _ = ctl.gains()
    assert dict(zip(order, kp)) == dict(zip(ctl.adapter.joints, ctl.adapter.kp))


def test_staged_start_moves_to_the_default_pose_then_runs(policy_path: Path, sim: LeggedSimRobot) -> None:
    cfg = LeggedSafetyConfig(start_duration_s=1.0, hold_s=0.5)
    ctl = LeggedController(OnnxPolicy(policy_path), cfg)
    feed(ctl, sim, 0.0)
    assert ctl.tick(0.0).targets is None and ctl.state is State.WAITING  # not armed: nothing sent
    ctl.on_arm(True)
    start = sim.joint_state()[1][ctl.robot_map.index]
    default = ctl.adapter.default.numpy()
    seen = []
    for k in range(100):
        t = k * DT
        feed(ctl, sim, t)
        out = ctl.tick(t)
        seen.append((t, out.state, out.targets))
    by_t = {round(t, 2): (s, x) for t, s, x in seen}
    np.testing.assert_allclose(by_t[0.0][1], start, atol=1e-9)  # from the measured pose ...
    np.testing.assert_allclose(by_t[0.5][1], start + 0.5 * (default - start), atol=1e-9)  # ... linearly ...
    np.testing.assert_allclose(by_t[1.2][1], default, atol=1e-9)  # ... to the default pose, held
    assert by_t[1.48][0] is State.STARTING and by_t[1.5][0] is State.RUNNING


def test_damping_on_tilt_stale_inputs_nan_and_estop(policy_path: Path, sim: LeggedSimRobot) -> None:
    policy = OnnxPolicy(policy_path)
    cfg = LeggedSafetyConfig(autostart=True, start_duration_s=0, hold_s=0, watchdog_timeout_s=0.1)
    names, q, qd = sim.joint_state()
    upright = np.array([1.0, 0.0, 0.0, 0.0])
    tilted = np.array([np.cos(0.5), np.sin(0.5), 0.0, 0.0])  # 57 deg about x

    def running() -> LeggedController:
        ctl = LeggedController(policy, cfg)
        ctl.on_joint_state(names, q, qd, 0.0)
        ctl.on_imu(np.zeros(3), upright, 0.0)
        assert ctl.tick(0.0).state is State.RUNNING
        return ctl

    ctl = running()  # tilt beyond 45 deg
    ctl.on_imu(np.zeros(3), tilted, 0.02)
    ctl.on_joint_state(names, q, qd, 0.02)
    out = ctl.tick(0.02)
    assert out.state is State.DAMPING and "tilt" in out.reason
    np.testing.assert_allclose(out.targets, q[ctl.robot_map.index], atol=1e-12)  # hold nothing: damp
    ctl.on_imu(np.zeros(3), upright, 0.04)
    assert ctl.tick(0.04).state is State.DAMPING  # latched until armed again
    ctl.on_arm(True)
    assert ctl.tick(0.04).state is State.RUNNING  # a new (here instant) staged start

    ctl = running()  # stale joint states
    ctl.on_imu(np.zeros(3), upright, 0.2)
    out = ctl.tick(0.2)
    assert out.state is State.DAMPING and "stale" in out.reason and ctl.counters.watchdog_trips == 1

    ctl = running()  # NaN in a joint state, a JointState without a policy joint
    bad = qd.copy()
    bad[3] = np.nan
    assert not ctl.on_joint_state(names, q, bad, 0.02)
    assert ctl.state is State.DAMPING and "non-finite" in ctl.reason
    ctl = running()
    assert not ctl.on_joint_state(names[1:], q[1:], qd[1:], 0.02)
    assert ctl.state is State.DAMPING and "missing ['" + names[0] + "']" in ctl.reason

    ctl = running()  # a joint too fast
    fast = qd.copy()
    fast[0] = 50.0
    ctl.on_joint_state(names, q, fast, 0.02)
    ctl.on_imu(np.zeros(3), upright, 0.02)
    assert ctl.tick(0.02).state is State.DAMPING and "joint velocity" in ctl.reason

    ctl = running()  # e-stop: latched, arming refused until cleared
    ctl.on_estop(True)
    assert ctl.tick(0.02).state is State.ESTOP
    ctl.on_arm(True)
    assert ctl.state is State.ESTOP
    ctl.clear_estop()
    ctl.on_arm(True)
    ctl.on_joint_state(names, q, qd, 0.04)
    ctl.on_imu(np.zeros(3), upright, 0.04)
    assert ctl.tick(0.04).state is State.RUNNING

    ctl = running()  # a NaN command is refused and the old one stays; a stale one is a zero command
    assert ctl.on_cmd_vel(0.5, 0.0, 0.0, 0.0) and not ctl.on_cmd_vel(np.nan, 0.0, 0.0, 0.01)
    ctl.on_joint_state(names, q, qd, 0.02)
    ctl.on_imu(np.zeros(3), upright, 0.02)
    assert ctl.tick(0.02).obs[6:9].tolist() == [0.5, 0.0, 0.0]
    ctl.on_joint_state(names, q, qd, 0.9)
    ctl.on_imu(np.zeros(3), upright, 0.9)
    assert ctl.tick(0.9).obs[6:9].tolist() == [0.0, 0.0, 0.0]


def test_a_robot_without_the_policys_joints_or_policy_without_legged_metadata_is_refused(policy_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['left_knee'\].*not driven by the policy \['tail'\]"):
        JointMap(["left_knee", "right_knee"], ["right_knee", "tail"])
    assert JointMap(["a", "b"], ["b", "tail", "a"], ignore=("tail",)).index.tolist() == [2, 0]
    with pytest.raises(ValueError, match="duplicate"):
        JointMap(["a"], ["a", "a"])
    policy = OnnxPolicy(policy_path)
    with pytest.raises(ValueError, match="not driven by the policy"):
        LeggedController(policy, command_joints=[*policy.metadata.robot["joint_names"], "extra"])
    hover = OnnxPolicy(Path(__file__).parents[1] / "data" / "quadrotor_hover.onnx")
    with pytest.raises(CheckpointError, match="not a legged policy"):
        LeggedController(hover)


def test_export_ros2_control_writes_the_policys_controller_and_gains(policy_path: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import yaml

    from sim2real.cli.main import main

    out = tmp_path / "robot.yaml"
    assert main(["export", "ros2-control", str(policy_path), "--out", str(out), "--controller", "legs"]) == 0
    assert str(out) in capsys.readouterr().out
    cfg = yaml.safe_load(out.read_text())
    robot = OnnxPolicy(policy_path).metadata.robot
    cm = cfg["controller_manager"]["ros__parameters"]
    assert cm["legs"]["type"] == "forward_command_controller/ForwardCommandController" and cm["update_rate"] == 500
    assert cfg["legs"]["ros__parameters"] == {"joints": robot["joint_names"], "interface_name": "position"}
    gains = cfg["sim2real_pd_gains"]
    assert gains["joints"] == robot["joint_names"] and gains["kp"] == robot["kp"] and gains["kd"] == robot["kd"]
    hover = Path(__file__).parents[1] / "data" / "quadrotor_hover.onnx"
    assert main(["export", "ros2-control", str(hover), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "not a legged policy" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()
    assert main(["export", "ros2-control", str(policy_path), "--update-rate", "0"]) == 2
