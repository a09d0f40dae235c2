"""The simulated quadrotor behind ``sim_robot_node``, without ROS: RPM commands in, odometry out.

:class:`SimRobot` steps one :class:`~sim2real.tasks.quadrotor_hover.env.QuadrotorHoverEnv` (nominal physics, the
evaluation's per-episode disturbance) by one control period per :meth:`step`, applying the latest motor
command. Like a real flight controller it has its own command timeout: when no command arrived for
``command_timeout_s`` the motors go idle (and ``command_timeouts`` counts it), whatever the policy node does.
Options shift the physics (``shift_file``, a :class:`~sim2real.tasks.quadrotor_hover.env.Shift`: a "real robot"
that differs from the training model) and add Gaussian sensor noise to the odometry. Odometry follows REP-105: pose in the world
frame, twist in the body frame (``child_frame_id``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from sim2real.ros_nodes import messages as m
from sim2real.sim.quadrotor import OMEGA, POS, QUAT, VEL, quat_to_rotmat
from sim2real.tasks.quadrotor_hover.env import EVAL_STARTS, QuadrotorHoverEnv, Shift, hover_eval_config


@dataclass
class SimRobotConfig:
    """Parameters of ``sim_robot_node`` (same names)."""

    rate_hz: float = 100.0
    start: str = "nominal"  # nominal | hard (the evaluation's start distributions)
    seed: int = 0
    model: str = "crazyflie-paper"
    command_timeout_s: float = 0.1
    shift_file: str = ""  # physics outside the training randomisation (config/shifts/*.yaml); '' = none
    position_noise_m: float = 0.0
    velocity_noise_mps: float = 0.0
    world_frame: str = "world"
    body_frame: str = "base_link"
    hold_until_command: bool = True  # physics frozen (resting) until the first command that spins a motor

    def __post_init__(self) -> None:
        if self.start not in EVAL_STARTS:
            raise ValueError(f"start must be one of {', '.join(EVAL_STARTS)}, got {self.start!r}")
        for name in ("rate_hz", "command_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.position_noise_m < 0 or self.velocity_noise_mps < 0:
            raise ValueError("sensor noise must be >= 0")


class SimRobot:
    """One simulated quadrotor in real time (the caller's clock): :meth:`command`, :meth:`step`, :meth:`odometry`."""

    def __init__(self, cfg: SimRobotConfig | None = None) -> None:
        self.cfg = cfg or SimRobotConfig()
        base = hover_eval_config(self.cfg.start, 1)
        base = replace(base, model=self.cfg.model, dt=1.0 / self.cfg.rate_hz, termination_box=math.inf,
                       episode_steps=2**31 - 1, device="cpu", compile=False,
                       shift=Shift.from_yaml(self.cfg.shift_file) if self.cfg.shift_file else Shift())  # fmt: skip
        self.env = QuadrotorHoverEnv(base)
        self.env.reset(self.cfg.seed)
        self.max_rpm = self.env.model.max_rpm
        self._action = torch.full((1, 4), -1.0)
        self._last_command_s: float | None = None
        self._rng = np.random.default_rng(self.cfg.seed + 1)
        self.steps = self.command_timeouts = self.rejected_commands = 0
        self.timed_out = False
        self.holding = self.cfg.hold_until_command

    def command(self, rpm: list[float] | np.ndarray, now_s: float) -> bool:
        """Accept 4 motor set-points in RPM (clipped to [0, max_rpm]); NaN/Inf or a wrong length is refused."""
        values = np.asarray(rpm, dtype=np.float64)
        if values.shape != (4,) or not np.isfinite(values).all():
            self.rejected_commands += 1
            return False
        a = 2.0 * np.clip(values, 0.0, self.max_rpm) / self.max_rpm - 1.0
        self._action = torch.as_tensor(a, dtype=torch.float32)[None]
        self._last_command_s = now_s
        self.holding = self.holding and not (values > 0).any()
        return True

    def step(self, now_s: float) -> None:
        """Advance one control period with the latest command, or idle motors after the command timeout.

        While :attr:`holding` (``hold_until_command``, no motor commanded yet) the state does not change: the
        robot rests where it starts, as a real one would sit on its stand until the motors spin.
        """
        if self.holding:
            return
        stale = self._last_command_s is None or now_s - self._last_command_s > self.cfg.command_timeout_s
        if stale and not self.timed_out and self._last_command_s is not None:
            self.command_timeouts += 1
        self.timed_out = stale
        self.env.step(torch.full((1, 4), -1.0) if stale else self._action)
        self.steps += 1

    @property
    def position(self) -> np.ndarray:
        return self.env.state[0, POS].double().numpy()

    def odometry(self, stamp: m.Time) -> m.Odometry:
        """The state as ``nav_msgs/Odometry`` (world pose, body twist), with the configured sensor noise."""
        s = self.env.state[0].double()
        rot = quat_to_rotmat(s[QUAT])
        v_body = (rot.T @ s[VEL]).numpy()
        p = s[POS].numpy() + self._rng.normal(0.0, self.cfg.position_noise_m, 3) * (self.cfg.position_noise_m > 0)
        v = v_body + self._rng.normal(0.0, self.cfg.velocity_noise_mps, 3) * (self.cfg.velocity_noise_mps > 0)
        w, x, y, z = (float(c) for c in s[QUAT])
        om = s[OMEGA].numpy()
        pose = m.PoseWithCovariance(m.Pose(m.Point(*map(float, p)), m.Quaternion(x, y, z, w)))
        twist = m.TwistWithCovariance(m.Twist(m.Vector3(*map(float, v)), m.Vector3(*map(float, om))))
        return m.Odometry(m.Header(stamp, self.cfg.world_frame), self.cfg.body_frame, pose, twist)
