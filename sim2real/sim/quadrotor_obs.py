"""The quadrotor policy observation of Learning to Fly, defined once for simulation and the robot.

``policy`` group ``(N, 18 + 4 H)``: position error (world, m) 3 | rotation matrix R (body -> world, row-major)
9 | linear velocity (world) 3 | angular velocity (body) 3 | the last ``H`` actions, oldest -> newest, 4 H. The
layout is Learning to Fly's, so policies are interchangeable with its Crazyflie firmware. The first four terms
are the sensed state (:func:`sensor_group`, noisy in simulation); the history is the policy's own output.

This module is light (torch and the quadrotor conventions, no simulator): ``policy_node`` builds its
observations with :func:`build_policy_obs`, the function the hover task's env uses.
"""

from __future__ import annotations

from functools import cache

import torch

from sim2real.core.obs import HISTORY_TERM, ObsGroup, ObsTerm
from sim2real.sim.quadrotor import rotmat_to_quat


@cache
def sensor_group(
    position: float = 0.0, orientation: float = 0.0, velocity: float = 0.0, angular_velocity: float = 0.0
) -> ObsGroup:
    """The sensed state ``(N, 18)`` with the given noise standard deviations per term."""
    return ObsGroup.of(
        ObsTerm("position_error", 3, "world, m, position - setpoint", position),
        ObsTerm("rotation_matrix", 9, "body->world, row-major", orientation),
        ObsTerm("linear_velocity", 3, "world, m/s", velocity),
        ObsTerm("angular_velocity", 3, "body, rad/s", angular_velocity),
    )


@cache
def policy_group(
    history: int, position: float = 0.0, orientation: float = 0.0, velocity: float = 0.0, angular_velocity: float = 0.0
) -> ObsGroup:
    """The ``policy`` group: :func:`sensor_group` followed by the last ``history`` actions (4 each)."""
    if history < 1:
        raise ValueError(f"action history must be >= 1, got {history}")
    term = ObsTerm(HISTORY_TERM, 4 * history, f"{history} x 4 normalised actions, oldest->newest")
    return sensor_group(position, orientation, velocity, angular_velocity).extended(term)


def build_policy_obs(
    pos_error: torch.Tensor, rot: torch.Tensor, vel: torch.Tensor, omega: torch.Tensor, history: torch.Tensor
) -> torch.Tensor:
    """Assemble the ``policy`` observation; the same code runs in simulation and on the robot.

    Args:
        pos_error: ``(N, 3)`` position minus set-point, world frame.
        rot: ``(N, 9)`` or ``(N, 3, 3)`` body->world rotation matrix (row-major when flat); from a quaternion
            use :func:`~sim2real.sim.quadrotor.quat_to_rotmat`.
        vel: ``(N, 3)`` linear velocity, world frame.
        omega: ``(N, 3)`` angular velocity, body frame.
        history: ``(N, H, 4)`` last actions, oldest first.

    Returns:
        ``(N, 18 + 4 H)`` float32.
    """
    return policy_group(history.shape[1]).concat(
        position_error=pos_error, rotation_matrix=rot, linear_velocity=vel, angular_velocity=omega,
        action_history=history,
    )  # fmt: skip


def odometry_from_policy_obs(obs: torch.Tensor) -> torch.Tensor:
    """The odometry ``(N, 13)`` in an observation ``(N, 18 + 4 H)``: the inverse of :func:`build_policy_obs`.

    Position error 3 | quaternion 4 (``w >= 0``) | world velocity 3 | body rate 3, from the sensed terms.
    """
    group = sensor_group()
    if obs.ndim != 2 or obs.shape[1] < group.dim or (obs.shape[1] - group.dim) % 4:
        raise ValueError(f"not a quadrotor policy observation: shape {tuple(obs.shape)} (expected (N, 18 + 4 H))")
    rot = obs[:, group.slice("rotation_matrix")].reshape(-1, 3, 3)
    return torch.cat((obs[:, group.slice("position_error")], rotmat_to_quat(rot),
                      obs[:, group.slice("linear_velocity")], obs[:, group.slice("angular_velocity")]), 1)  # fmt: skip
