"""Evaluation of an exported policy on any registered task: return and length of whole episodes.

Used by ``sim2real eval`` for tasks other than ``quadrotor-hover`` (which has its own figures, :mod:`sim2real.eval`).
The env is rebuilt from the ``env_config`` in the policy's metadata, ``min(episodes, max_envs)`` envs run in
parallel and each counts its first ``ceil(episodes / num_envs)`` episodes, so short episodes are not favoured
(stopping at the first ``episodes`` completions would be). A task with a ``validate`` hook (e.g. the humanoid's
tracking error) adds its figures under ``validation``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import is_dataclass, replace
from typing import Any

import numpy as np
import torch

from sim2real.sim.core import get_task
from sim2real.utils import dataclass_from_dict


@torch.no_grad()
def evaluate_returns(
    policy: Callable[[torch.Tensor], torch.Tensor],
    task: str,
    env_config: dict[str, Any] | None,
    episodes: int,
    seed: int,
    max_envs: int = 32,
) -> dict[str, Any]:
    """Figures of ``episodes`` episodes of ``task`` under ``policy`` (``policy`` group ``(N, D)`` -> ``(N, A)``).

    Returns ``{"task", "episodes", "return_mean", "return_std", "return_min", "return_max", "length_mean"}``
    (plus ``validation`` when the task has a validate hook).
    """
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    entry = get_task(task)
    n = min(episodes, max_envs)
    per_env = math.ceil(episodes / n)
    if entry.config_cls is not None:
        cfg = dataclass_from_dict(entry.config_cls, env_config) if env_config else entry.config_cls()
        cfg = replace(cfg, num_envs=n, device="cpu")
        env = entry.make(cfg)
    else:
        cfg, env = None, entry.make(num_envs=n, device="cpu")
    obs = env.reset(seed)
    done_count = torch.zeros(n, dtype=torch.long)
    returns: list[float] = []
    lengths: list[float] = []
    while bool((done_count < per_env).any()):
        obs, _, terminated, truncated, info = env.step(policy(obs["policy"]))
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
    out: dict[str, Any] = {"task": task, "episodes": len(r), "return_mean": float(r.mean()), "return_std": float(r.std()),
                           "return_min": float(r.min()), "return_max": float(r.max()),
                           "length_mean": float(np.mean(lengths))}  # fmt: skip
    if entry.validate is not None and is_dataclass(cfg):
        out["validation"] = entry.validate(policy, cfg, episodes, seed)
    return out
