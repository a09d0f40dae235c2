"""Whole episodes of a policy on a batched env, counted so that short episodes are not favoured.

Every env counts its first ``ceil(episodes / num_envs)`` episodes (stopping at the first ``episodes`` completions
would favour the short ones, often the failures or the successes); the rows are then taken env by env, each env's in
order, up to ``episodes``. The policy reads its ``obs_group`` (:func:`~sim2real.sim.registry.policy_input`), so the
same loop scores a policy on ``policy``, a teacher on ``critic``, a student on ``policy+tactile`` or an exported file.
"""

from __future__ import annotations

import math

import torch

from sim2real.sim.registry import PolicyFn, policy_input
from sim2real.sim.vecenv import VecEnv


@torch.no_grad()
def run_episodes(policy: PolicyFn, env: VecEnv, episodes: int, seed: int) -> list[dict[str, float]]:
    """``episodes`` rows ``{"env": index, "return", "length", ...}``: every figure of ``info["episode"]`` per episode.

    The caller owns ``env`` (and closes it); it is reset with ``seed`` first.
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    per_env = math.ceil(episodes / env.num_envs)
    rows: list[dict[str, float]] = []
    obs = env.reset(seed)
    counted = torch.zeros(env.num_envs, dtype=torch.long)
    while bool((counted < per_env).any()):
        obs, _, terminated, truncated, info = env.step(policy(policy_input(policy, obs)))
        ids = (terminated | truncated).nonzero().flatten().cpu().tolist()  # the order of info["episode"]
        for j, i in enumerate(ids):
            if counted[i] < per_env:
                rows.append({"env": float(i), **{k: float(v[j]) for k, v in info["episode"].items()}})
            counted[i] += 1
    return sorted(rows, key=lambda r: r["env"])[:episodes]  # stable: each env's episodes in order
