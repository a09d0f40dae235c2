"""Fly a simulated quadrotor whose physics differ from the training model, and log it as a robot would.

The stand-in for a real robot in system identification and finetuning: one quadrotor of the hover task with
scaled physical parameters and a steady wind (:class:`Shift`, outside the training randomisation), flown by a
deployed policy through a set-point schedule inside the safety box (the excitation), logged as odometry and the
commanded actions (:class:`~sim2real.policies.world_model.Flight`): what the recorder sees on a robot, no motor
speeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from sim2real.policies.world_model import ODOM_DIM, Flight
from sim2real.sim.quadrotor import PARAM_INDEX, VEL
from sim2real.tasks.quadrotor_hover.env import QuadrotorHoverEnv, hover_eval_config


@dataclass(frozen=True)
class Shift:
    """How the flown quadrotor differs from the nominal model: parameter factors and a steady wind."""

    mass: float = 1.0
    thrust: float = 1.0
    """Factor on the thrust polynomial (weaker motors < 1)."""
    motor_tau: float = 1.0
    """Factor on the motor time constants (slower motors > 1)."""
    wind: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Constant force on the body (world frame) in units of the nominal weight."""
    drag: float = 0.0
    """Linear drag ``F = -drag * m_nominal g * v`` (per m/s, in units of the nominal weight): a force the
    simulator's physics does not model, for the learned residual of the world model."""

    def __post_init__(self) -> None:
        for name in ("mass", "thrust", "motor_tau"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"shift: {name} must be a positive factor, got {getattr(self, name)}")
        if len(self.wind) != 3 or not all(math.isfinite(w) for w in self.wind) or not self.drag >= 0:
            raise ValueError(f"shift: wind must be 3 finite numbers and drag >= 0, got {self.wind}, {self.drag}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Shift:
        """A shift from a YAML mapping of its fields (``config/shifts/*.yaml``); unknown keys are an error."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"shift file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not YAML ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of {', '.join(f.name for f in fields(cls))}")
        if "wind" in data:
            data["wind"] = tuple(data["wind"])
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{path}: {e}") from None

    def apply(self, env: QuadrotorHoverEnv) -> None:
        """Scale the env's parameters of every env by the factors (its disturbance is left to the caller)."""
        params = env.get_params()
        params[:, PARAM_INDEX["mass"]] *= self.mass
        params[:, PARAM_INDEX["thrust_c0"] : PARAM_INDEX["thrust_c2"] + 1] *= self.thrust
        params[:, PARAM_INDEX["motor_tau_rise"] : PARAM_INDEX["motor_tau_fall"] + 1] *= self.motor_tau
        env.set_params(params)


def fly(
    policy: Callable[[torch.Tensor], torch.Tensor],
    seconds: float,
    shift: Shift = Shift(),
    seed: int = 0,
    setpoint_every_s: float = 2.0,
    setpoint_range_m: float = 0.2,
    model: str = "crazyflie-paper",
) -> Flight:
    """One flight of ``seconds`` from a ``nominal`` start, set-points redrawn every ``setpoint_every_s``.

    ``policy`` maps the ``policy`` observation ``(1, obs_dim)`` to actions ``(1, 4)`` (e.g. an ``OnnxPolicy``).
    The set-points are uniform in ``±setpoint_range_m`` per axis; the flight has no time limit and no box.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    cfg = replace(hover_eval_config("nominal", 1), model=model, termination_box=math.inf, episode_steps=2**31 - 1,
                  compile=False)  # fmt: skip
    env = QuadrotorHoverEnv(cfg)
    obs = env.reset(seed)
    shift.apply(env)
    weight = env.model.mass * env.model.gravity
    wind, no_torque = torch.tensor([shift.wind]) * weight, torch.zeros(1, 3)
    env.set_disturbance(wind, no_torque)
    gen = torch.Generator().manual_seed(seed + 1)
    steps, every = int(round(seconds / cfg.dt)), max(1, int(round(setpoint_every_s / cfg.dt)))
    odom, actions = [env.state[0, :ODOM_DIM].clone()], []
    for t in range(steps):
        if t % every == 0:
            env.target[:] = (2 * torch.rand(1, 3, generator=gen) - 1) * setpoint_range_m
            obs = env.observe()
        with torch.no_grad():
            a = torch.as_tensor(policy(obs["policy"]), dtype=torch.float32).reshape(1, 4)
        if shift.drag:  # held over the control step, from the velocity at its start
            env.set_disturbance(wind - shift.drag * weight * env.state[:, VEL], no_torque)
        obs, *_ = env.step(a)
        actions.append(a[0].clamp(-1.0, 1.0))
        odom.append(env.state[0, :ODOM_DIM].clone())
    return Flight(torch.stack(odom), torch.stack(actions), cfg.dt)
