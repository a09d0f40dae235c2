"""SAC gradient updates per second, ours vs stable-baselines3, at batch 256, 1024 and 4096 (same networks).

Both run the full SAC update (twin critics, actor, temperature, target update) on replay data already in
memory, on this CPU, in one process, with the same torch thread count. Networks: 256x256 MLPs for actor
and each critic (SB3's default), observation 17 / action 6 (HalfCheetah's sizes). Ours: fused twin
critics (one batched matmul per layer), one backward pass per update, a flat-buffer Adam. stable-baselines3:
`SAC.train(gradient_steps=n, batch_size=b)` on a filled replay buffer. "ours bf16" is the same update with the
hidden layers' matmuls in bfloat16 (``SACConfig.bf16``: output layers, losses and Adam stay float32); it pays
off on CPUs with AVX512-BF16 or AMX and on GPUs.

    python benchmarks/sac_throughput.py [--seconds 5] [--batches 256 1024 4096] [--hidden 256 256]

Writes ``benchmarks/results/sac_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sim2real.core.files import write_text_atomic
from sim2real.policies.sac import SAC, SACConfig

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT = 17, 6


def _timed(step, seconds: float, warmup: int = 5) -> tuple[float, int]:
    """Calls of ``step()`` per second over about ``seconds`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step()
        n += 1
    return n / (time.perf_counter() - t0), n


def ours(batch: int, hidden: tuple[int, ...], seconds: float, bf16: bool = False) -> float:
    cfg = SACConfig(actor_hidden=hidden, critic_hidden=hidden, batch_size=batch, normalize_obs=False, bf16=bf16)
    agent = SAC({"policy": OBS, "critic": OBS}, ACT, cfg)
    g = torch.Generator().manual_seed(0)
    obs, nxt = torch.randn(batch, OBS, generator=g), torch.randn(batch, OBS, generator=g)
    data = {"obs_actor": obs, "obs_critic": obs, "action": torch.rand(batch, ACT, generator=g) * 2 - 1,
            "reward": torch.randn(batch, generator=g), "next_obs_actor": nxt, "next_obs_critic": nxt,
            "terminated": torch.zeros(batch)}  # fmt: skip
    rate, _ = _timed(lambda: agent.update(data), seconds)
    return rate


def sb3(batch: int, hidden: tuple[int, ...], seconds: float) -> float:
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure

    class Spaces(gym.Env):  # only the spaces matter: the updates read the replay buffer
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(OBS, np.float32), {}

        def step(self, action):
            return np.zeros(OBS, np.float32), 0.0, False, False, {}

    model = SB3SAC("MlpPolicy", Spaces(), buffer_size=2 * batch + 16, learning_starts=0, device="cpu", verbose=0,
                   policy_kwargs={"net_arch": list(hidden)}, seed=0)  # fmt: skip
    rng = np.random.default_rng(0)
    for _ in range(2 * batch):
        obs, nxt = rng.standard_normal((2, 1, OBS), dtype=np.float32)
        model.replay_buffer.add(obs, nxt, rng.uniform(-1, 1, (1, ACT)).astype(np.float32), rng.standard_normal(1),
                                np.zeros(1), [{}])  # fmt: skip
    model.set_logger(configure(None, []))
    chunk = 10
    rate, _ = _timed(lambda: model.train(gradient_steps=chunk, batch_size=batch), seconds, warmup=1)
    return rate * chunk


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement (default 5)")
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer widths (default 256 256)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sac_throughput.json"))
    args = p.parse_args()
    hidden = tuple(args.hidden)
    rows = []
    for b in args.batches:
        r = {"batch": b, "ours_updates_per_s": round(ours(b, hidden, args.seconds), 1),
             "ours_bf16_updates_per_s": round(ours(b, hidden, args.seconds, bf16=True), 1),
             "sb3_updates_per_s": round(sb3(b, hidden, args.seconds), 1)}  # fmt: skip
        r["ratio"] = round(r["ours_updates_per_s"] / r["sb3_updates_per_s"], 2)
        r["ratio_bf16"] = round(r["ours_bf16_updates_per_s"] / r["sb3_updates_per_s"], 2)
        r["ours_samples_per_s"] = round(r["ours_updates_per_s"] * b)
        rows.append(r)
        print(f"batch {b} done", file=sys.stderr)
    print(f"\nSAC updates/s, {OBS}->{'x'.join(map(str, hidden))}->{ACT} networks, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.machine()}")
    print(f"{'batch':>6s} {'ours':>10s} {'ours bf16':>10s} {'SB3':>10s} {'ours/SB3':>9s} {'bf16/SB3':>9s} "
          f"{'ours samples/s':>15s}")
    for r in rows:
        print(f"{r['batch']:6d} {r['ours_updates_per_s']:10.1f} {r['ours_bf16_updates_per_s']:10.1f} "
              f"{r['sb3_updates_per_s']:10.1f} {r['ratio']:8.2f}x {r['ratio_bf16']:8.2f}x {r['ours_samples_per_s']:15,d}")
    out = {"hidden": hidden, "obs_dim": OBS, "act_dim": ACT, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "rows": rows}  # fmt: skip
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
