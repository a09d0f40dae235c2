"""Batched Gymnasium MuJoCo locomotion tasks: HalfCheetah, Hopper, Ant, Humanoid (v5 definitions).

Each task loads Gymnasium's own MJCF file and reproduces the v5 env with its default constructor arguments:
observation, reward, termination, ``frame_skip`` and reset noise. Observation groups ``policy`` and
``critic`` are both the v5 observation ``(N, D)``:

=================  ====  ===========================================================================
task               D     observation
=================  ====  ===========================================================================
mujoco-halfcheetah 17    qpos[1:] | qvel
mujoco-hopper      11    qpos[1:] | clip(qvel, -10, 10)
mujoco-ant         105   qpos[2:] | qvel | clip(cfrc_ext[1:], -1, 1)
mujoco-humanoid    348   qpos[2:] | qvel | cinert[1:] | cvel[1:] | qfrc_actuator[6:] | cfrc_ext[1:]
=================  ====  ===========================================================================

One difference from Gymnasium: actions are clipped to the actuator ``ctrlrange`` before they are used, so the
control cost is that of the applied action (Gymnasium charges the unclipped action; MuJoCo clamps it for
the dynamics either way). Within the range the two agree step for step (``tests/sim/mujoco/test_env.py``).

Measured env steps/s (2-core CPU, random in-range actions, incl. auto-resets; Gymnasium = one ``gym.make`` env):

=========== ========= ===== ====== ====== ====== ======
task        Gymnasium N=1   N=16   N=16   N=64   N=64
                      1 thr 1 thr  2 thr  1 thr  2 thr
=========== ========= ===== ====== ====== ====== ======
HalfCheetah 14260     6207  24195  21488  26537  37199
Hopper      6026      3222  8029   9973   10234  17397
Ant         3694      2636  4580   7039   4785   8873
Humanoid    3393      2409  4303   5638   3945   6728
=========== ========= ===== ====== ====== ====== ======
"""

from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sim2real.sim.mujoco import make_env
from sim2real.sim.mujoco.env import MujocoEnvConfig, MujocoVecEnv
from sim2real.sim.registry import TaskSpec, register

if TYPE_CHECKING:
    from sim2real.policies.runner import TrainConfig


def gymnasium_asset(name: str) -> str:
    """Path of one of Gymnasium's MuJoCo model files (``half_cheetah.xml``, ...)."""
    spec = importlib.util.find_spec("gymnasium")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the MuJoCo locomotion tasks use Gymnasium's model files: pip install 'sim2real[mujoco]'")
    path = Path(spec.submodule_search_locations[0]) / "envs" / "mujoco" / "assets" / name
    if not path.is_file():
        raise FileNotFoundError(f"Gymnasium model file not found: {path}")
    return str(path)


class _NormalVelocityNoise:
    """Mixin: initial qvel noise ``reset_noise * N(0, 1)`` (HalfCheetah, Ant) instead of uniform."""

    reset_noise: float
    nv: int
    gen: torch.Generator

    def _velocity_noise(self, k: int) -> torch.Tensor:
        return self.reset_noise * torch.randn(k, self.nv, generator=self.gen, dtype=torch.float64)


class HalfCheetahEnv(_NormalVelocityNoise, MujocoVecEnv):
    """HalfCheetah-v5: reward ``dx/dt - 0.1 |a|^2``; never terminates."""

    task_name = "mujoco-halfcheetah"
    default_frame_skip = 5
    default_reset_noise = 0.1
    forward_weight, ctrl_weight = 1.0, 0.1

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides) -> None:
        self.xml_path = gymnasium_asset("half_cheetah.xml")
        super().__init__(cfg, **overrides)

    def _obs_dim(self) -> int:
        return self.nq - 1 + self.nv

    def _measure(self, model, data, obs: np.ndarray, aux: np.ndarray) -> None:
        obs[: self.nq - 1] = data.qpos[1:]
        obs[self.nq - 1 :] = data.qvel

    def _measure_batch(self, b):
        return torch.cat((b.qpos[:, 1:], b.qvel), -1), b.qpos.new_zeros(len(b.qpos), 1)

    def _reward_done(self, obs, aux, velocity, action):
        reward = self.forward_weight * velocity[:, 0] - self.ctrl_weight * action.square().sum(-1)
        return reward, torch.zeros(self.num_envs, dtype=torch.bool)


class HopperEnv(MujocoVecEnv):
    """Hopper-v5: reward ``dx/dt + healthy - 1e-3 |a|^2``; terminates when unhealthy.

    Healthy: ``z > 0.7``, ``|angle| < 0.2`` and every entry of ``(qpos[2:], qvel)`` within (-100, 100).
    """

    task_name = "mujoco-hopper"
    default_frame_skip = 4
    default_reset_noise = 5e-3
    aux_dim = 1
    forward_weight, ctrl_weight, healthy_reward = 1.0, 1e-3, 1.0

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides) -> None:
        self.xml_path = gymnasium_asset("hopper.xml")
        super().__init__(cfg, **overrides)

    def _obs_dim(self) -> int:
        return self.nq - 1 + self.nv

    def _measure(self, model, data, obs: np.ndarray, aux: np.ndarray) -> None:
        obs[: self.nq - 1] = data.qpos[1:]
        np.clip(data.qvel, -10.0, 10.0, out=obs[self.nq - 1 :])
        # largest |entry| of the unclipped state checked by the health test (NaN propagates -> unhealthy)
        aux[0] = np.max(np.abs(np.concatenate((data.qpos[2:], data.qvel))))

    def _measure_batch(self, b):
        state = torch.cat((b.qpos[:, 2:], b.qvel), -1).abs()
        big = torch.where(torch.isnan(state), torch.inf, state).amax(-1, keepdim=True)  # NaN -> unhealthy
        return torch.cat((b.qpos[:, 1:], b.qvel.clamp(-10.0, 10.0)), -1), big

    def _reward_done(self, obs, aux, velocity, action):
        z, angle = obs[:, 0], obs[:, 1]
        healthy = (z > 0.7) & (angle > -0.2) & (angle < 0.2) & (aux[:, 0] < 100.0)
        reward = (
            self.forward_weight * velocity[:, 0]
            + self.healthy_reward * healthy.double()
            - self.ctrl_weight * action.square().sum(-1)
        )
        return reward, ~healthy


class AntEnv(_NormalVelocityNoise, MujocoVecEnv):
    """Ant-v5: reward ``dx/dt + healthy - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2``.

    Forward velocity from the torso body's ``xpos``; healthy: finite state and ``0.2 <= z <= 1.0``.
    """

    task_name = "mujoco-ant"
    default_frame_skip = 5
    default_reset_noise = 0.1
    aux_dim = 2
    forward_weight, ctrl_weight, contact_weight, healthy_reward = 1.0, 0.5, 5e-4, 1.0

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides) -> None:
        self.xml_path = gymnasium_asset("ant.xml")
        super().__init__(cfg, **overrides)

    def _obs_dim(self) -> int:
        return self.nq - 2 + self.nv + (self.model.nbody - 1) * 6

    def _position(self, model, data) -> np.ndarray:
        return data.xpos[1, :2]

    def _measure(self, model, data, obs: np.ndarray, aux: np.ndarray) -> None:
        a, b = self.nq - 2, self.nq - 2 + self.nv
        obs[:a] = data.qpos[2:]
        obs[a:b] = data.qvel
        contact = np.clip(data.cfrc_ext, -1.0, 1.0)
        obs[b:] = contact[1:].ravel()
        aux[0] = self.contact_weight * np.sum(np.square(contact))
        aux[1] = float(np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all())

    def _position_batch(self, b):
        return b.xpos[:, 1, :2]

    def _measure_batch(self, b):
        contact = b.cfrc_ext.clamp(-1.0, 1.0)
        obs = torch.cat((b.qpos[:, 2:], b.qvel, contact[:, 1:].flatten(1)), -1)
        finite = torch.isfinite(b.qpos).all(-1) & torch.isfinite(b.qvel).all(-1)
        return obs, torch.stack((self.contact_weight * contact.square().sum((1, 2)), finite.float()), -1)

    def _reward_done(self, obs, aux, velocity, action):
        z = obs[:, 0]
        healthy = (aux[:, 1] > 0.5) & (z >= 0.2) & (z <= 1.0)
        reward = (
            self.forward_weight * velocity[:, 0]
            + self.healthy_reward * healthy.double()
            - (self.ctrl_weight * action.square().sum(-1) + aux[:, 0])
        )
        return reward, ~healthy


class HumanoidEnv(MujocoVecEnv):
    """Humanoid-v5: reward ``1.25 dx_com/dt + 5 healthy - 0.1 |ctrl|^2 - min(5e-7 |cfrc_ext|^2, 10)``.

    Forward velocity of the mass-weighted body centre; healthy: ``1 < z < 2``.
    """

    task_name = "mujoco-humanoid"
    default_frame_skip = 5
    default_reset_noise = 1e-2
    aux_dim = 1
    forward_weight, ctrl_weight, contact_weight, contact_max, healthy_reward = 1.25, 0.1, 5e-7, 10.0, 5.0

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides) -> None:
        self.xml_path = gymnasium_asset("humanoid.xml")
        super().__init__(cfg, **overrides)

    def _obs_dim(self) -> int:
        nb = self.model.nbody - 1
        return self.nq - 2 + self.nv + nb * 10 + nb * 6 + (self.nv - 6) + nb * 6

    def _position(self, model, data) -> np.ndarray:
        return (model.body_mass @ data.xipos)[:2] / model.body_mass.sum()

    def _measure(self, model, data, obs: np.ndarray, aux: np.ndarray) -> None:
        parts = (data.qpos[2:], data.qvel, data.cinert[1:], data.cvel[1:], data.qfrc_actuator[6:], data.cfrc_ext[1:])
        k = 0
        for p in parts:
            obs[k : k + p.size] = p.ravel()
            k += p.size
        aux[0] = min(self.contact_weight * np.sum(np.square(data.cfrc_ext)), self.contact_max)

    def _position_batch(self, b):
        mass = b.body_mass[..., None]
        return (mass * b.xipos).sum(1)[:, :2] / mass.sum(1)

    def _measure_batch(self, b):
        parts = (b.qpos[:, 2:], b.qvel, b.cinert[:, 1:], b.cvel[:, 1:], b.qfrc_actuator[:, 6:], b.cfrc_ext[:, 1:])
        contact = (self.contact_weight * b.cfrc_ext.square().sum((1, 2))).clamp(max=self.contact_max)
        return torch.cat([p.flatten(1) for p in parts], -1), contact[:, None]

    def _reward_done(self, obs, aux, velocity, action):
        z = obs[:, 0]
        healthy = (z > 1.0) & (z < 2.0)
        reward = (
            self.forward_weight * velocity[:, 0]
            + self.healthy_reward * healthy.double()
            - (self.ctrl_weight * action.square().sum(-1) + aux[:, 0])
        )
        return reward, ~healthy


TASKS: dict[str, type[MujocoVecEnv]] = {
    "mujoco-halfcheetah": HalfCheetahEnv,
    "mujoco-hopper": HopperEnv,
    "mujoco-ant": AntEnv,
    "mujoco-humanoid": HumanoidEnv,
}

_DESCRIPTIONS = {
    "mujoco-halfcheetah": "Gymnasium HalfCheetah-v5 dynamics, obs and reward, batched MuJoCo (CPU threads)",
    "mujoco-hopper": "Gymnasium Hopper-v5 dynamics, obs, reward and termination, batched MuJoCo (CPU threads)",
    "mujoco-ant": "Gymnasium Ant-v5 dynamics, obs, reward and termination, batched MuJoCo (CPU threads)",
    "mujoco-humanoid": "Gymnasium Humanoid-v5 dynamics, obs, reward and termination, batched MuJoCo (CPU threads)",
}

def locomotion_defaults(task: str) -> TrainConfig:
    """Defaults for this family (``mujoco-halfcheetah``, ``-hopper``, ``-ant``, ``-humanoid``).

    Sample-efficiency settings for a CPU with few envs (``benchmarks/sac_mujoco.py``): 4 envs, one update of
    batch 256 per env step (replay ratio 256), 256x256 networks, LayerNorm critics except on Hopper, constant
    learning rates. Hopper without LayerNorm (3 seeds, return at 10k/20k/30k steps): 245/337/515, with it
    227/213/309; Ant with it 57 at 30k, without it -1 and 3 (2 seeds).
    """
    from sim2real.policies.runner import TrainConfig
    from sim2real.policies.sac import SACConfig

    return TrainConfig(
        task=task,
        num_envs=4,
        total_env_steps=1_000_000,
        warmup_env_steps=2_000,
        updates_per_step=4.0,
        sac=SACConfig(actor_hidden=(256, 256), critic_hidden=(256, 256), critic_layernorm=task != "mujoco-hopper",
                      batch_size=256),  # fmt: skip
        env=MujocoEnvConfig(num_threads=1),
        log_interval=10_000,
        checkpoint_interval=100_000,
    )


for _name, _cls in TASKS.items():
    register(TaskSpec(name=_name, description=_DESCRIPTIONS[_name], config=MujocoEnvConfig, make=partial(make_env, _cls),
                      train_defaults=partial(locomotion_defaults, _name)))  # fmt: skip
