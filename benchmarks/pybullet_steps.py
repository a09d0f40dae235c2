"""Env steps per second in PyBullet against each task's own engine, one torch thread.

* ``quadrotor-hover``: torch vs PyBullet (one client in-process, or worker processes), hover actions;
* ``mujoco-halfcheetah``: MuJoCo (one thread) vs PyBullet integrating the same robot, random actions.

Run: python benchmarks/pybullet_steps.py [--envs 1 16 64] [--steps 300]
"""

from __future__ import annotations

import argparse
import time

import torch

from sim2real.sim.pybullet_quadrotor import PyBulletConfig
from sim2real.sim.registry import make
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv


def steps_per_s(cfg: HoverConfig, steps: int) -> float:
    env = QuadrotorHoverEnv(cfg)
    action = torch.full((cfg.num_envs, 4), env.hover_action)
    try:
        env.step(action)  # workers started, first call done
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(action)
        return cfg.num_envs * steps / (time.perf_counter() - t0)
    finally:
        env.close()


def cheetah_steps_per_s(engine: str, n: int, steps: int) -> float:
    env = make("mujoco-halfcheetah", num_envs=n, num_threads=1, engine=engine)
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(n, 6, generator=gen) * 2 - 1 for _ in range(steps)]
    try:
        env.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return n * steps / (time.perf_counter() - t0)
    finally:
        env.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"quadrotor-hover\n{'envs':>5} {'torch':>10} {'pybullet':>10} {'pybullet, 2 workers':>20} {'torch / pybullet':>17}")
    for n in args.envs:
        base = HoverConfig(num_envs=n)
        t = steps_per_s(base, args.steps)
        pb = steps_per_s(HoverConfig(num_envs=n, engine="pybullet"), args.steps)
        pb2 = steps_per_s(HoverConfig(num_envs=n, engine="pybullet", pybullet=PyBulletConfig(workers=2)), args.steps)
        print(f"{n:>5} {t:>10,.0f} {pb:>10,.0f} {pb2:>20,.0f} {t / max(pb, pb2):>17.1f}")
    print(f"\nmujoco-halfcheetah\n{'envs':>5} {'mujoco':>10} {'pybullet':>10} {'mujoco / pybullet':>18}")
    for n in args.envs:
        mj, pb = cheetah_steps_per_s("mujoco", n, args.steps), cheetah_steps_per_s("pybullet", n, args.steps)
        print(f"{n:>5} {mj:>10,.0f} {pb:>10,.0f} {mj / pb:>18.1f}")


if __name__ == "__main__":
    main()
