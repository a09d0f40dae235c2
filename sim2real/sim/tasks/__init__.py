"""Built-in tasks; importing this package registers them."""

from __future__ import annotations

from sim2real.sim.core import TaskEntry, register_task
from sim2real.sim.tasks import gym_mujoco, humanoid_walk  # noqa: F401  (register the mujoco-* tasks)
from sim2real.sim.tasks.hover import HoverConfig, QuadrotorHoverEnv


def _hover_train_defaults():
    from sim2real.policies.runner import quadrotor_hover_defaults

    return quadrotor_hover_defaults()


def _hover_validate(policy, env_cfg, episodes, seed):
    from sim2real.eval import validation_score

    return validation_score(policy, env_cfg, episodes, seed)


register_task(
    TaskEntry(
        name="quadrotor-hover",
        make=QuadrotorHoverEnv,
        description="Crazyflie hover with direct motor-RPM control (Learning-to-Fly layout, 100 Hz)",
        config_cls=HoverConfig,
        train_defaults=_hover_train_defaults,
        validate=_hover_validate,
    )
)
