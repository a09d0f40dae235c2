"""Evaluation of hover policies: batched episodes from the ``nominal`` and ``hard`` start distributions.

Figures per start distribution (all episodes 5 s, nominal physics, per-episode random disturbance):

* ``left_box_fraction``: episodes in which any ``|p_i|`` ever exceeded the 0.6 m box;
* ``pos_error_last2s_m``: mean ``|p|`` over the last 2 s, averaged over the episodes that stayed inside;
* ``tilt_last2s_deg``: mean tilt over the last 2 s (same episodes);
* ``action_jitter``: mean ``|a_t - a_{t-1}|`` over motors and steps (normalised action units);
* ``settled_fraction``: episodes that stayed inside and end (last 2 s) within 0.10 m.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sim2real.sim.quadrotor import tilt_angle
from sim2real.sim.tasks.hover import EVAL_STARTS, HoverConfig, QuadrotorHoverEnv, hover_eval_config
from sim2real.utils import write_text_atomic

PolicyFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps the ``policy`` observation ``(N, obs_dim)`` to actions ``(N, 4)``."""

#: Acceptance criterion of issue #2 (nominal starts, >= 200 episodes).
CRITERION = {"left_box_fraction": 0.01, "pos_error_last2s_m": 0.10}


@torch.no_grad()
def rollout_hover(
    policy: PolicyFn, start: str, episodes: int, seed: int = 0, base: HoverConfig | None = None, duration_s: float = 5.0
) -> dict[str, torch.Tensor]:
    """Run ``episodes`` parallel episodes on the CPU without early termination; returns trajectories.

    Returns:
        ``pos`` ``(T+1, E, 3)``, ``tilt`` ``(T+1, E)`` rad, ``action`` ``(T, E, 4)``, ``rpm`` ``(T+1, E, 4)``.
    """
    cfg = hover_eval_config(start, episodes, base)
    steps = int(round(duration_s / cfg.dt))
    cfg = replace(cfg, termination_box=math.inf, episode_steps=steps + 1, device="cpu", compile=False)
    env = QuadrotorHoverEnv(cfg)
    obs = env.reset(seed)
    pos, tilt, acts, rpm = [env.state[:, 0:3].clone()], [tilt_angle(env.state[:, 3:7])], [], [env.state[:, 13:17].clone()]
    for _ in range(steps):
        a = policy(obs["policy"])
        if a.shape != (episodes, 4) or not torch.isfinite(a).all():
            raise ValueError(f"policy returned invalid actions: shape {tuple(a.shape)}, finite={bool(torch.isfinite(a).all())}")
        obs, *_ = env.step(a)
        acts.append(a.clone())
        pos.append(env.state[:, 0:3].clone())
        tilt.append(tilt_angle(env.state[:, 3:7]))
        rpm.append(env.state[:, 13:17].clone())
    return {"pos": torch.stack(pos), "tilt": torch.stack(tilt), "action": torch.stack(acts), "rpm": torch.stack(rpm),
            "dt": torch.tensor(cfg.dt)}  # fmt: skip


def hover_base_config(meta: dict[str, Any], obs_dim: int, where: str = "policy") -> HoverConfig:
    """The task config an exported hover policy was trained with (from its ONNX metadata), checked against it.

    Raises:
        ValueError: the policy is not a ``quadrotor-hover`` policy or its layout does not fit the config.
    """
    from sim2real.utils import dataclass_from_dict

    if meta.get("task") != "quadrotor-hover":
        raise ValueError(f"{where}: hover evaluation supports quadrotor-hover policies, this one is {meta.get('task')!r}")
    base = dataclass_from_dict(HoverConfig, meta.get("env_config", {}))
    if base.action_history * 4 + 18 != obs_dim:
        raise ValueError(f"{where}: obs_dim {obs_dim} does not match action_history {base.action_history}")
    return base


def hover_metrics(traj: dict[str, torch.Tensor], box: float = 0.6, last_s: float = 2.0) -> dict[str, float]:
    """The figures of the module docstring from a :func:`rollout_hover` trajectory."""
    pos, tilt, act, dt = traj["pos"], traj["tilt"], traj["action"], float(traj["dt"])
    left = ((pos.abs() > box).any(-1) | ~torch.isfinite(pos).all(-1)).any(0)  # (E,)
    k = int(round(last_s / dt))
    err = pos[-k:].norm(dim=-1).mean(0)  # (E,)
    inside = ~left
    jitter = (act[1:] - act[:-1]).abs().mean()
    n_in = int(inside.sum())
    return {
        "episodes": int(pos.shape[1]),
        "left_box_fraction": float(left.float().mean()),
        "pos_error_last2s_m": float(err[inside].mean()) if n_in else math.nan,
        "pos_error_last2s_p90_m": float(err[inside].quantile(0.9)) if n_in else math.nan,
        "tilt_last2s_deg": float(torch.rad2deg(tilt[-k:].mean(0))[inside].mean()) if n_in else math.nan,
        "action_jitter": float(jitter),
        "settled_fraction": float((inside & (err < 0.10)).float().mean()),
    }


def evaluate_hover(
    policy: PolicyFn, episodes: int = 200, seed: int = 0, starts: tuple[str, ...] = ("nominal", "hard"),
    base: HoverConfig | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, torch.Tensor]]]:
    """Metrics and trajectories for each start distribution."""
    results, trajs = {}, {}
    for i, start in enumerate(starts):
        if start not in EVAL_STARTS:
            raise KeyError(f"unknown start distribution {start!r}; available: {', '.join(EVAL_STARTS)}")
        trajs[start] = rollout_hover(policy, start, episodes, seed + 1000 * i, base)
        results[start] = hover_metrics(trajs[start])
    results["nominal_pass"] = {"passed": passes(results["nominal"])} if "nominal" in results else {}
    return results, trajs


def passes(m: dict[str, float]) -> bool:
    """The acceptance criterion: <= 1 % leave the box and mean error over the last 2 s < 0.10 m."""
    return m["left_box_fraction"] <= CRITERION["left_box_fraction"] and m["pos_error_last2s_m"] < CRITERION["pos_error_last2s_m"]


#: Seed of the validation episodes used to pick a run's best policy; disjoint from evaluation seeds (0, 1000, ...).
VALIDATION_SEED = 7_777_777


def validation_score(
    policy: PolicyFn, base: HoverConfig | None, episodes: int, seed: int | None = None
) -> dict[str, float]:
    """Figures on validation episodes and a score (lower is better) that ranks policies by the criterion.

    ``score = err_nominal + 5 left_nominal + 0.5 left_hard`` (``err`` = 1 m when every episode left the box).
    """
    seed = VALIDATION_SEED if seed is None else seed
    res, _ = evaluate_hover(policy, episodes, seed, ("nominal", "hard"), base)
    nom, hard = res["nominal"], res["hard"]
    err = nom["pos_error_last2s_m"] if math.isfinite(nom["pos_error_last2s_m"]) else 1.0
    score = err + 5.0 * nom["left_box_fraction"] + 0.5 * hard["left_box_fraction"]
    return {
        "score": score,
        "nominal_left_box": nom["left_box_fraction"],
        "nominal_pos_error_m": err,
        "hard_left_box": hard["left_box_fraction"],
        "passes": float(passes(nom)),
    }


def plot_trajectories(trajs: dict[str, dict[str, torch.Tensor]], path: str | Path, per_start: int = 12) -> None:
    """PNG: position components, distance to set-point and tilt over time for a few episodes per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(trajs), 3, figsize=(14, 3.6 * len(trajs)), squeeze=False)
    for row, (start, tr) in enumerate(trajs.items()):
        t = torch.arange(tr["pos"].shape[0]) * float(tr["dt"])
        pos = tr["pos"][:, :per_start]
        for e in range(pos.shape[1]):
            axes[row, 0].plot(t, pos[:, e, 0], color="C0", alpha=0.5, lw=0.8)
            axes[row, 0].plot(t, pos[:, e, 1], color="C1", alpha=0.5, lw=0.8)
            axes[row, 0].plot(t, pos[:, e, 2], color="C2", alpha=0.5, lw=0.8)
        axes[row, 0].set(title=f"{start}: position x (blue) y (orange) z (green)", xlabel="t [s]", ylabel="m")
        dist = tr["pos"].norm(dim=-1)
        axes[row, 1].plot(t, dist[:, :per_start], alpha=0.6, lw=0.8)
        axes[row, 1].plot(t, dist.median(1).values, color="k", lw=2, label="median, all episodes")
        axes[row, 1].axhline(0.10, color="r", ls="--", lw=1, label="0.10 m")
        axes[row, 1].set(title=f"{start}: distance to set-point", xlabel="t [s]", ylabel="m", ylim=(0, 0.7))
        axes[row, 1].legend(loc="upper right")
        axes[row, 2].plot(t, torch.rad2deg(tr["tilt"][:, :per_start]), alpha=0.6, lw=0.8)
        axes[row, 2].set(title=f"{start}: tilt", xlabel="t [s]", ylabel="deg")
        for ax in axes[row]:
            ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def write_results(results: dict[str, Any], path: str | Path) -> None:
    write_text_atomic(path, json.dumps(results, indent=2))
