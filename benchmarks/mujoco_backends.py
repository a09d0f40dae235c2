"""Env steps/s of the MuJoCo backends: CPU MuJoCo in worker threads vs mujoco_warp (every device present).

For each task and batch size ``N``: ``backend="cpu"`` (``--threads`` worker threads), ``backend="warp"`` on Warp's
CPU device (the LLVM-compiled kernels the tests use; one core) and, when torch sees a GPU, ``backend="warp"`` on
CUDA (``frame_skip`` substeps captured in a CUDA graph). Random in-range actions (drawn on the env's device
before timing), auto-resets included, after 3 warm-up steps (kernel compilation is not timed); CUDA timings end
with ``torch.cuda.synchronize()``. Warp-on-CPU is skipped above ``--warp-cpu-max`` envs (one core, slower than
CPU MuJoCo; it exists to test the code path).

Measured (2-core x86_64 shared with a training job, no GPU; env steps/s; warp cpu = one core):

=================== ===== ========= ========
task                N     cpu 2 thr warp cpu
=================== ===== ========= ========
mujoco-halfcheetah  64    25,936    10,028
mujoco-halfcheetah  1024  26,295    9,789
mujoco-ant          64    4,518     1,614
mujoco-ant          1024  4,173     1,365
=================== ===== ========= ========

    python benchmarks/mujoco_backends.py [--tasks mujoco-halfcheetah mujoco-ant] [--envs 64 1024] [--seconds 2]

Default ``--envs``: 64 1024, plus 4096 with CUDA. Writes ``benchmarks/results/mujoco_backends.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch

from sim2real.core.files import write_text_atomic
from sim2real.sim.registry import make

ROOT = Path(__file__).resolve().parents[1]


def have_warp() -> bool:
    try:
        import mujoco_warp  # noqa: F401
    except ImportError:
        return False
    return True


def steps_per_s(task: str, n: int, seconds: float, **kw) -> tuple[float, int]:
    """``(env steps/s, timed control steps)`` of ``make(task, num_envs=n, **kw)``."""
    env = make(task, num_envs=n, **kw)
    env.reset(seed=0)
    dev = env.device
    gen = torch.Generator(device=dev).manual_seed(0)
    actions = torch.rand(8, n, env.spec.action_dim, generator=gen, device=dev) * 2 - 1

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for k in range(3):
        env.step(actions[k])
    sync()
    t0, k = time.perf_counter(), 0
    while True:
        env.step(actions[k % 8])
        k += 1
        if k % 4 == 0:
            sync()
            if time.perf_counter() - t0 >= seconds:
                break
    rate = n * k / (time.perf_counter() - t0)
    env.close()
    return rate, k


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["mujoco-halfcheetah", "mujoco-ant"])
    p.add_argument("--envs", type=int, nargs="+", default=None, help="batch sizes (default 64 1024 [4096 on CUDA])")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement (default 2)")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 16), help="CPU backend worker threads")
    p.add_argument("--warp-cpu-max", type=int, default=1024, help="largest N run on Warp's CPU device")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mujoco_backends.json"))
    args = p.parse_args()
    warnings.simplefilter("ignore")  # Gymnasium's deprecated 'settotalmass' compiler attribute
    cuda = torch.cuda.is_available()
    envs = args.envs or ([64, 1024, 4096] if cuda else [64, 1024])
    backends = {f"cpu {args.threads} thr": dict(backend="cpu", num_threads=args.threads)}
    if have_warp():
        backends["warp cpu"] = dict(backend="warp", device="cpu")
        if cuda:
            backends["warp cuda"] = dict(backend="warp", device="cuda")
    else:
        print("mujoco_warp not installed (pip install 'sim2real[warp]'): CPU backend only")
    gpu = torch.cuda.get_device_name() if cuda else "none"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs ({platform.machine()}), GPU: {gpu}")
    rows = []
    names = list(backends)
    print(f"{'task':<20}{'N':>6}" + "".join(f"{b:>16}" for b in names) + "   (env steps/s)")
    for task in args.tasks:
        for n in envs:
            row: dict = {"task": task, "num_envs": n}
            cells = []
            for name, kw in backends.items():
                if name == "warp cpu" and n > args.warp_cpu_max:
                    cells.append(f"{'-':>16}")
                    continue
                rate, k = steps_per_s(task, n, args.seconds, **kw)
                row[name] = round(rate)
                cells.append(f"{rate:>16,.0f}")
            rows.append(row)
            print(f"{task:<20}{n:>6}" + "".join(cells), flush=True)
    out = {"torch": torch.__version__, "cpus": os.cpu_count(), "gpu": gpu, "threads": args.threads, "rows": rows}
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
