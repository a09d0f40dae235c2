"""Peg insertion by touch: asymmetric actor-critic distillation (AACD) against its ablations, over several seeds.

Per seed, with the task's default settings (``sim2real train peg-insert --stage teacher|student``):

* ``teacher``: the privileged teacher (actor and critic on the simulator's state);
* ``aacd``: the tactile student (``policy+tactile``) with the task's defaults: the teacher's critic, finetuned, and
  a 20k-step DAgger warm start;
* ``aacd_no_dagger``: the same without the DAgger warm start (the critic alone teaches);
* ``aacd_frozen``: the defaults with the teacher's critic frozen;
* ``tactile_scratch``: a tactile student that learns nothing from the teacher (a critic from scratch, no DAgger:
  plain asymmetric actor-critic, the same budget);
* ``no_tactile``: the defaults with an actor that reads only ``policy`` (no touch).

Every policy is exported to ONNX and evaluated by onnxruntime over ``--episodes`` episodes (default 200) on seed
``1000 + seed``, the success rate of each with the training wall time. The table gives mean ± std over the seeds.
``--jobs 2`` runs two seeds at once (each run uses one torch thread); the wall times are then those of a shared
machine.

    python benchmarks/peg_insert.py [--seeds 0 1 2] [--jobs 2] [--episodes 200] [--out benchmarks/results/peg_insert.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.export.onnx import export_onnx
from sim2real.policies.runner import Runner, TrainConfig
from sim2real.sim.registry import get_task
from sim2real.tasks.peg_insert.evaluation import success_rates

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("teacher", "aacd", "aacd_no_dagger", "aacd_frozen", "tactile_scratch", "no_tactile")


def config(variant: str, seed: int, teacher: str, log_dir: str) -> TrainConfig:
    """The run of one variant: the task's defaults, changed only where the variant differs."""
    spec = get_task("peg-insert")
    if variant == "teacher":
        return replace(spec.train_defaults(), seed=seed, log_dir=log_dir)
    assert spec.student_defaults is not None
    cfg = spec.student_defaults()
    d = replace(cfg.distill, teacher=teacher)
    if variant == "aacd_no_dagger":
        d = replace(d, dagger_env_steps=0)
    elif variant == "aacd_frozen":
        d = replace(d, critic="frozen")
    elif variant == "tactile_scratch":
        d = replace(d, critic="scratch", dagger_env_steps=0)
    cfg = replace(cfg, seed=seed, log_dir=log_dir, name=variant, distill=d)
    if variant == "no_tactile":
        cfg = replace(cfg, sac=replace(cfg.sac, actor_obs="policy"))
    return cfg


def run(variant: str, seed: int, teacher: str, log_dir: str, episodes: int) -> dict[str, Any]:
    t0 = time.time()
    runner = Runner(config(variant, seed, teacher, log_dir), quiet=True)
    runner.train()
    train_s = time.time() - t0
    path = export_onnx(runner.run_dir)
    res = success_rates(OnnxPolicy(path), runner.env.cfg, episodes, 1000 + seed)
    runner.env.close()
    return {"variant": variant, "seed": seed, "run_dir": str(runner.run_dir), "train_s": round(train_s, 1),
            "env_steps": runner.env_steps, "success_rate": res["success_rate"],
            "success_length_mean_s": res["success_length_mean_s"]}  # fmt: skip


def run_seed(seed: int, variants: tuple[str, ...], log_dir: str, episodes: int) -> list[dict[str, Any]]:
    """The teacher of one seed, then each student variant distilled from it."""
    torch.set_num_threads(1)
    teacher = run("teacher", seed, "", log_dir, episodes)
    print(json.dumps(teacher), flush=True)
    rows = [teacher] if "teacher" in variants else []
    for v in variants:
        if v != "teacher":
            rows.append(run(v, seed, teacher["run_dir"], log_dir, episodes))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--jobs", type=int, default=1, help="seeds trained at once (processes)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--log-dir", default="runs/bench-peg")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "peg_insert.json"))
    args = p.parse_args()
    work = [(seed, tuple(args.variants), args.log_dir, args.episodes) for seed in args.seeds]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            per_seed = pool.starmap(run_seed, work)
    else:
        per_seed = [run_seed(*w) for w in work]
    rows = [r for rs in per_seed for r in rs]
    summary = {}
    print(f"\n{'variant':<17}{'success (mean ± std over seeds)':>34}{'per seed':>24}{'train time':>14}")
    for v in args.variants:
        r = [x for x in rows if x["variant"] == v]
        s = [x["success_rate"] for x in r]
        t = statistics.mean(x["train_s"] for x in r)
        sd = statistics.stdev(s) if len(s) > 1 else 0.0
        summary[v] = {"success_mean": statistics.mean(s), "success_std": sd, "per_seed": s, "train_s_mean": t}
        print(f"{v:<17}{f'{statistics.mean(s):.1%} ± {sd:.1%}':>34}{' '.join(f'{x:.0%}' for x in s):>24}{t:>12.0f} s")
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "threads_per_run": 1, "jobs": args.jobs, "torch": torch.__version__},
           "episodes": args.episodes, "seeds": args.seeds, "summary": summary, "runs": rows}  # fmt: skip
    write_text_atomic(Path(args.out), json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
