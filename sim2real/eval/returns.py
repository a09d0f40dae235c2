"""Evaluation of an exported policy on any registered task: return and length of whole episodes.

Used by ``sim2real eval`` for tasks without an evaluation of their own (``TaskSpec.evaluate``). The env is the
task's, rebuilt from the ``env_config`` in the policy's metadata; ``min(episodes, max_envs)`` envs run in
parallel and each counts its first ``ceil(episodes / num_envs)`` episodes, so short episodes are not favoured
(stopping at the first ``episodes`` completions would be). A task with a ``validate`` hook (e.g. the humanoid's
tracking error) adds its figures under ``validation``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sim2real.sim.registry import TaskSpec, policy_input
from sim2real.sim.vecenv import EnvConfig


@torch.no_grad()
def evaluate_returns(
    policy: Callable[[torch.Tensor], torch.Tensor],
    spec: TaskSpec,
    env_cfg: EnvConfig,
    episodes: int,
    seed: int,
    max_envs: int = 32,
) -> dict[str, Any]:
    """Figures of ``episodes`` episodes of task ``spec`` under ``policy`` (``policy`` group ``(N, D)`` -> ``(N, A)``).

    Returns ``{"task", "episodes", "return_mean", "return_std", "return_min", "return_max", "length_mean"}``
    (plus ``validation`` when the task has a validate hook).
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    n = min(episodes, max_envs)
    per_env = math.ceil(episodes / n)
    env = spec.make(env_cfg.for_evaluation(n))
    obs = env.reset(seed)
    done_count = torch.zeros(n, dtype=torch.long)
    returns: list[float] = []
    lengths: list[float] = []
    while bool((done_count < per_env).any()):
        obs, _, terminated, truncated, info = env.step(policy(policy_input(policy, obs)))
        ids = (terminated | truncated).nonzero().flatten()  # the order of info["episode"]
        if len(ids) == 0:
            continue
        ep = info["episode"]
        for j, i in enumerate(ids.cpu().tolist()):
            if done_count[i] < per_env:
                returns.append(float(ep["return"][j]))
                lengths.append(float(ep["length"][j]))
            done_count[i] += 1
    env.close()
    r = np.asarray(returns)
    out: dict[str, Any] = {"task": spec.name, "episodes": len(r), "return_mean": float(r.mean()), "return_std": float(r.std()),
                           "return_min": float(r.min()), "return_max": float(r.max()),
                           "length_mean": float(np.mean(lengths))}  # fmt: skip
    if spec.validate is not None:
        out["validation"] = spec.validate(policy, env_cfg, episodes, seed)
    return out
