"""Task ``quadrotor-hover``: a Crazyflie holds a position set-point with direct motor-RPM commands (Learning to Fly).

Everything of the task is here: the env and its config (:mod:`.env`), the tuned training defaults
(:func:`train_defaults`), the evaluation from the ``nominal`` and ``hard`` start distributions and the validation
score that keeps a run's best policy (:mod:`.evaluation`), and the Gymnasium registration (:mod:`.gym_env`).
The export metadata (observation layout, action -> RPM mapping, rotor order, physical model) is the env's spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim2real.sim.registry import TaskSpec, register
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv
from sim2real.tasks.quadrotor_hover.evaluation import evaluate_policy, print_report, validation_score

if TYPE_CHECKING:
    from sim2real.policies.runner import TrainConfig
    from sim2real.tasks.quadrotor_hover.imagined import HoverImagination

TASK = "quadrotor-hover"


def train_defaults() -> TrainConfig:
    """Tuned defaults on a 2-core CPU (see the README's benchmark table).

    32 envs, 4 updates of batch 256 per vector step (replay ratio 32), 600k env steps = 72.5k updates,
    learning rates decaying to 30 %, validation every 50k steps from 200k keeping the best policy.
    """
    from sim2real.policies.runner import TrainConfig
    from sim2real.policies.sac import SACConfig

    return TrainConfig(
        task=TASK,
        num_envs=32,
        total_env_steps=600_000,
        warmup_env_steps=20_000,
        updates_per_step=4.0,
        sac=SACConfig(batch_size=256, gamma=0.99, tau=0.005, init_alpha=0.5, lr_decay_to=0.3),
        env=HoverConfig(),
        log_interval=20_000,
        eval_interval=50_000,
        eval_start=200_000,
        eval_episodes=100,
    )


def imagination(*args: Any, **kwargs: Any) -> HoverImagination:
    """The task inside a world model (:mod:`.imagined`; imported here, so the robot side never loads it)."""
    from sim2real.tasks.quadrotor_hover.imagined import HoverImagination

    return HoverImagination(*args, **kwargs)


register(
    TaskSpec(
        name=TASK,
        description="Crazyflie hover with direct motor-RPM control (Learning-to-Fly layout, 100 Hz)",
        config=HoverConfig,
        make=QuadrotorHoverEnv,
        train_defaults=train_defaults,
        validate=validation_score,
        evaluate=evaluate_policy,
        report=print_report,
        imagination=imagination,
    )
)
