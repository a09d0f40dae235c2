"""`evaluate_returns`: whole-episode statistics of a policy on any registered task."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mujoco")

from sim2real.eval.returns import evaluate_returns  # noqa: E402
from sim2real.sim.mujoco.env import MujocoEnvConfig  # noqa: E402
from sim2real.sim.registry import get_task  # noqa: E402


def zero_policy(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], 3)


def test_every_env_counts_the_same_number_of_episodes_and_results_repeat() -> None:
    spec, cfg = get_task("mujoco-hopper"), MujocoEnvConfig(episode_steps=40, num_threads=1)
    a = evaluate_returns(zero_policy, spec, cfg, episodes=6, seed=3, max_envs=4)
    assert a["episodes"] == 6  # the first 2 (ceil(6 / 4)) episodes of each env, env by env: short ones not favoured
    assert a["return_min"] <= a["return_mean"] <= a["return_max"] and 1 <= a["length_mean"] <= 40
    assert evaluate_returns(zero_policy, spec, cfg, episodes=6, seed=3, max_envs=4) == a
    with pytest.raises(ValueError, match="episodes"):
        evaluate_returns(zero_policy, spec, cfg, episodes=0, seed=3)
