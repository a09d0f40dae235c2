"""Tasks ``isaacgym-<name>``: IsaacGymEnvs tasks (Ant, Humanoid, Anymal, ...) through the VecTask adapter.

Each task builds the IsaacGymEnvs task of the same name with ``isaacgymenvs.make`` and wraps it in
:class:`~sim2real.sim.isaacgym_vectask.VecTaskEnv` (groups ``policy`` = ``obs_buf``, ``critic`` = ``states_buf``
where the task has states). Isaac Gym must be installed (``docs/isaacgym.md``): in this interpreter, or in a Python
3.8 environment whose interpreter the env config's ``python`` names. The training defaults are FastSAC-style GPU
settings (``docs/algorithms.md``), not tuned on these tasks yet.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass
from functools import partial
from typing import TYPE_CHECKING

from sim2real.sim.isaacgym_vectask import IsaacGymConfig, make_isaacgym
from sim2real.sim.registry import TaskSpec, register

if TYPE_CHECKING:
    from sim2real.policies.runner import TrainConfig

#: IsaacGymEnvs task names registered as ``isaacgym-<name lowercased>``.
ISAACGYM_TASKS = ("Ant", "Humanoid", "Anymal", "AnymalTerrain", "Cartpole", "Quadcopter", "FrankaCabinet",
                  "ShadowHand", "AllegroHand")  # fmt: skip


def isaacgym_defaults(task: str, cfg_cls: type[IsaacGymConfig]) -> TrainConfig:
    """FastSAC-style defaults on one GPU: 4096 envs, 8 updates of batch 8192 per vector step, LayerNorm critics."""
    from sim2real.policies.runner import TrainConfig
    from sim2real.policies.sac import SACConfig

    sac = SACConfig(actor_obs="policy", critic_obs="critic", actor_hidden=(256, 256), critic_hidden=(512, 512),
                    critic_layernorm=True, gamma=0.99, tau=0.05, batch_size=8192, actor_delay=2, init_alpha=0.01)  # fmt: skip
    return TrainConfig(task=task, device="cuda:0", num_envs=4096, env=cfg_cls(), total_env_steps=50_000_000,
                       warmup_env_steps=100_000, updates_per_step=8.0, replay_size=1_000_000, sac=sac,
                       log_interval=500_000, checkpoint_interval=5_000_000)  # fmt: skip


for _task in ISAACGYM_TASKS:
    _name = f"isaacgym-{_task.lower()}"
    _cfg = make_dataclass(f"IsaacGym{_task}Config", [("task", str, field(default=_task))], bases=(IsaacGymConfig,))
    _cfg.__module__ = __name__
    globals()[_cfg.__name__] = _cfg  # importable by name (configs are rebuilt from a run's metadata)
    register(TaskSpec(name=_name, config=_cfg, make=make_isaacgym, train_defaults=partial(isaacgym_defaults, _name, _cfg),
                      description=f"IsaacGymEnvs {_task} (Isaac Gym Preview 4, GPU) through the VecTask adapter"))  # fmt: skip
