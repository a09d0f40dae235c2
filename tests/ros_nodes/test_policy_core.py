"""The policy node's logic: same observation as the simulator, closed-loop hover, every safety behaviour."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from helpers import TRAINED_POLICY

from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.ros_nodes.policy_core import OdometrySample, PolicyController, SafetyConfig, State  # noqa: E402
from sim2real.sim.quadrotor import quat_to_rotmat  # noqa: E402
from sim2real.sim.safety import SafetyLimits
from sim2real.tasks.quadrotor_hover.env import QuadrotorHoverEnv, hover_eval_config  # noqa: E402

TRAINED = TRAINED_POLICY
DT = 0.01


@pytest.fixture(scope="module")
def policy() -> OnnxPolicy:
    return OnnxPolicy(TRAINED)


def _env(seed: int = 0) -> QuadrotorHoverEnv:
    base = replace(hover_eval_config("nominal", 1), termination_box=math.inf, episode_steps=10_000)
    env = QuadrotorHoverEnv(base)
    env.reset(seed)
    return env


def _odom(env: QuadrotorHoverEnv, t: float) -> OdometrySample:
    """Odometry as a robot (and sim_robot_node) reports it: twist in the body frame."""
    s = env.state[0].double()
    rot = quat_to_rotmat(s[3:7])
    return OdometrySample(s[0:3].numpy(), s[3:7].numpy(), (rot.T @ s[7:10]).numpy(), s[10:13].numpy(), t)


def test_observation_equals_the_simulators(policy: OnnxPolicy) -> None:
    env = _env(3)
    for _ in range(5):  # a few steps so that the history is not constant
        env.step(torch.rand(1, 4) * 2 - 1)
    ctl = PolicyController(policy)
    ctl.history = env.history[0].numpy().copy()
    got = ctl.adapter.observation(_odom(env, 0.0), np.zeros(3), ctl.history)
    want = env.observe(noise=torch.zeros(1, 18))["policy"][0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_closed_loop_hover_through_the_controller(policy: OnnxPolicy) -> None:
    env = _env(1)
    ctl = PolicyController(policy, SafetyConfig(autoarm=True))
    errors = []
    for k in range(500):  # 5 s at 100 Hz, odometry then tick, as the node's timer sees it
        t = k * DT
        assert ctl.on_odometry(_odom(env, t))
        out = ctl.tick(t)
        assert out.state is State.RUNNING and out.obs is not None
        np.testing.assert_allclose(out.rpm, (out.action + 1) / 2 * 21702.0, rtol=1e-6)
        env.step(torch.from_numpy(out.action)[None])
        errors.append(float(env.state[0, 0:3].norm()))
    assert np.mean(errors[-200:]) < 0.10 and max(errors) < 0.6
    np.testing.assert_array_equal(ctl.history[-1], out.action)


def _running(policy: OnnxPolicy, limits: SafetyLimits | None = None, **cfg: object) -> tuple[PolicyController, QuadrotorHoverEnv]:
    ctl = PolicyController(policy, SafetyConfig(**cfg), limits=limits)  # type: ignore[arg-type]
    env = _env(2)
    ctl.on_odometry(_odom(env, 0.0))
    ctl.on_arm(True)
    assert ctl.tick(0.0).state is State.RUNNING
    return ctl, env


def test_staged_start_and_autoarm(policy: OnnxPolicy) -> None:
    ctl = PolicyController(policy)
    env = _env()
    ctl.on_odometry(_odom(env, 0.0))
    out = ctl.tick(0.0)
    assert out.state is State.DISARMED and np.all(out.rpm == 0) and out.obs is None
    ctl.on_arm(True)
    assert ctl.tick(0.001).state is State.RUNNING
    ctl.on_arm(False)
    assert ctl.tick(0.002).state is State.DISARMED
    auto = PolicyController(policy, SafetyConfig(autoarm=True))
    assert auto.tick(0.0).state is State.DISARMED  # no odometry yet: not armed
    auto.on_odometry(_odom(env, 0.0))
    auto.arm_inhibit = "waiting for a recorder"  # e.g. require_recorder and nobody subscribed yet
    out = auto.tick(0.0)
    assert out.state is State.DISARMED and "waiting for a recorder" in out.reason
    auto.on_arm(True)
    assert auto.tick(0.0).state is State.DISARMED
    auto.arm_inhibit = ""
    assert auto.tick(0.0).state is State.RUNNING


def test_watchdog_trips_within_its_period_and_recovers(policy: OnnxPolicy) -> None:
    ctl, env = _running(policy, watchdog_timeout_s=0.05)
    states = [ctl.tick(k * DT).state for k in range(1, 10)]  # no new odometry after t = 0
    assert states[:5] == [State.RUNNING] * 5 and states[5:] == [State.STALE] * 4  # stale after 0.05 s
    assert ctl.counters.watchdog_trips == 1 and np.all(ctl.tick(0.1).rpm == 0)
    ctl.on_odometry(_odom(env, 0.2))
    assert ctl.tick(0.2).state is State.RUNNING


@pytest.mark.parametrize("field,value,reason", [
    ("position", [math.nan, 0, 0], "non-finite"), ("linear_velocity_body", [0, math.inf, 0], "non-finite"),
    ("position", [0.0, 0.7, 0], "position beyond position_box_m"), ("linear_velocity_body", [3.0, 0, 0], "speed"),
    ("angular_velocity_body", [0, 0, 25.0], "body rate"), ("quaternion_wxyz", [0, 0, 0, 0], "unit quaternion"),
    ("quaternion_wxyz", [math.cos(math.radians(35)), math.sin(math.radians(35)), 0, 0], "tilt"),  # 70 deg
])  # fmt: skip
def test_bad_odometry_is_rejected_with_safe_output(policy: OnnxPolicy, field: str, value: list, reason: str) -> None:
    ctl, env = _running(policy)
    bad = _odom(env, 0.01)
    setattr(bad, field, np.array(value, dtype=np.float64))
    assert not ctl.on_odometry(bad)
    out = ctl.tick(0.01)  # the very next tick, not after the watchdog
    assert out.state is State.FAULT and reason in out.reason and np.all(out.rpm == 0)
    assert ctl.counters.rejected_inputs == 1
    assert ctl.on_odometry(_odom(env, 0.02)) and ctl.tick(0.02).state is State.RUNNING


def test_estop_is_latched(policy: OnnxPolicy) -> None:
    ctl, env = _running(policy)
    ctl.on_estop(True)
    for k in range(1, 4):
        ctl.on_odometry(_odom(env, k * DT))
        ctl.on_estop(False)  # releasing the button does not clear it
        ctl.on_arm(True)  # nor does arming
        out = ctl.tick(k * DT)
        assert out.state is State.ESTOP and np.all(out.rpm == 0)
    ctl.clear_estop()
    assert ctl.tick(0.05).state is State.DISARMED  # cleared, still needs arming
    ctl.on_arm(True)
    assert ctl.tick(0.05).state is State.RUNNING


def test_clamping_rate_limit_and_hover_safe_mode(policy: OnnxPolicy) -> None:
    ctl, env = _running(policy, SafetyLimits(action_min=-0.2, action_max=0.5), max_action_step=0.05)
    last = ctl.history[-1].copy()  # inside the clamp range already (the first tick ran in _running)
    for k in range(1, 30):
        ctl.on_odometry(_odom(env, k * DT))
        out = ctl.tick(k * DT)
        assert np.all(out.action >= -0.2) and np.all(out.action <= 0.5)  # the hard clamp always holds
        assert np.abs(out.action - last).max() <= 0.05 + 1e-6  # and the rate limit once inside it
        last = out.action
        env.step(torch.from_numpy(out.action)[None])
    assert ctl.counters.rate_limited > 0 and ctl.counters.clamped > 0
    hover = PolicyController(policy, SafetyConfig(safe_mode="hover"))
    out = hover.tick(0.0)
    assert out.state is State.DISARMED
    np.testing.assert_allclose(out.rpm, (policy.metadata.action_meaning["hover_action"] + 1) / 2 * 21702, rtol=1e-5)
    with pytest.raises(ValueError, match="safe_mode"):
        SafetyConfig(safe_mode="land")


def _with_metadata(tmp_path: Path, name: str, **changes: object) -> Path:
    model = onnx.load(TRAINED)
    for prop in model.metadata_props:
        if prop.key == "sim2real":
            meta = json.loads(prop.value)
            for key, value in changes.items():
                meta[key] = value
            prop.value = json.dumps(meta)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_reload_swaps_between_ticks_and_refuses_bad_files(policy: OnnxPolicy, tmp_path: Path) -> None:
    ctl, env = _running(policy)
    good = _with_metadata(tmp_path, "retrained.onnx", run_id="retrained")
    ctl.request_reload(good)  # loads in the background while ticks go on
    t, deadline = DT, time.monotonic() + 10
    while ctl.counters.reloads == 0 and time.monotonic() < deadline:
        ctl.on_odometry(_odom(env, t))
        assert ctl.tick(t).state is State.RUNNING  # no tick dropped or failed during the load
        t += DT
    assert ctl.policy.metadata.run_id == "retrained"
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(TRAINED.read_bytes()[:5000])
    heavier = dict(policy.metadata.robot, mass=0.05)
    for bad, why in ((corrupt, "not a readable ONNX"), (tmp_path / "missing.onnx", "not found"),
                     (_with_metadata(tmp_path, "heavy.onnx", robot=heavier), "robot"),
                     (_with_metadata(tmp_path, "fast.onnx", control_rate_hz=500.0, control_dt=0.002), "control_rate_hz"),
                     (_with_metadata(tmp_path, "odd.onnx", control_rate_hz=500.0), "does not match control_dt")):  # fmt: skip
        before = ctl.counters.reload_failures
        ctl.request_reload(bad, wait=True)
        ctl.on_odometry(_odom(env, t))
        assert ctl.tick(t).state is State.RUNNING and ctl.policy.metadata.run_id == "retrained"
        assert ctl.counters.reload_failures == before + 1 and why in ctl.counters.last_reload_error
        t += DT


def test_setpoint_input_moves_the_origin_of_the_position_error_within_its_box(policy: OnnxPolicy) -> None:
    ctl, env = _running(policy, SafetyLimits(setpoint_box_m=0.3))
    odom = _odom(env, DT)
    before = ctl.adapter.observation(odom, ctl.setpoint, ctl.history)
    assert ctl.on_setpoint((0.1, -0.2, 0.0)) and ctl.counters.setpoints == 1
    after = ctl.adapter.observation(odom, ctl.setpoint, ctl.history)
    np.testing.assert_allclose(after[:3], before[:3] - np.array([0.1, -0.2, 0.0], np.float32), atol=1e-6)
    for bad, why in (((0.4, 0.0, 0.0), "setpoint_box_m"), ((np.nan, 0.0, 0.0), "finite"), ((1.0, 2.0), "finite")):
        assert not ctl.on_setpoint(bad) and why in ctl.counters.last_setpoint_error
    assert ctl.counters.rejected_setpoints == 3 and ctl.setpoint.tolist() == [0.1, -0.2, 0.0]
    assert ctl.on_setpoint((0.0, 0.0, 0.25))  # the box is around the configured set-point, not the last one
    assert ctl.diagnostics()["setpoint"] == "[0.0, 0.0, 0.25]" and ctl.diagnostics()["rejected_setpoints"] == "3"
