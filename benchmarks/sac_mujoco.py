"""Return at fixed env-step budgets on HalfCheetah, Hopper and Ant: ours vs stable-baselines3 SAC (its defaults).

Every (task, seed, learner) is one job in its own process with one torch thread, ``--jobs`` at a time, queued
so that ours and SB3 of the same task and seed run side by side (same contention for the CPU). Both are
evaluated by the same code: the deterministic policy on Gymnasium's own ``<Task>-v5`` env, ``--eval-episodes``
episodes from fixed seeds, at each budget. Wall-clock is training time with evaluation excluded.

* ours: ``sim2real train mujoco-<task>`` settings (:func:`~sim2real.policies.runner.locomotion_defaults`:
  4 batched envs, one update of batch 256 per env step, 256x256 networks, LayerNorm critics), ``--ours KEY=VALUE``
  overrides them.
* stable-baselines3: ``SAC("MlpPolicy", gym.make("<Task>-v5"), seed=seed)``, i.e. its documented defaults
  (256x256, batch 256, lr 3e-4, learning_starts 100, one update per env step, auto entropy from 1.0).

    python benchmarks/sac_mujoco.py [--tasks halfcheetah hopper ant] [--seeds 0 1 2]
        [--budgets 10000 20000 30000] [--jobs 2] [--eval-episodes 5] [--ours sac.n_step=3 ...]

The default budgets are what a 2-core CPU runs in about 1.5 hours (the README's table); the field's usual
figures are ``--budgets 100000 300000`` (SB3 alone needs ~25 min per 100k steps per run on one core here).

Results go to ``benchmarks/results/sac_mujoco.json`` after every finished job (a rerun with the same
settings skips the jobs already there).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GYM_IDS = {"halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5", "ant": "Ant-v5"}
EVAL_SEED = 10_000


def evaluate(policy: Any, gym_id: str, episodes: int) -> float:
    """Mean undiscounted return of ``policy(obs (D,)) -> action (A,)`` over ``episodes`` seeded episodes."""
    import gymnasium as gym

    env = gym.make(gym_id)
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            total += float(r)
            done = term or trunc
    env.close()
    return total / episodes


class Clock:
    """Training time with evaluation excluded, and the return at each budget."""

    def __init__(self, gym_id: str, episodes: int) -> None:
        self.gym_id, self.episodes = gym_id, episodes
        self.t0, self.eval_s = time.perf_counter(), 0.0
        self.points: list[dict[str, float]] = []

    def train_time(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_s

    def evaluate(self, policy: Any, env_steps: int) -> None:
        t_train, t = self.train_time(), time.perf_counter()
        ret = evaluate(policy, self.gym_id, self.episodes)
        self.points.append({"env_steps": env_steps, "return": round(ret, 1), "train_time_s": round(t_train, 1)})
        self.eval_s += time.perf_counter() - t


def run_ours(task: str, seed: int, budgets: list[int], episodes: int, overrides: dict[str, str]) -> dict[str, Any]:
    import torch

    from sim2real.core.config import apply_overrides
    from sim2real.policies.runner import Runner
    from sim2real.tasks.gym_mujoco import locomotion_defaults

    torch.set_num_threads(1)
    base = locomotion_defaults(f"mujoco-{task}")
    interval = math.gcd(*budgets)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(base, seed=seed, total_env_steps=max(budgets), log_dir=tmp, log_interval=interval,
                      checkpoint_interval=10**12, torch_threads=1)  # fmt: skip
        cfg = apply_overrides(cfg, overrides)
        if interval % cfg.num_envs:
            raise SystemExit(f"budgets must be multiples of num_envs={cfg.num_envs}")
        runner = Runner(cfg, quiet=True)
        agent = runner.agent

        def policy(obs: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(obs, dtype=torch.float32)[None]
            return agent.act({cfg.sac.actor_obs: x}, deterministic=True)[0].numpy()

        clock = Clock(GYM_IDS[task], episodes)

        def on_log(r: Runner) -> None:
            if r.env_steps in budgets:
                clock.evaluate(policy, r.env_steps)

        summary = runner.train(callback=on_log)
        return {"points": clock.points, "train_time_s": round(clock.train_time(), 1), "updates": summary["updates"],
                "settings": {"num_envs": cfg.num_envs, "updates_per_step": cfg.updates_per_step,
                             "batch_size": cfg.sac.batch_size, "n_step": cfg.sac.n_step,
                             "num_atoms": cfg.sac.num_atoms, "critic_layernorm": cfg.sac.critic_layernorm,
                             "warmup_env_steps": cfg.warmup_env_steps, **overrides}}  # fmt: skip


def run_sb3(task: str, seed: int, budgets: list[int], episodes: int) -> dict[str, Any]:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    model = SAC("MlpPolicy", gym.make(GYM_IDS[task]), seed=seed, device="cpu", verbose=0)

    def policy(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    clock = Clock(GYM_IDS[task], episodes)

    class Hook(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in budgets:
                clock.evaluate(policy, self.num_timesteps)
            return True

    clock.t0 = time.perf_counter()
    model.learn(total_timesteps=max(budgets), callback=Hook())
    return {"points": clock.points, "train_time_s": round(clock.train_time(), 1),
            "updates": int(model._n_updates), "settings": "SB3 defaults"}  # fmt: skip


def job(spec: tuple[str, int, str, list[int], int, dict[str, str]]) -> dict[str, Any]:
    task, seed, learner, budgets, episodes, overrides = spec
    t = time.perf_counter()
    out = run_ours(task, seed, budgets, episodes, overrides) if learner == "ours" else run_sb3(task, seed, budgets, episodes)
    return {"task": task, "seed": seed, "learner": learner, **out, "job_wall_s": round(time.perf_counter() - t, 1)}


def _key(r: dict[str, Any]) -> tuple[str, int, str]:
    return r["task"], r["seed"], r["learner"]


def render(res: dict[str, Any]) -> Any:
    """Table: mean ± std return over seeds at each budget, and training wall-clock, per learner.

    Speed-up is SB3 time / ours; returns are compared as a difference, since they can be negative.
    """
    from rich.table import Table

    budgets = res["settings"]["budgets"]
    tab = Table(title=f"SAC on Gymnasium MuJoCo v5 ({res['machine']})")
    for col in ("task", "env steps", "ours return", "SB3 return", "ours − SB3", "ours time", "SB3 time", "speed-up"):
        tab.add_column(col, justify="left" if col == "task" else "right")
    for task in res["settings"]["tasks"]:
        for b in budgets:
            cells: dict[str, tuple[list[float], list[float]]] = {}
            for learner in ("ours", "sb3"):
                pts = [p for r in res["runs"] if r["task"] == task and r["learner"] == learner
                       for p in r["points"] if p["env_steps"] == b]  # fmt: skip
                cells[learner] = ([p["return"] for p in pts], [p["train_time_s"] for p in pts])
            (ro, to), (rs, ts) = cells["ours"], cells["sb3"]

            def fmt(x: list[float]) -> str:
                return f"{np.mean(x):.0f} ± {np.std(x):.0f} (n={len(x)})" if x else "-"

            diff = f"{np.mean(ro) - np.mean(rs):+.0f}" if ro and rs else "-"
            speed = f"×{np.mean(ts) / np.mean(to):.2f}" if to and ts else "-"
            tab.add_row(task, f"{b:,}", fmt(ro), fmt(rs), diff, f"{np.mean(to):.0f} s" if to else "-",
                        f"{np.mean(ts):.0f} s" if ts else "-", speed)  # fmt: skip
    return tab


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(GYM_IDS), choices=list(GYM_IDS), help="tasks to run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (each learner, each task)")
    p.add_argument("--budgets", nargs="+", type=int, default=[10_000, 20_000, 30_000],
                   help="env-step budgets at which the deterministic policy is evaluated; the run lasts the largest")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2, help="jobs in parallel (one torch thread each)")
    p.add_argument("--eval-episodes", type=int, default=5, help="evaluation episodes per budget")
    p.add_argument("--learners", nargs="+", default=["ours", "sb3"], choices=["ours", "sb3"])
    p.add_argument("--ours", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of our TrainConfig")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/sac_mujoco.json", help="JSON results path")
    args = p.parse_args(argv)
    overrides = dict(kv.split("=", 1) for kv in args.ours)
    budgets = sorted(set(args.budgets))
    settings = {"tasks": args.tasks, "seeds": args.seeds, "budgets": budgets, "eval_episodes": args.eval_episodes,
                "ours_overrides": overrides}  # fmt: skip
    from rich.console import Console

    from sim2real.core.files import write_text_atomic

    res: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {mp.cpu_count()} cores",
                           "settings": settings, "runs": []}  # fmt: skip
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get("settings") == settings:
            res["runs"] = old["runs"]
    done = {_key(r) for r in res["runs"]}
    specs = [(t, s, lrn, budgets, args.eval_episodes, overrides if lrn == "ours" else {})
             for t in args.tasks for s in args.seeds for lrn in args.learners if (t, s, lrn) not in done]  # fmt: skip
    con = Console(width=150)
    con.print(f"{len(specs)} jobs ({len(done)} already done), {args.jobs} at a time")
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = [pool.submit(job, s) for s in specs]
        for fut in as_completed(futures):
            r = fut.result()
            res["runs"].append(r)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(args.out, json.dumps(res, indent=1))
            pts = ", ".join(f"{p['env_steps']}: {p['return']:.0f}" for p in r["points"])
            con.print(f"{r['task']} seed {r['seed']} {r['learner']}: {pts} ({r['train_time_s']:.0f} s)")
    con.print(render(res))
    con.print(f"results written to {args.out}")
    return res


if __name__ == "__main__":
    main()
