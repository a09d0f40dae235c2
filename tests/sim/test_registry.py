"""Every registered task builds, steps and keeps the VecEnv contract; the registry's errors are clear."""

from __future__ import annotations

import pytest
import torch

from sim2real.core.files import CheckpointError
from sim2real.sim.registry import TaskSpec, get_task, list_tasks, make, policy_env_config
from sim2real.sim.vecenv import EnvConfig, VecEnv

TASKS = [spec.name for spec in list_tasks()]


def test_builtin_tasks_are_registered() -> None:
    assert {"quadrotor-hover", "mujoco-halfcheetah", "mujoco-hopper", "mujoco-ant", "mujoco-humanoid",
            "mujoco-humanoid-walk"} <= set(TASKS)  # fmt: skip


@pytest.mark.parametrize("name", TASKS)
def test_every_task_builds_steps_and_keeps_the_contract(name: str) -> None:
    if name.startswith("mujoco"):
        pytest.importorskip("mujoco")
    if name.startswith("isaacgym"):
        pytest.importorskip("isaacgym", reason="Isaac Gym Preview 4 is not installable here (Python <= 3.8, not on the "
                            "package index); tests/sim/test_isaacgym_vectask.py tests the adapter")  # fmt: skip
    spec: TaskSpec = get_task(name)
    assert isinstance(spec.config(), EnvConfig) and spec.description
    defaults = spec.train_defaults()  # the task's tuned training config holds the task's typed env config
    assert defaults.task == name and isinstance(defaults.env, spec.config)
    assert (defaults.env.num_envs, defaults.env.device) == (defaults.num_envs, defaults.device)
    n = 3
    env = make(name, num_envs=n)
    try:
        assert isinstance(env, VecEnv) and isinstance(env.cfg, spec.config) and env.cfg.num_envs == n
        assert env.spec.task == name and {"policy", "critic"} <= set(env.spec.obs_groups)
        obs = env.reset(seed=0)
        gen = torch.Generator().manual_seed(0)
        low, high = env.spec.action_low, env.spec.action_high
        for _ in range(5):
            for group, width in env.spec.obs_dims.items():
                x = obs[group]
                assert x.shape == (n, width) and x.dtype == torch.float32 and bool(torch.isfinite(x).all()), group
            action = low + (high - low) * torch.rand(n, env.spec.action_dim, generator=gen)
            obs, reward, terminated, truncated, info = env.step(action)
            assert reward.shape == (n,) and reward.dtype == torch.float32 and bool(torch.isfinite(reward).all())
            assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
            assert set(info["final_obs"]) == set(obs)
            if env.reward_term_names:  # the decomposed reward reproduces the reward under the current weights
                terms = info["reward_terms"]
                assert terms.shape == (n, len(env.reward_term_names))
                torch.testing.assert_close(env.reward_from_terms(terms), reward, rtol=1e-5, atol=1e-5)
        # the optional capabilities are callable on any env (defaults in the contract)
        env.set_env_steps(1000)
        assert isinstance(env.reward_weights, dict)
        env.load_state_dict(env.state_dict())
    finally:
        env.close()


def test_registry_errors() -> None:
    with pytest.raises(KeyError, match="unknown task 'nope'; available: .*quadrotor-hover"):
        get_task("nope")
    with pytest.raises(TypeError):
        make("quadrotor-hover", no_such_setting=1)


def test_policy_env_config_refuses_a_layout_the_task_does_not_build() -> None:
    from helpers import TRAINED_POLICY

    from sim2real.core.policy_file import read_metadata

    meta = read_metadata(TRAINED_POLICY)
    spec, cfg = policy_env_config(meta)
    assert spec.name == "quadrotor-hover" and cfg.action_history == 32
    bad = type(meta).from_json({**meta.to_json(), "env_config": {**meta.env_config, "action_history": 8}})
    with pytest.raises(CheckpointError, match="layout"):
        policy_env_config(bad)
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        policy_env_config(type(meta).from_json({**meta.to_json(), "env_config": {"no_such": 1}}))
