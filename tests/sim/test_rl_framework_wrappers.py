"""Our envs driven by other frameworks: rsl_rl's on-policy runner (RslRlVecEnv) and stable-baselines3 (Gymnasium)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sim2real.sim.mujoco.env import MujocoEnvConfig
from sim2real.sim.registry import make
from sim2real.sim.rsl_rl_wrapper import RslRlVecEnv

pytest.importorskip("mujoco")
rsl_rl = pytest.importorskip("rsl_rl", reason="rsl-rl-lib is in the dev extra")


def hopper(num_envs: int, episode_steps: int = 1000):
    return make("mujoco-hopper", cfg=replace(MujocoEnvConfig(), num_envs=num_envs, num_threads=1,
                                              episode_steps=episode_steps))  # fmt: skip


def test_rsl_rl_view_of_the_contract() -> None:
    env = RslRlVecEnv(hopper(4, episode_steps=3))
    assert isinstance(env, rsl_rl.env.VecEnv)
    obs = env.get_observations()
    assert set(obs.keys()) == {"policy", "critic"} and obs["policy"].shape == (4, 11) and obs.batch_size == (4,)
    env.episode_length_buf = torch.tensor([0, 1, 2, 2])  # staggered time limits, as init_at_random_ep_len does
    _, rew, dones, extras = env.step(torch.zeros(4, 3))
    assert rew.shape == (4,) and dones.dtype == torch.long
    assert dones.tolist() == [0, 0, 1, 1] and extras["time_outs"].tolist() == [False, False, True, True]
    assert env.episode_length_buf.tolist() == [1, 2, 0, 0]
    assert float(extras["log"]["/episode/length"]) == 3.0
    _, _, _, extras = env.step(torch.full((4, 3), 7.0))  # unbounded Gaussian actions are clipped, not rejected
    assert extras["log"] == {} or "/episode/return" in extras["log"]


def test_rsl_rl_ppo_trains_with_the_asymmetric_groups(tmp_path) -> None:
    from rsl_rl.runners import OnPolicyRunner

    torch.manual_seed(0)
    env = RslRlVecEnv(hopper(16))
    mlp = {"class_name": "MLPModel", "hidden_dims": [32, 32], "activation": "elu", "obs_normalization": True}
    cfg = {
        "num_steps_per_env": 16, "save_interval": 1000, "check_for_nan": True,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 2, "num_mini_batches": 2, "learning_rate": 3e-4},
        "actor": {**mlp, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 1.0}},
        "critic": mlp,
    }  # fmt: skip
    runner = OnPolicyRunner(env, cfg, log_dir=None, device="cpu")
    before = [p.detach().clone() for p in runner.alg.actor.parameters()]
    runner.learn(num_learning_iterations=3, init_at_random_ep_len=True)
    after = list(runner.alg.actor.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # PPO updated the actor
    assert int(env.episode_length_buf.max()) > 3 * 16  # the random initial episode lengths reached our env


def test_stable_baselines3_sac_runs_on_a_batched_mujoco_env() -> None:
    from stable_baselines3 import SAC
    from stable_baselines3.common.env_checker import check_env

    from sim2real.sim.gym_wrappers import ToGymnasiumEnv

    env = ToGymnasiumEnv(hopper(1, episode_steps=50))
    check_env(env)
    model = SAC("MlpPolicy", env, learning_starts=50, batch_size=32, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})  # fmt: skip
    model.learn(150)
    assert model.num_timesteps == 150
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert action.shape == (3,) and np.isfinite(action).all()
