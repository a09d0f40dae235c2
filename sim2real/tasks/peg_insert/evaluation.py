"""Peg-insert evaluation: the success rate (and returns, episode lengths) of a policy over whole episodes.

``min(episodes, max_envs)`` envs run in parallel and each counts its first ``ceil(episodes / num_envs)`` episodes
(stopping at the first ``episodes`` completions would favour the short, successful ones); the figures are over
exactly ``episodes`` of them. The policy reads its ``obs_group`` (:func:`~sim2real.sim.registry.policy_input`), so
the same code scores a teacher (``critic``), a student (``policy+tactile``) and an exported file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sim2real.sim.registry import EvalRequest, PolicyFn, policy_input
from sim2real.tasks.peg_insert.env import PegInsertConfig, PegInsertEnv

VALIDATION_SEED = 12345
"""Validation episodes during training use this seed (not the training seeds, not the evaluation defaults)."""


@torch.no_grad()
def run_episodes(policy: PolicyFn, env_cfg: PegInsertConfig, episodes: int, seed: int, max_envs: int = 50) -> dict[str, Any]:
    """``{"episodes", "success_rate", "success_ci95", "return_mean", "length_mean_s", "success_length_mean_s"}``."""
    if episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {episodes}")
    n = min(episodes, max_envs)
    per_env = math.ceil(episodes / n)
    env = PegInsertEnv(env_cfg.for_evaluation(n))
    rows: list[tuple[int, float, float, float]] = []  # (env, success, return, length)
    try:
        obs = env.reset(seed)
        counted = torch.zeros(n, dtype=torch.long)
        while bool((counted < per_env).any()):
            obs, _, terminated, truncated, info = env.step(policy(policy_input(policy, obs)))
            ids = (terminated | truncated).nonzero().flatten().tolist()  # the order of info["episode"]
            for j, i in enumerate(ids):
                if counted[i] < per_env:
                    ep = info["episode"]
                    rows.append((i, float(ep["success"][j]), float(ep["return"][j]), float(ep["length"][j])))
                counted[i] += 1
        dt = env.spec.control_dt
    finally:
        env.close()
    chosen = sorted(rows, key=lambda r: r[0])[:episodes]  # stable: each env's episodes in order
    s = np.array([r[1] for r in chosen])
    p = float(s.mean())
    lengths = np.array([r[3] for r in chosen]) * dt
    return {
        "episodes": len(chosen),
        "success_rate": p,
        "success_ci95": 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / len(chosen)),
        "return_mean": float(np.mean([r[2] for r in chosen])),
        "length_mean_s": float(lengths.mean()),
        "success_length_mean_s": float(lengths[s > 0].mean()) if s.any() else math.nan,
    }


def validation_score(policy: PolicyFn, env_cfg: PegInsertConfig, episodes: int, seed: int | None = None) -> dict[str, float]:
    """Validation figures and the score that keeps a run's best policy (lower is better).

    ``score = 1 - success rate``, ties broken by the time successful insertions take.
    """
    res = run_episodes(policy, env_cfg, episodes, VALIDATION_SEED if seed is None else seed)
    t = res["success_length_mean_s"]
    return {"score": 1.0 - res["success_rate"] + 1e-3 * (t if math.isfinite(t) else env_cfg.episode_s),
            "success_rate": res["success_rate"], "return_mean": res["return_mean"]}  # fmt: skip


def evaluate_policy(policy: PolicyFn, env_cfg: PegInsertConfig, request: EvalRequest) -> dict[str, Any]:
    """The task's ``sim2real eval``: success rate with its 95 % interval, return, episode lengths."""
    return {"task": "peg-insert", **run_episodes(policy, env_cfg, request.episodes, request.seed)}


def print_report(results: dict[str, Any]) -> None:
    r = results
    print(f"peg-insert: {r['episodes']} episodes, success {r['success_rate']:.1%} ± {r['success_ci95']:.1%} (95 %), "
          f"return {r['return_mean']:.1f}, episode {r['length_mean_s']:.2f} s, successful insertions take "
          f"{r['success_length_mean_s']:.2f} s")  # fmt: skip
    print(f"wrote {', '.join(r['meta']['files'])}")
