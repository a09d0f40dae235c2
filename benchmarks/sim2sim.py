"""Sim-to-sim: policies trained in one physics engine, evaluated in every engine of their task (train x eval).

* ``quadrotor-hover``: trained with the task's defaults in the torch simulator and in PyBullet (``env.engine``),
  each evaluated in both over ``--hover-episodes`` nominal starts (default 200): the fraction that leaves the safety
  box and the mean position error over the last 2 s.
* ``mujoco-halfcheetah``: trained with the family's defaults for ``--cheetah-steps`` env steps (default 20,000) in
  MuJoCo and in PyBullet (PyBullet integrating the same MJCF robot), each evaluated in both over ``--cheetah-episodes``
  episodes (default 10, 1000 steps each): the mean return.

Every policy is exported to ONNX and evaluated through ``sim2real eval``'s code path (``--sim ENGINE``) on seed
``1000 + seed``. ``--jobs 2`` trains two policies at once (one torch thread each; the wall times are then those of a
shared machine).

    python benchmarks/sim2sim.py [--seed 0] [--jobs 2] [--out benchmarks/results/sim2sim.json]
    python benchmarks/sim2sim.py --hover-steps 3000 --cheetah-steps 2500 --hover-episodes 5 --cheetah-episodes 1  # smoke
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from sim2real.core.config import apply_overrides
from sim2real.core.files import write_text_atomic
from sim2real.eval.policy import evaluate_policy_file
from sim2real.export.onnx import export_onnx
from sim2real.policies.runner import Runner
from sim2real.sim.registry import get_task

REPO = Path(__file__).resolve().parents[1]
ENGINES = {"quadrotor-hover": ("torch", "pybullet"), "mujoco-halfcheetah": ("mujoco", "pybullet")}


def train(task: str, engine: str, seed: int, steps: int | None, log_dir: str) -> dict[str, Any]:
    """Train ``task`` in ``engine`` with its defaults; returns the exported policy and the training time."""
    torch.set_num_threads(1)
    over: dict[str, Any] = {"seed": seed, "log_dir": log_dir, "name": f"sim2sim-{engine}", "env.engine": engine}
    if steps:
        over["total_env_steps"] = steps
    cfg = apply_overrides(get_task(task).train_defaults(), over)
    t0 = time.time()
    runner = Runner(cfg, quiet=True)
    runner.train()
    train_s = time.time() - t0
    runner.env.close()
    return {"task": task, "train_engine": engine, "seed": seed, "train_s": round(train_s, 1), "env_steps": runner.env_steps,
            "policy": str(export_onnx(runner.run_dir))}  # fmt: skip


def evaluate(row: dict[str, Any], engine: str, episodes: int, seed: int) -> dict[str, float]:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        starts = ("nominal",) if row["task"] == "quadrotor-hover" else ()
        _, res = evaluate_policy_file(Path(row["policy"]), episodes, seed, Path(out), starts, engine=engine)
    if row["task"] == "quadrotor-hover":
        n = res["nominal"]
        return {"left_box_fraction": n["left_box_fraction"], "pos_error_last2s_m": n["pos_error_last2s_m"]}
    return {"return_mean": res["return_mean"], "return_std": res["return_std"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="policies trained at once (processes)")
    p.add_argument("--hover-steps", type=int, default=None, help="env steps of the hover runs (default: the task's)")
    p.add_argument("--hover-episodes", type=int, default=200)
    p.add_argument("--cheetah-steps", type=int, default=20_000)
    p.add_argument("--cheetah-episodes", type=int, default=10)
    p.add_argument("--log-dir", default="runs/bench-sim2sim")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sim2sim.json"))
    args = p.parse_args()
    work = [(task, engine, args.seed, args.cheetah_steps if task == "mujoco-halfcheetah" else args.hover_steps, args.log_dir)
            for task, engines in ENGINES.items() for engine in engines]  # fmt: skip
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.starmap(train, work)
        evals = [(row, engine, args.hover_episodes if row["task"] == "quadrotor-hover" else args.cheetah_episodes,
                  1000 + args.seed) for row in rows for engine in ENGINES[row["task"]]]  # fmt: skip
        figures = pool.starmap(evaluate, evals)
    for (row, engine, _, _), fig in zip(evals, figures):
        row.setdefault("eval", {})[engine] = fig
    print(f"\n{'task':<20}{'trained in':<12}{'train time':>11}   evaluated in")
    for row in rows:
        cells = []
        for engine, fig in row["eval"].items():
            if "left_box_fraction" in fig:
                cells.append(f"{engine}: {fig['left_box_fraction']:.1%} left, {fig['pos_error_last2s_m']:.3f} m")
            else:
                cells.append(f"{engine}: return {fig['return_mean']:.0f} ± {fig['return_std']:.0f}")
        print(f"{row['task']:<20}{row['train_engine']:<12}{row['train_s']:>9.0f} s   " + "   ".join(f"{c:<26}" for c in cells))
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads_per_run": 1,
                       "jobs": args.jobs, "torch": torch.__version__},
           "seed": args.seed, "hover_steps": args.hover_steps, "hover_episodes": args.hover_episodes,
           "cheetah_steps": args.cheetah_steps, "cheetah_episodes": args.cheetah_episodes, "runs": rows}  # fmt: skip
    write_text_atomic(Path(args.out), json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
