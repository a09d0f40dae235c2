"""Peg-insert evaluation: the success rate (and returns, episode lengths) of a policy over whole episodes.

``min(episodes, max_envs)`` envs run in parallel, over exactly ``episodes`` episodes counted as
:func:`~sim2real.sim.episodes.run_episodes` does (short, successful ones are not favoured); the same code scores a
teacher (``critic``), a student (``policy+tactile``) and an exported file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim2real.sim.episodes import run_episodes
from sim2real.sim.registry import EvalRequest, PolicyFn
from sim2real.tasks.peg_insert.env import PegInsertConfig, PegInsertEnv

VALIDATION_SEED = 12345
"""Validation episodes during training use this seed (not the training seeds, not the evaluation defaults)."""


def success_rates(
    policy: PolicyFn, env_cfg: PegInsertConfig, episodes: int, seed: int, max_envs: int = 50
) -> dict[str, Any]:
    """``{"episodes", "success_rate", "success_ci95", "return_mean", "length_mean_s", "success_length_mean_s"}``."""
    env = PegInsertEnv(env_cfg.for_evaluation(min(max(episodes, 1), max_envs)))  # run_episodes refuses episodes < 1
    try:
        rows = run_episodes(policy, env, episodes, seed)
    finally:
        env.close()
    s = np.array([r["success"] for r in rows])
    p = float(s.mean())
    lengths = np.array([r["length"] for r in rows]) * env.spec.control_dt
    return {
        "episodes": len(rows),
        "success_rate": p,
        "success_ci95": 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / len(rows)),
        "return_mean": float(np.mean([r["return"] for r in rows])),
        "length_mean_s": float(lengths.mean()),
        "success_length_mean_s": float(lengths[s > 0].mean()) if s.any() else math.nan,
    }


def validation_score(
    policy: PolicyFn, env_cfg: PegInsertConfig, episodes: int, seed: int | None = None
) -> dict[str, float]:
    """Validation figures and the score that keeps a run's best policy (lower is better).

    ``score = 1 - success rate``, ties broken by the time successful insertions take.
    """
    res = success_rates(policy, env_cfg, episodes, VALIDATION_SEED if seed is None else seed)
    t = res["success_length_mean_s"]
    return {"score": 1.0 - res["success_rate"] + 1e-3 * (t if math.isfinite(t) else env_cfg.episode_s),
            "success_rate": res["success_rate"], "return_mean": res["return_mean"]}  # fmt: skip


def evaluate_policy(policy: PolicyFn, env_cfg: PegInsertConfig, request: EvalRequest) -> dict[str, Any]:
    """The task's ``sim2real eval``: success rate with its 95 % interval, return, episode lengths."""
    return {"task": "peg-insert", **success_rates(policy, env_cfg, request.episodes, request.seed)}


def print_report(results: dict[str, Any]) -> None:
    r = results
    print(f"peg-insert: {r['episodes']} episodes, success {r['success_rate']:.1%} ± {r['success_ci95']:.1%} (95 %), "
          f"return {r['return_mean']:.1f}, episode {r['length_mean_s']:.2f} s, successful insertions take "
          f"{r['success_length_mean_s']:.2f} s")  # fmt: skip
    print(f"wrote {', '.join(r['meta']['files'])}")
