"""Fly a simulated quadrotor whose physics differ from the training model, and log it as a robot would.

The stand-in for a real robot in system identification and finetuning: one quadrotor of the hover task with the
physics of a :class:`~sim2real.tasks.quadrotor_hover.env.Shift` (outside the training randomisation; its only
disturbance is the shift's steady wind), flown by a deployed policy through a set-point schedule inside the safety
limits' set-point box (the excitation), logged as odometry, the commanded actions and the set-points
(:class:`~sim2real.policies.world_model.Flight`): what the recorder sees on a robot, no motor speeds.
:class:`SimulatedRobot` flies on from where it stopped, as a robot does between finetuning iterations, and counts
the steps that violated the :class:`~sim2real.sim.safety.SafetyLimits`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch

from sim2real.core.policy_file import OnnxPolicy
from sim2real.policies.world_model import ODOM_DIM, Flight
from sim2real.sim.quadrotor import POS, QUAT, RPM
from sim2real.sim.safety import SafetyLimits
from sim2real.tasks.quadrotor_hover.env import QuadrotorHoverEnv, Shift, hover_eval_config
from sim2real.tasks.quadrotor_hover.evaluation import PolicyFn

NO_SHIFT, LIMITS = Shift(), SafetyLimits()
Schedule = list[tuple[float, tuple[float, float, float]]]
"""Set-points held in turn: ``[(seconds, (x, y, z)), ...]``."""


class SimulatedRobot:
    """One shifted quadrotor flown continuously, with a set-point schedule around ``home``.

    Args:
        shift: how its physics differ from the nominal model.
        seed: seeds the start state (``start="nominal"``), the sensor noise and the set-point schedule.
        start: ``"rest"`` (hovering at home: level, at rest, motors at the nominal hover speed) or ``"nominal"``
            (a draw from the evaluation's nominal start distribution).
        setpoint_every_s: a new set-point every so many seconds.
        setpoint_range_m: set-points are uniform in ``home ± setpoint_range_m`` per axis (at most the limits'
            ``setpoint_box_m``).
    """

    def __init__(self, shift: Shift = NO_SHIFT, seed: int = 0, limits: SafetyLimits = LIMITS, start: str = "rest",
                 setpoint_every_s: float = 2.0, setpoint_range_m: float = 0.2, home: tuple[float, float, float] = (0, 0, 0),
                 model: str = "crazyflie-paper") -> None:  # fmt: skip
        if start not in ("rest", "nominal"):
            raise ValueError(f"start must be 'rest' or 'nominal', got {start!r}")
        if not 0 <= setpoint_range_m <= limits.setpoint_box_m:
            raise ValueError(f"setpoint_range_m must be in [0, setpoint_box_m = {limits.setpoint_box_m}], got "
                             f"{setpoint_range_m}")  # fmt: skip
        if not setpoint_every_s > 0:
            raise ValueError(f"setpoint_every_s must be > 0, got {setpoint_every_s}")
        cfg = replace(hover_eval_config("nominal", 1), model=model, shift=shift, termination_box=math.inf,
                      episode_steps=2**62, compile=False)  # fmt: skip
        self.env = env = QuadrotorHoverEnv(cfg)
        self.limits, self.home = limits, torch.tensor([home], dtype=torch.float32)
        self.every = max(1, int(round(setpoint_every_s / cfg.dt)))
        self.range_m, self.dt = setpoint_range_m, cfg.dt
        self.obs = env.reset(seed)
        if start == "rest":
            self._hover_at_home()
        weight = env.model.mass * env.model.gravity
        env.set_disturbance(torch.tensor([shift.wind]) * weight, torch.zeros(1, 3))  # the wind, nothing random
        env.target[:] = self.home
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.t = 0
        self.violation_steps = 0
        """Control steps flown with a safety margin below 0."""
        self.min_margin = math.inf
        self.policy: PolicyFn | None = None
        self.deployed_file: Path | None = None
        self.deployments: list[Path] = []
        """Every policy file handed over, in order."""

    def _hover_at_home(self) -> None:
        s = torch.zeros(1, RPM.stop)
        s[:, POS], s[:, QUAT], s[:, RPM] = self.home, torch.tensor([1.0, 0, 0, 0]), self.env.model.hover_speed()
        self.env.set_state(s)

    def deploy(self, policy_file: Path) -> None:
        """Fly this exported policy from now on (the finetuning loop's hand-over)."""
        self.policy, self.deployed_file = OnnxPolicy(policy_file), Path(policy_file)
        self.deployments.append(self.deployed_file)

    def fly(self, schedule: Schedule) -> list[Flight]:
        """Fly the deployed policy through a set-point schedule (the finetuning loop's real system)."""
        if self.policy is None:
            raise RuntimeError("no policy deployed on the simulated robot")
        return [self.record(self.policy, sum(d for d, _ in schedule), schedule)]

    def record(self, policy: PolicyFn, seconds: float, schedule: Schedule | None = None) -> Flight:
        """Fly ``policy`` for ``seconds`` more; returns the log of these seconds.

        ``schedule``: ``[(seconds, (x, y, z)), ...]`` set-points (world frame) held in turn; None: a random one
        around home, redrawn every ``setpoint_every_s``. Every set-point must lie in the limits' set-point box.
        A state that is no longer finite (the vehicle crashed in the simulation) restarts it hovering at home.
        """
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        steps = int(round(seconds / self.dt))
        switch: dict[int, tuple[float, float, float]] = {}  # step -> the set-point commanded from it on
        start = 0
        for duration, point in schedule or []:
            problem = self.limits.setpoint_problem(torch.tensor(point, dtype=torch.float32), self.home[0])
            if problem:
                raise ValueError(problem)
            switch[start] = point
            start += round(duration / self.dt)
        env = self.env
        odom, actions, targets = [env.state[0, :ODOM_DIM].clone()], [], [env.target[0].clone()]
        for i in range(steps):
            if schedule is not None:
                if i in switch:
                    env.target[:] = torch.tensor([switch[i]], dtype=torch.float32)
                    self.obs = env.observe()
            elif self.t % self.every == 0:
                env.target[:] = self.home + (2 * torch.rand(1, 3, generator=self.gen) - 1) * self.range_m
                self.obs = env.observe()
            with torch.no_grad():
                a = torch.as_tensor(policy(self.obs["policy"]), dtype=torch.float32).reshape(1, 4)
            self.obs, *_ = env.step(a)
            self.t += 1
            margin = float(self.limits.margins(env.state, self.home)[0])
            self.min_margin = min(self.min_margin, margin)
            self.violation_steps += margin < 0
            if not bool(torch.isfinite(env.state).all()):
                self._hover_at_home()
            actions.append(a[0].clamp(-1.0, 1.0))
            odom.append(env.state[0, :ODOM_DIM].clone())
            targets.append(env.target[0].clone())
        return Flight(torch.stack(odom), torch.stack(actions), self.dt, torch.stack(targets))


def fly(
    policy: PolicyFn,
    seconds: float,
    shift: Shift = NO_SHIFT,
    seed: int = 0,
    setpoint_every_s: float = 2.0,
    setpoint_range_m: float = 0.2,
    model: str = "crazyflie-paper",
) -> Flight:
    """One flight of ``seconds`` from a ``nominal`` start, set-points redrawn every ``setpoint_every_s``."""
    robot = SimulatedRobot(shift, seed, start="nominal", setpoint_every_s=setpoint_every_s,
                           setpoint_range_m=setpoint_range_m, model=model)  # fmt: skip
    return robot.record(policy, seconds)
