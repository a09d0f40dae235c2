"""Where the wall clock of a ``quadrotor-hover`` training run goes: one run under cProfile, grouped.

Trains the task's defaults for ``--steps`` env steps (default 60,000: ~1/10 of a default run) and prints each part's
share of the run: the SAC updates (split into the loss forward passes, autograd's backward, the optimiser steps and
the rest of the update), the replay sampling, acting, and the simulator. cProfile adds its own overhead to every
Python call (~20 % here), so the shares, not the absolute times, are the figures to read; the plain wall clock of
the same run is printed beside them.

    python benchmarks/profile_quadrotor.py [--steps 60000] [--threads 2]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import torch

from sim2real.core.config import apply_overrides
from sim2real.policies.runner import Runner
from sim2real.tasks.quadrotor_hover import train_defaults

#: (part, how to find it in the profile: file suffix and function name, cumulative time)
PARTS = (
    ("SAC update, total", "policies/sac.py", "update"),
    ("  losses (forward passes)", "policies/sac.py", "_losses"),
    ("  backward (autograd)", "~", "<method 'run_backward' of 'torch._C._EngineBase' objects>"),
    ("  optimiser steps", "policies/optim.py", "_step"),
    ("replay sampling", "policies/replay.py", "sample"),
    ("acting (SAC.act)", "policies/sac.py", "act"),
    ("simulator (env.step)", "tasks/quadrotor_hover/env.py", "step"),
)


def run(steps: int, threads: int, profile: bool) -> tuple[float, pstats.Stats | None]:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = apply_overrides(train_defaults(), {"total_env_steps": steps, "log_dir": tmp, "eval_interval": 0})
        runner = Runner(cfg, quiet=True)
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        runner.train()
        if prof:
            prof.disable()
        return time.perf_counter() - t0, pstats.Stats(prof) if prof else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the run's default here)")
    args = p.parse_args()
    wall, _ = run(args.steps, args.threads, profile=False)
    prof_wall, stats = run(args.steps, args.threads, profile=True)
    assert stats is not None
    table = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    print(f"quadrotor-hover, {args.steps} env steps, {args.threads} torch threads: {wall:.1f} s plain, "
          f"{prof_wall:.1f} s under cProfile\n")
    print(f"{'part':<28}{'calls':>9}{'time (profiled)':>17}{'share of the run':>18}")
    for label, where, name in PARTS:
        hits = [(v[1], v[3]) for (f, _, n), v in table.items() if n == name and f.endswith(where)]
        calls, cum = sum(h[0] for h in hits), sum(h[1] for h in hits)
        print(f"{label:<28}{calls:>9}{cum:>15.2f} s{cum / prof_wall:>17.1%}")


if __name__ == "__main__":
    main()
