"""Evaluation of an exported policy on any registered task: return and length of whole episodes.

Used by ``sim2real eval`` for tasks without an evaluation of their own (``TaskSpec.evaluate``). The env is the
task's, rebuilt from the ``env_config`` in the policy's metadata; ``min(episodes, max_envs)`` envs run in
parallel (:func:`~sim2real.sim.episodes.run_episodes`: short episodes are not favoured). A task with a
``validate`` hook (e.g. the humanoid's tracking error) adds its figures under ``validation``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sim2real.sim.episodes import run_episodes
from sim2real.sim.registry import TaskSpec
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
    env = spec.make(env_cfg.for_evaluation(min(max(episodes, 1), max_envs)))  # run_episodes refuses episodes < 1
    try:
        rows = run_episodes(policy, env, episodes, seed)
    finally:
        env.close()
    returns, lengths = [r["return"] for r in rows], [r["length"] for r in rows]
    r = np.asarray(returns)
    out: dict[str, Any] = {"task": spec.name, "episodes": len(r), "return_mean": float(r.mean()), "return_std": float(r.std()),
                           "return_min": float(r.min()), "return_max": float(r.max()),
                           "length_mean": float(np.mean(lengths))}  # fmt: skip
    if spec.validate is not None:
        out["validation"] = spec.validate(policy, env_cfg, episodes, seed)
    return out
