"""Batched MuJoCo: the CPU backend (:mod:`.env`, an ``MjData`` per env in threads) and mujoco_warp (:mod:`.warp`)."""

from __future__ import annotations

from typing import Any, TypeVar

from sim2real.sim.mujoco.env import MujocoEnvConfig, MujocoVecEnv

E = TypeVar("E", bound=MujocoVecEnv)


def make_env(task_cls: type[E], cfg: MujocoEnvConfig | None = None, **overrides: Any) -> MujocoVecEnv:
    """Build the MuJoCo task ``task_cls`` on the engine and backend its config names.

    ``backend="cpu"`` or ``"warp"`` (MuJoCo); ``engine="pybullet"``: PyBullet's physics (:mod:`sim2real.sim.pybullet_mjcf`).
    """
    backend = overrides.get("backend", cfg.backend if cfg is not None else "cpu")
    if overrides.get("engine", cfg.engine if cfg is not None else "mujoco") == "pybullet":
        from sim2real.sim.pybullet_mjcf import pybullet_task_class

        return pybullet_task_class(task_cls)(cfg, **overrides)
    if backend == "warp":
        from sim2real.sim.mujoco.warp import warp_task_class

        return warp_task_class(task_cls)(cfg, **overrides)
    return task_cls(cfg, **overrides)
