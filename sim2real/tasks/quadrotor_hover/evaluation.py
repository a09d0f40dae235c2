"""Evaluation of hover policies: batched episodes from the ``nominal`` and ``hard`` start distributions.

Figures per start distribution (all episodes 5 s, nominal physics, per-episode random disturbance):

* ``left_box_fraction``: episodes in which any ``|p_i|`` ever exceeded the 0.6 m box;
* ``pos_error_last2s_m``: mean ``|p|`` over the last 2 s, averaged over the episodes that stayed inside;
* ``pos_error_all_last2s_m``: the same over every episode, one that left the box counting as the box (0.6 m);
* ``tilt_last2s_deg``: mean tilt over the last 2 s (same episodes);
* ``action_jitter``: mean ``|a_t - a_{t-1}|`` over motors and steps (normalised action units);
* ``settled_fraction``: episodes that stayed inside and end (last 2 s) within 0.10 m;
* ``beyond_limits_fraction``: episodes that crossed a safety limit (:mod:`sim2real.sim.safety`) after the start.

:func:`validation_score` ranks policies during training (the run keeps its best one); :func:`evaluate_policy` and
:func:`print_report` are the task's ``sim2real eval``; HIL (:mod:`sim2real.mcu.hil`) flies :func:`rollout_hover`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sim2real.core.files import save_figure_atomic
from sim2real.sim.quadrotor import POS, QUAT, RPM, tilt_angle
from sim2real.sim.registry import EvalRequest
from sim2real.sim.safety import SafetyLimits
from sim2real.tasks.quadrotor_hover.env import EVAL_STARTS, HoverConfig, QuadrotorHoverEnv, hover_eval_config

PolicyFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps the ``policy`` observation ``(N, obs_dim)`` to actions ``(N, 4)``."""

LIMITS = SafetyLimits()
"""The safety limits the evaluation counts violations of (``beyond_limits_fraction``: episodes that crossed one
after the start; the hard starts begin beyond the tilt limit)."""

#: The hover criterion (nominal starts, >= 200 episodes).
CRITERION = {"left_box_fraction": 0.01, "pos_error_last2s_m": 0.10}


@torch.no_grad()
def rollout_hover(
    policy: PolicyFn, start: str, episodes: int, seed: int = 0, base: HoverConfig | None = None, duration_s: float = 5.0,
) -> dict[str, torch.Tensor]:
    """Run ``episodes`` parallel episodes on the CPU without early termination; returns trajectories.

    ``base`` carries the physics (e.g. ``HoverConfig(shift=...)``: a quadrotor whose physics differ from the model's).

    Returns:
        ``pos`` ``(T+1, E, 3)``, ``tilt`` ``(T+1, E)`` rad, ``action`` ``(T, E, 4)``, ``rpm`` ``(T+1, E, 4)``,
        ``margin`` ``(T+1, E)`` to the safety limits (:data:`LIMITS`, around the set-point).
    """
    cfg = hover_eval_config(start, episodes, base)
    steps = int(round(duration_s / cfg.dt))
    cfg = replace(cfg, termination_box=math.inf, episode_steps=steps + 1, device="cpu", compile=False)
    env = QuadrotorHoverEnv(cfg)
    obs = env.reset(seed)
    pos, tilt, acts, rpm = [env.state[:, POS].clone()], [tilt_angle(env.state[:, QUAT])], [], [env.state[:, RPM].clone()]
    home, margin = torch.zeros(3), [LIMITS.margins(env.state, torch.zeros(3))]
    for _ in range(steps):
        a = policy(obs["policy"])
        if a.shape != (episodes, 4) or not torch.isfinite(a).all():
            raise ValueError(f"policy returned invalid actions: shape {tuple(a.shape)}, finite={bool(torch.isfinite(a).all())}")
        obs, *_ = env.step(a)
        acts.append(a.clone())
        pos.append(env.state[:, POS].clone())
        tilt.append(tilt_angle(env.state[:, QUAT]))
        rpm.append(env.state[:, RPM].clone())
        margin.append(LIMITS.margins(env.state, home))
    return {"pos": torch.stack(pos), "tilt": torch.stack(tilt), "action": torch.stack(acts), "rpm": torch.stack(rpm),
            "margin": torch.stack(margin), "dt": torch.tensor(cfg.dt)}  # fmt: skip


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
        "pos_error_all_last2s_m": float(torch.where(inside, err.clamp(max=box), box).mean()),
        "pos_error_last2s_p90_m": float(err[inside].quantile(0.9)) if n_in else math.nan,
        "tilt_last2s_deg": float(torch.rad2deg(tilt[-k:].mean(0))[inside].mean()) if n_in else math.nan,
        "action_jitter": float(jitter),
        "settled_fraction": float((inside & (err < 0.10)).float().mean()),
        **({"beyond_limits_fraction": float((traj["margin"][1:] < 0).any(0).float().mean())} if "margin" in traj else {}),
    }


def evaluate_hover(
    policy: PolicyFn, episodes: int = 200, seed: int = 0, starts: tuple[str, ...] = ("nominal", "hard"),
    base: HoverConfig | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Metrics and trajectories for each start distribution."""
    results: dict[str, Any] = {}
    trajs: dict[str, dict[str, torch.Tensor]] = {}
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
    save_figure_atomic(fig, path, dpi=90)


def evaluate_policy(policy: PolicyFn, env_cfg: HoverConfig, request: EvalRequest) -> dict[str, Any]:
    """The task's ``sim2real eval``: figures per start distribution (+ the criterion), ``trajectories.png``."""
    if request.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {request.episodes}")
    results, trajs = evaluate_hover(policy, request.episodes, request.seed, request.starts or tuple(EVAL_STARTS),
                                    base=env_cfg)  # fmt: skip
    plot = request.out_dir / "trajectories.png"
    plot_trajectories(trajs, plot)
    results["files"] = [str(plot)]
    return results


def print_report(results: dict[str, Any]) -> None:
    """The figures of :func:`evaluate_policy` as a table, and the criterion's verdict."""
    from rich.console import Console
    from rich.table import Table

    starts = [k for k in EVAL_STARTS if k in results]
    table = Table(title=f"evaluation: {results['meta']['episodes']} episodes x 5 s per start, onnxruntime")
    table.add_column("figure")
    for s in starts:
        table.add_column(s, justify="right")
    rows = [
        ("left the ±0.6 m box", "left_box_fraction", "{:.1%}"),
        ("mean |p| over last 2 s [m]", "pos_error_last2s_m", "{:.3f}"),
        ("p90 |p| over last 2 s [m]", "pos_error_last2s_p90_m", "{:.3f}"),
        ("mean tilt over last 2 s [deg]", "tilt_last2s_deg", "{:.2f}"),
        ("action jitter |a_t - a_t-1|", "action_jitter", "{:.4f}"),
        ("settled < 0.10 m", "settled_fraction", "{:.1%}"),
    ]
    for label, key, fmt in rows:
        table.add_row(label, *(fmt.format(results[s][key]) for s in starts))
    console = Console()
    console.print(table)
    if "nominal" in results:
        ok = results["nominal_pass"]["passed"]
        console.print(
            f"criterion (nominal: <= {CRITERION['left_box_fraction']:.0%} leave, error < "
            f"{CRITERION['pos_error_last2s_m']} m): " + ("[bold green]PASS[/]" if ok else "[bold red]FAIL[/]")
        )
    console.print(f"wrote {', '.join(results['meta']['files'])}")
