"""Wall clock until SAC learns to walk on ``mujoco-humanoid-walk`` (CUDA learner; mujoco_warp or CPU MuJoCo physics).

    python benchmarks/humanoid_walk.py [--device cuda] [--backend warp|cpu] [--num-envs 4096] [--threshold 0.25]
                                       [--max-minutes 60] [--seed 0] [--eval-interval 1000000]
                                       [--set sac.batch_size=8192 ...]

Trains with the task's ``train_defaults()`` (``--num-envs``, ``--device``, ``--seed`` and any ``--set`` dotted
overrides applied), validates the deterministic policy every ``--eval-interval`` env steps with the task's
``validate()`` (``--eval-episodes`` fresh episodes on the CPU), and prints the wall clock at which the policy first
walks: ``vel_error_xy < --threshold`` with ``fall_rate < WALK_FALL_RATE`` (total, and with validation time
excluded). Exit code 0 when it walked, 1 when ``--max-minutes`` ran out first, 77 (skipped, for ``make bench``)
when CUDA is missing (``--device cpu`` runs the same loop for smoke tests, e.g. ``--num-envs 16 --max-minutes 1``).

``--backend warp`` (the default when CUDA is available) runs the physics on mujoco_warp, every env in one batched
simulation on ``--device`` next to the learner; ``--backend cpu`` (the default otherwise) steps CPU MuJoCo with
``--num-threads`` threads and only the learner runs on the GPU. Validation always runs the CPU backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim2real.core.config import apply_overrides
from sim2real.core.files import write_text_atomic
from sim2real.policies.runner import Runner
from sim2real.tasks.humanoid_walk import TASK, WALK_FALL_RATE, WALK_VEL_ERROR, is_walking, train_defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="learner device (default cuda; cpu only for smoke tests)")
    p.add_argument("--backend", choices=("cpu", "warp"), default=None,
                   help="physics backend (default: warp when CUDA is available, else cpu)")  # fmt: skip
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--threshold", type=float, default=WALK_VEL_ERROR, help="walking: mean |v_cmd - v_xy| below [m/s]")
    p.add_argument("--max-minutes", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=os.cpu_count() or 1, help="MuJoCo stepping threads")
    p.add_argument("--eval-interval", type=int, default=1_000_000, help="env steps between validations")
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides (dotted keys)")
    p.add_argument("--log-dir", default="runs/benchmarks")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.backend = args.backend or ("warp" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA is not available on this machine (--device {args.device}); pass --device cpu to run the same "
              "loop on the CPU (smoke test, use a small --num-envs)", file=sys.stderr)  # fmt: skip
        return 77  # "skipped" for `make bench`
    gpu = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "none (CPU)"
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = apply_overrides(
        train_defaults(),
        {"num_envs": args.num_envs, "device": args.device, "seed": args.seed, "total_env_steps": 10**12,
         "eval_episodes": args.eval_episodes, "log_dir": args.log_dir, "name": "benchmark",
         "env.num_threads": args.num_threads, "env.backend": args.backend, **overrides},
    )  # fmt: skip
    threads = f"MuJoCo threads {args.num_threads}" if args.backend == "cpu" else "mujoco_warp"
    print(f"task {TASK}  device {args.device}  GPU {gpu}  envs {cfg.num_envs}  backend {args.backend} ({threads})  "
          f"batch {cfg.sac.batch_size} x {cfg.updates_per_step} updates/step  walking: vel_error_xy < "
          f"{args.threshold} m/s and fall_rate < {WALK_FALL_RATE}", flush=True)  # fmt: skip
    t_build = time.perf_counter()
    runner = Runner(cfg, quiet=True)
    print(f"env + agent built in {time.perf_counter() - t_build:.1f} s; run dir {runner.run_dir}", flush=True)
    t0 = time.perf_counter()
    eval_s, next_eval, walked, figures = 0.0, args.eval_interval, None, {}
    steps_last, t_last = 0, t0
    while time.perf_counter() - t0 < args.max_minutes * 60.0:
        runner.collect()
        metrics = runner.learn()
        if runner.env_steps < next_eval:
            continue
        next_eval += args.eval_interval
        t_val = time.perf_counter()
        sps = (runner.env_steps - steps_last) / max(t_val - t_last, 1e-9)
        figures = runner.validate() or {}
        eval_s += time.perf_counter() - t_val
        wall = time.perf_counter() - t0
        loss = {k: round(float(v), 3) for k, v in (metrics or {}).items()}
        print(f"{wall / 60:6.2f} min  {runner.env_steps:>11,d} steps  {sps:8.0f} steps/s  "
              f"vel_err {figures['vel_error_xy']:.3f}  yaw_err {figures['yaw_rate_error']:.3f}  "
              f"fall {figures['fall_rate']:.2f}  len {figures['episode_length']:.0f}  {loss}", flush=True)  # fmt: skip
        steps_last, t_last = runner.env_steps, time.perf_counter()
        if is_walking(figures, vel_error=args.threshold):
            walked = wall
            break
    runner.save()
    wall = time.perf_counter() - t0
    result = {"task": TASK, "device": args.device, "backend": args.backend, "gpu": gpu, "num_envs": cfg.num_envs,
              "seed": args.seed, "threshold_m_s": args.threshold, "walked": walked is not None,
              "env_steps": runner.env_steps,
              "wall_s": round(walked if walked is not None else wall, 1),
              "train_wall_s": round((walked if walked is not None else wall) - eval_s, 1),
              "last_validation": figures, "run_dir": str(runner.run_dir)}  # fmt: skip
    if walked is not None:
        print(f"WALKING after {walked / 60:.2f} min wall clock ({result['train_wall_s'] / 60:.2f} min without "
              f"validation), {runner.env_steps:,d} env steps, on {gpu}")  # fmt: skip
    else:
        print(f"not walking after {wall / 60:.2f} min ({runner.env_steps:,d} env steps) on {gpu}")
    if args.out:
        write_text_atomic(Path(args.out), json.dumps(result, indent=2))
    runner.env.close()
    return 0 if walked is not None else 1


if __name__ == "__main__":
    sys.exit(main())
