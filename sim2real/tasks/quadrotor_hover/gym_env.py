"""``sim2real/QuadrotorHover-v0``: the hover task as a one-env Gymnasium env (stable-baselines3 and friends)."""

from __future__ import annotations

from typing import Any

import gymnasium

from sim2real.sim.gym_wrappers import ToGymnasiumEnv
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv

HOVER_GYM_ID = "sim2real/QuadrotorHover-v0"
"""Gymnasium id of the one-env hover task registered by :func:`register_gymnasium`."""

def make_hover_gymnasium(
    cfg: Any = None, obs_group: str | None = "policy", render_mode: str | None = None, **overrides: Any
) -> ToGymnasiumEnv:
    """Entry point of ``sim2real/QuadrotorHover-v0``: a one-env hover task as a :class:`ToGymnasiumEnv`.

    Args:
        cfg: a :class:`~sim2real.tasks.quadrotor_hover.env.HoverConfig` (defaults when None); ``num_envs`` is forced to 1.
        obs_group: observation group exposed (``policy``, ``critic``) or ``None`` for both as a ``Dict``.
        render_mode: only ``None`` is supported.
        **overrides: top-level ``HoverConfig`` fields, e.g. ``model="crazyflie-newer"``.
    """
    if render_mode is not None:
        raise ValueError(f"{HOVER_GYM_ID} has no render modes (got render_mode={render_mode!r})")
    return ToGymnasiumEnv(QuadrotorHoverEnv(cfg or HoverConfig(), **{**overrides, "num_envs": 1}), obs_group)


def register_gymnasium() -> None:
    """Register ``sim2real/QuadrotorHover-v0`` with Gymnasium (idempotent).

    The env truncates its episodes itself (5 s), so no ``TimeLimit`` wrapper is added. Keyword arguments of
    ``gymnasium.make`` go to :func:`make_hover_gymnasium`.
    """
    if HOVER_GYM_ID in gymnasium.registry:
        return
    gymnasium.register(id=HOVER_GYM_ID, entry_point=make_hover_gymnasium, disable_env_checker=False)
