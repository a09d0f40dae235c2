"""The quadrotor's safety limits: one configuration for everything that decides what is safe.

Read by the policy node (odometry beyond them gets the safe output; set-points outside the set-point box are
refused), by the finetuning loop (imagined rollouts terminate at them, the gate demands a predicted margin to them,
real flights count their violations) and by the hover evaluation (episodes that violate them). Positions are
relative to the *home* set-point (where the robot was sent to hover); the box is per axis.

A state's *margin* is the smallest remaining fraction over the limits::

    margin = min(1 - |p_i - home_i| / box, 1 - tilt / max_tilt, 1 - |v| / max_speed, 1 - max_i |omega_i| / max_rate)

``margin < 0`` is a violation; ``margin = 1`` is hovering at home, level and at rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from sim2real.core.config import read_yaml_mapping
from sim2real.sim.quadrotor import OMEGA, POS, QUAT, VEL, tilt_angle


@dataclass(frozen=True)
class SafetyLimits:
    """Limits of safe flight (SI units, angles in degrees)."""

    position_box_m: float = 0.5
    """Half-width per axis of the box around the home set-point the vehicle must stay in."""
    setpoint_box_m: float = 0.25
    """Half-width per axis of the box around home that commanded set-points must lie in (inside the position box,
    so that tracking a set-point leaves room for overshoot)."""
    max_tilt_deg: float = 60.0
    """Angle between body z and world z."""
    max_speed_mps: float = 2.0
    max_body_rate_radps: float = 20.0
    """Largest body-rate component (the Crazyflie's gyro reads up to 35 rad/s)."""
    action_min: float = -1.0
    action_max: float = 1.0
    """Clamp of the normalised motor command."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                raise ValueError(f"safety limit {f.name} must be finite, got {getattr(self, f.name)}")
        for name in ("position_box_m", "setpoint_box_m", "max_tilt_deg", "max_speed_mps", "max_body_rate_radps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"safety limit {name} must be > 0, got {getattr(self, name)}")
        if self.setpoint_box_m >= self.position_box_m:
            raise ValueError(f"setpoint_box_m ({self.setpoint_box_m}) must be smaller than position_box_m "
                             f"({self.position_box_m})")  # fmt: skip
        if not -1.0 <= self.action_min < self.action_max <= 1.0:
            raise ValueError(f"need -1 <= action_min < action_max <= 1, got {self.action_min}, {self.action_max}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SafetyLimits:
        """Limits from a YAML mapping of (some of) the fields; the rest keep their defaults; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        what = f"safety limits ({', '.join(sorted(names))})"
        data = read_yaml_mapping(path, what)
        if set(data) - names:
            raise ValueError(f"{path}: unknown keys {sorted(set(data) - names)}; expected a mapping of {what}")
        return cls(**{k: float(v) for k, v in data.items()})

    def margins(self, state: torch.Tensor, home: torch.Tensor) -> torch.Tensor:
        """Margin ``(...)`` of states ``(..., >=13)`` (position, quaternion, velocity, body rate) to ``home`` ``(..., 3)``.

        Non-finite states have margin ``-inf``.
        """
        terms = torch.stack(
            (
                1 - (state[..., POS] - home).abs().amax(-1) / self.position_box_m,
                1 - torch.rad2deg(tilt_angle(state[..., QUAT])) / self.max_tilt_deg,
                1 - state[..., VEL].norm(dim=-1) / self.max_speed_mps,
                1 - state[..., OMEGA].abs().amax(-1) / self.max_body_rate_radps,
            ),
            -1,
        )
        margin = terms.amin(-1)
        return torch.where(torch.isfinite(margin), margin, torch.full_like(margin, -math.inf))

    def setpoint_problem(self, setpoint: torch.Tensor, home: torch.Tensor) -> str:
        """Why a set-point ``(3,)`` may not be commanded ('' if it may)."""
        if setpoint.shape != (3,) or not bool(torch.isfinite(setpoint).all()):
            return f"set-point must be 3 finite numbers, got {setpoint.tolist()}"
        off = float((setpoint.double() - home.double()).abs().max())
        if off > self.setpoint_box_m:
            return f"set-point {off:.3f} m from home on an axis, beyond setpoint_box_m ({self.setpoint_box_m} m)"
        return ""
