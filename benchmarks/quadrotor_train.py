"""Quadrotor-hover training benchmark on this machine: ours vs stable-baselines3 SAC vs the RLtools package.

``python benchmarks/quadrotor_train.py [--seeds 0 1 2] [--quick] [--out benchmarks/results/quadrotor_train.json]``
prints one rich table (with ratios) and writes the JSON. Measured in one run:

a. **ours**: per seed, ``Runner(quadrotor_hover_defaults())``; every ``--eval-interval`` env steps the deterministic
   actor is evaluated (``evaluate_hover``, nominal starts, ``--eval-episodes``) and the *training* wall clock (eval
   time excluded) at which ``passes()`` first holds is recorded; final nominal/hard figures of the exported
   ``policy.onnx`` (the run's best validated checkpoint) through onnxruntime, as ``sim2real eval`` computes them.
b. **throughput**: hover env steps/s at 1/64/1024/4096 envs (eager; ``compile=True`` at 1024/4096, compile time
   reported apart), SAC gradient updates/s at batch 256 (ours on a random batch vs SB3's ``train()`` on a filled
   replay buffer, both 64x64 nets; SB3's figure includes its replay sampling, ours does not).
c. **SB3 SAC** through :class:`~sim2real.sim.gym_wrappers.ToGymnasiumEnv` (1 env; SB3 defaults except
   ``net_arch=[64, 64]``, ``learning_starts=10k``), env-step budget ``--sb3-steps`` (default: ours) and wall-clock
   cap ``--sb3-time-cap``, evaluated like ours. The reward curriculum is advanced by a callback; SB3 cannot
   re-weight stored rewards (ours recomputes them from the stored reward terms).
d. **RLtools** (``rltools`` package): its SAC on its own L2F quadrotor (default L2F parameters, 1 env), JIT-built
   with the system compiler in a child process; build time, wall clock, env steps/s and its own evaluation
   returns (parsed from its log; L2F reward, not comparable with ours). A failed build is reported, not raised.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim2real.core.files import write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.export.onnx import export_onnx
from sim2real.policies.runner import Runner, make_env
from sim2real.policies.sac import SAC, SACConfig
from sim2real.sim.gym_wrappers import ToGymnasiumEnv
from sim2real.tasks.quadrotor_hover import train_defaults as quadrotor_hover_defaults
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv
from sim2real.tasks.quadrotor_hover.evaluation import evaluate_hover, passes

EVAL_SEED = 10_000
L2F_ENV_HEADER = """#include <rl_tools/rl/environments/l2f/operations_cpu.h>
#include <rl_tools/rl/environments/l2f/parameters/default.h>
namespace sim2real_l2f = rl_tools::rl::environments::l2f;
template <typename T, typename TI>
using ENVIRONMENT_FACTORY = rl_tools::rl::environments::Multirotor<sim2real_l2f::Specification<T, TI>>;
"""
L2F_OBS_DIM = 18 + 16 * 4  # default L2F observation: pos, R, v, omega, 16 x 4 action history


def _figures(m: dict[str, float]) -> dict[str, float]:
    return {k: m[k] for k in ("left_box_fraction", "pos_error_last2s_m", "settled_fraction")}


class _EvalClock:
    """Training wall clock with evaluation time excluded, plus the first time the criterion holds."""

    def __init__(self, episodes: int) -> None:
        self.episodes, self.t0, self.eval_s = episodes, time.perf_counter(), 0.0
        self.curve: list[dict[str, float]] = []
        self.time_to_criterion: float | None = None
        self.steps_to_criterion: int | None = None

    def train_time(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_s

    def evaluate(self, policy: Any, env_steps: int) -> None:
        t_train, t = self.train_time(), time.perf_counter()
        m = evaluate_hover(policy, self.episodes, EVAL_SEED, starts=("nominal",))[0]["nominal"]
        ok = passes(m)
        self.curve.append({"env_steps": env_steps, "train_time_s": round(t_train, 2), **_figures(m), "passed": ok})
        if ok and self.time_to_criterion is None:
            self.time_to_criterion, self.steps_to_criterion = round(t_train, 2), env_steps
        self.eval_s += time.perf_counter() - t


def _final(policy: Any, episodes: int) -> dict[str, dict[str, float]]:
    res = evaluate_hover(policy, episodes, EVAL_SEED, starts=("nominal", "hard"))[0]
    return {s: {**_figures(res[s]), "passed": passes(res[s])} for s in ("nominal", "hard")}


# ----------------------------------------------------------------------------------------------- a. ours
def bench_ours(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    base = quadrotor_hover_defaults()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(base, seed=seed, log_dir=tmp, log_interval=args.eval_interval, checkpoint_interval=10**12,
                      total_env_steps=args.ours_steps or base.total_env_steps)  # fmt: skip
        runner = Runner(cfg, quiet=True)
        agent = runner.agent

        def policy(o: torch.Tensor) -> torch.Tensor:
            return agent.act({cfg.sac.actor_obs: o}, deterministic=True)

        clock = _EvalClock(args.eval_episodes)
        summary = runner.train(callback=lambda r: clock.evaluate(policy, r.env_steps))
        train_s = clock.train_time()
        # Final figures of what a user deploys: the run's exported policy (best validated checkpoint) in onnxruntime.
        exported = OnnxPolicy(export_onnx(runner.run_dir))
        final = _final(exported, args.eval_episodes)
        final["exported_checkpoint"] = exported.metadata.checkpoint_file
        final["exported_env_steps"] = exported.metadata.env_steps
    n = summary["env_steps"]
    return {"seed": seed, "num_envs": cfg.num_envs, "env_steps": n, "train_time_s": round(train_s, 2),
            "env_steps_per_s": round(n / train_s, 1), "updates": summary["updates"],
            "time_to_criterion_s": clock.time_to_criterion, "steps_to_criterion": clock.steps_to_criterion,
            "final": final, "curve": clock.curve}  # fmt: skip


# ----------------------------------------------------------------------------------------------- b. throughput
def env_steps_per_s(num_envs: int, compile: bool, seconds: float) -> dict[str, float]:
    t = time.perf_counter()
    env = QuadrotorHoverEnv(HoverConfig(num_envs=num_envs, compile=compile))
    a = torch.zeros(num_envs, 4)
    for _ in range(3):  # warm-up (and the compilation)
        env.step(a)
    setup_s, k, t = time.perf_counter() - t, 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        env.step(a)
        k += 1
    return {"env_steps_per_s": round(k * num_envs / (time.perf_counter() - t), 1), "setup_s": round(setup_s, 2)}


def ours_updates_per_s(n: int) -> float:
    agent = SAC({"policy": 146, "critic": 38}, 4, SACConfig(batch_size=256))
    b = 256
    batch = {"obs_actor": torch.randn(b, 146), "obs_critic": torch.randn(b, 38), "action": torch.rand(b, 4) * 2 - 1,
             "reward": torch.randn(b), "next_obs_actor": torch.randn(b, 146), "next_obs_critic": torch.randn(b, 38),
             "terminated": torch.zeros(b)}  # fmt: skip
    for _ in range(5):
        agent.update(batch)
    t = time.perf_counter()
    for _ in range(n):
        agent.update(batch)
    return round(n / (time.perf_counter() - t), 1)


def _sb3_model(env: Any, seed: int, learning_starts: int, buffer_size: int = 1_000_000) -> Any:
    from stable_baselines3 import SAC as SB3SAC

    return SB3SAC("MlpPolicy", env, learning_starts=learning_starts, buffer_size=buffer_size, seed=seed,
                  policy_kwargs={"net_arch": [64, 64]}, device="cpu", verbose=0)  # fmt: skip


def sb3_updates_per_s(n: int) -> float:
    import numpy as np
    from stable_baselines3.common.logger import configure

    model = _sb3_model(ToGymnasiumEnv(QuadrotorHoverEnv(HoverConfig(num_envs=1))), 0, 0, buffer_size=4096)
    rng = np.random.default_rng(0)
    for _ in range(2048):
        obs, nxt = rng.standard_normal((2, 1, 146), dtype=np.float32)
        act = rng.uniform(-1, 1, (1, 4)).astype(np.float32)
        model.replay_buffer.add(obs, nxt, act, rng.standard_normal(1), np.zeros(1), [{}])
    model.set_logger(configure(None, []))
    model.train(gradient_steps=5, batch_size=256)
    t = time.perf_counter()
    model.train(gradient_steps=n, batch_size=256)
    return round(n / (time.perf_counter() - t), 1)


# ----------------------------------------------------------------------------------------------- c. SB3 on the task
def bench_sb3(seed: int, steps: int, args: argparse.Namespace) -> dict[str, Any]:
    from stable_baselines3.common.callbacks import BaseCallback

    cfg = replace(quadrotor_hover_defaults(), num_envs=1, seed=seed)
    env = ToGymnasiumEnv(make_env(cfg))
    hover = env.vec_env
    learning_starts = min(10_000, steps // 3)
    torch.manual_seed(seed)
    model = _sb3_model(env, seed, learning_starts)

    def policy(o: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(model.predict(o.cpu().numpy(), deterministic=True)[0], dtype=torch.float32)

    clock = _EvalClock(args.eval_episodes)
    interval = hover.cfg.reward.interval

    class Hooks(BaseCallback):
        def _on_step(self) -> bool:
            n = self.num_timesteps
            if n % interval == 0:  # reward curriculum stage (stored rewards keep their old weights)
                hover.set_env_steps(n)
            if n % args.eval_interval == 0 or n == steps:
                clock.evaluate(policy, n)
            return args.sb3_time_cap is None or clock.train_time() < args.sb3_time_cap

    clock.t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Hooks())
    train_s, n = clock.train_time(), model.num_timesteps
    return {"seed": seed, "env_steps": n, "train_time_s": round(train_s, 2), "env_steps_per_s": round(n / train_s, 1),
            "capped": n < steps, "learning_starts": learning_starts, "time_to_criterion_s": clock.time_to_criterion,
            "steps_to_criterion": clock.steps_to_criterion, "final": _final(policy, args.eval_episodes),
            "curve": clock.curve}  # fmt: skip


# ----------------------------------------------------------------------------------------------- d. RLtools
def rltools_child(steps: int, eval_interval: int, time_cap: float, seed: int) -> None:
    """Runs in a child process (its C++ log goes to stdout); the last line is ``RLTOOLS_RESULT {json}``."""
    import rltools

    env_dir = Path(rltools.CACHE_PATH) / "sim2real_l2f_env"
    env_dir.mkdir(parents=True, exist_ok=True)
    header = env_dir / "environment.h"
    if not header.exists() or header.read_text() != L2F_ENV_HEADER:
        header.write_text(L2F_ENV_HEADER)
    t = time.perf_counter()
    spec = {"path": str(env_dir), "action_dim": 4, "observation_dim": L2F_OBS_DIM}
    sac = rltools.SAC(spec, interface_name=f"sim2real_l2f_{steps}_{eval_interval}", STEP_LIMIT=steps,
                      evaluation_interval=eval_interval, num_evaluation_episodes=10)  # fmt: skip
    build_s = time.perf_counter() - t
    cmd = Path(rltools.CACHE_PATH) / "build" / f"rltools_sac_sim2real_l2f_{steps}_{eval_interval}" / "cmd.txt"
    text = cmd.read_text() if cmd.exists() else ""
    backend = "MKL" if "mkl" in text.lower() else "BLAS" if "-lblas" in text else "generic (no BLAS/MKL found)"
    state = sac.State(seed)
    n, t = 0, time.perf_counter()
    while not state.step():
        n += 1
        if n % 1000 == 0 and time.perf_counter() - t > time_cap:
            break
    train_s = time.perf_counter() - t
    sys.stdout.flush()
    res = {"build_s": round(build_s, 2), "env_steps": n, "train_time_s": round(train_s, 2),
           "env_steps_per_s": round(n / train_s, 1), "capped": n < steps - 1, "backend": backend}  # fmt: skip
    print("RLTOOLS_RESULT " + json.dumps(res), flush=True)


def _finite_or_str(x: str) -> float | str:
    """A float from the RLtools log, kept as text when not finite (``-inf`` when an episode diverged)."""
    v = float(x)
    return v if math.isfinite(v) else x


def bench_rltools(steps: int, eval_interval: int, time_cap: float, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--rltools-child", str(steps), str(eval_interval), str(time_cap), str(seed)]
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=time_cap + 900, env={"RL_TOOLS_DISABLE_MKL": "1", **os.environ}
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {time_cap + 900:.0f} s"}
    out = p.stdout + p.stderr
    m = re.search(r"RLTOOLS_RESULT (\{.*\})", out)
    if p.returncode != 0 or m is None:
        tail = [ln for ln in out.strip().splitlines() if ln.strip()][-3:]
        return {"error": f"exit {p.returncode}: " + " | ".join(tail)[-300:]}
    evals = [
        {"step": int(s), "mean_return": _finite_or_str(r), "mean_episode_length": _finite_or_str(ln)}
        for s, r, ln in re.findall(r"Step: (\d+)/\d+ Mean return: (\S+) Mean episode length: (\S+)", out)
    ]
    return {**json.loads(m.group(1)), "evaluations": evals}  # fmt: skip


# ----------------------------------------------------------------------------------------------- report
def _fmt(x: float | str | None, unit: str = "", nd: int = 1) -> str:
    return "—" if x is None else str(x) if isinstance(x, str) else f"{x:,.{nd}f}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"×{a / b:,.2f}"


def _quality(f: dict[str, Any]) -> str:
    return f"left box {f['left_box_fraction']:.1%}, err {f['pos_error_last2s_m']:.3f} m"


def render(res: dict[str, Any]) -> Any:
    """One rich table of the results (ratios: ours relative to the other system or setting)."""
    from rich.table import Table

    mach = res["machine"]
    title = f"quadrotor-hover training ({mach['cpus']} CPUs, {mach['torch_threads']} torch threads)"
    tab = Table(title=title + (" — QUICK smoke run" if res["quick"] else ""))
    for col in ("system", "measurement", "value", "ratio", "note"):
        tab.add_column(col, overflow="fold")
    ours, thr, rlt = res["ours"], res["throughput"], res["rltools"]
    ttc = [r["time_to_criterion_s"] for r in ours if r["time_to_criterion_s"] is not None]
    span = f"{_fmt(statistics.median(ttc), ' s')} [{_fmt(min(ttc))}, {_fmt(max(ttc))}]" if ttc else "not reached"
    every = f"{len(ttc)}/{len(ours)} seeds passed; eval every {res['config']['eval_interval']:,} steps"
    tab.add_row("ours", "time to criterion, median [min, max]", span, "", every)
    for r in ours:
        what = f"{r['num_envs']} envs, seed {r['seed']}: {r['env_steps']:,} steps in {r['train_time_s']} s"
        note = f"nominal {_quality(r['final']['nominal'])}; hard {_quality(r['final']['hard'])}"
        tab.add_row("ours", what, f"{r['env_steps_per_s']:,.0f} env steps/s", "", note)
    env = thr["env"]
    for key, v in env.items():
        mode, n = key.split("_")
        ref, vs = (env[f"eager_{n}"], " vs eager") if mode == "compiled" else (env["eager_1"], " vs 1 env")
        note = f"setup incl. compile {v['setup_s']} s" if mode == "compiled" else ""
        ratio = _ratio(v["env_steps_per_s"], ref["env_steps_per_s"]) + vs
        tab.add_row("hover env", f"{n} envs, {mode}", f"{v['env_steps_per_s']:,.0f} steps/s", ratio, note)
    ups, sb3_ups = thr["ours_updates_per_s"], thr["sb3_updates_per_s"]
    tab.add_row("SAC update", "ours, batch 256, 64x64", f"{ups:,.0f} /s", _ratio(ups, sb3_ups) + " vs SB3", "")
    tab.add_row("SAC update", "SB3 train(), batch 256, 64x64", f"{sb3_ups:,.0f} /s", "", "incl. replay sampling")
    ours_sps = statistics.median(r["env_steps_per_s"] for r in ours)
    for r in res["sb3"]:
        what = f"1 env, seed {r['seed']}: {r['env_steps']:,} steps in {r['train_time_s']} s" + " (capped)" * r["capped"]
        note = f"criterion at {_fmt(r['time_to_criterion_s'], ' s')}"
        if r["time_to_criterion_s"] and ttc:
            note += f" ({_ratio(r['time_to_criterion_s'], statistics.median(ttc))} ours' median)"
        note += f"; nominal {_quality(r['final']['nominal'])}"
        ratio = _ratio(ours_sps, r["env_steps_per_s"]) + " ours/SB3"
        tab.add_row("SB3 SAC", what, f"{r['env_steps_per_s']:,.0f} env steps/s", ratio, note)
    if "error" in rlt:
        tab.add_row("RLtools SAC", "L2F (its own env)", "failed", "", rlt["error"])
    else:
        what = f"L2F, 1 env: {rlt['env_steps']:,} steps in {rlt['train_time_s']} s" + (" (capped)" * rlt["capped"])
        note = f"backend {rlt['backend']}; build {rlt['build_s']} s"
        if rlt["evaluations"]:
            last = rlt["evaluations"][-1]
            note += f"; own eval at {last['step']:,}: return {_fmt(last['mean_return'])}, "
            note += f"length {_fmt(last['mean_episode_length'], nd=0)}"
        ratio = _ratio(ours_sps, rlt["env_steps_per_s"]) + " ours/RLtools"
        tab.add_row("RLtools SAC", what, f"{rlt['env_steps_per_s']:,.0f} env steps/s", ratio, note)
    return tab


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="tiny budgets, one seed (~3 min): a smoke run")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/quadrotor_train.json)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    p.add_argument("--ours-steps", type=int, default=None, help="env steps per seed (default: the tuned config)")
    p.add_argument("--eval-interval", type=int, default=50_000)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--sb3-steps", type=int, default=None, help="SB3 env-step budget (default: same as ours)")
    p.add_argument("--sb3-time-cap", type=float, default=400.0, help="SB3 training wall-clock cap [s] (0: none)")
    p.add_argument("--sb3-seeds", type=int, default=1, help="how many of --seeds SB3 also runs")
    p.add_argument("--rltools-steps", type=int, default=300_000)
    p.add_argument("--rltools-time-cap", type=float, default=900.0, help="RLtools training wall-clock cap [s]")
    p.add_argument("--rltools-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rltools_child:
        s, e, cap, seed = args.rltools_child
        rltools_child(int(s), int(e), float(cap), int(seed))
        return {}
    if args.quick:
        args.seeds, args.ours_steps, args.eval_interval, args.eval_episodes = args.seeds[:1], 30_000, 15_000, 50
        args.sb3_steps, args.sb3_time_cap, args.rltools_steps, args.rltools_time_cap = 2_000, 30.0, 2_000, 20.0
    args.sb3_time_cap = args.sb3_time_cap or None
    out = args.out or Path(f"benchmarks/results/quadrotor_train{'_quick' if args.quick else ''}.json")
    torch.set_num_threads(args.threads)
    from rich.console import Console

    con = Console(width=None if sys.stdout.isatty() else 170)
    res: dict[str, Any] = {
        "quick": args.quick, "config": {k: v for k, v in vars(args).items() if k not in ("out", "rltools_child")},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "platform": platform.platform(), "processor": platform.processor()},
    }  # fmt: skip
    with con.status("throughput ...") as st:
        # Throughput first, in a fresh process: after long training runs the same measurement reads lower.
        n_upd, secs = (200, 0.5) if args.quick else (2000, 3.0)
        thr = {"ours_updates_per_s": ours_updates_per_s(n_upd), "sb3_updates_per_s": sb3_updates_per_s(n_upd)}
        thr["env"] = {f"eager_{n}": env_steps_per_s(n, False, secs) for n in (1, 64, 1024, 4096)}
        res["throughput"] = thr
        res["ours"] = []
        for seed in args.seeds:
            st.update(f"ours: seed {seed}")
            res["ours"].append(bench_ours(seed, args))
        res["sb3"] = []
        sb3_steps = args.sb3_steps or res["ours"][0]["env_steps"]
        for seed in args.seeds[: args.sb3_seeds]:
            st.update(f"SB3 SAC: seed {seed}, {sb3_steps:,} steps (cap {args.sb3_time_cap} s)")
            res["sb3"].append(bench_sb3(seed, sb3_steps, args))
        st.update("RLtools: build + train ...")
        rl_eval = max(1_000, min(args.eval_interval, args.rltools_steps // 3))
        res["rltools"] = bench_rltools(args.rltools_steps, rl_eval, args.rltools_time_cap, args.seeds[0])
        st.update("compiled hover env ...")  # last: TorchInductor's worker threads must not disturb the rest
        thr["env"].update({f"compiled_{n}": env_steps_per_s(n, True, secs) for n in (1024, 4096)})
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(res, indent=2, default=str))
    con.print(render(res))
    con.print(f"results written to {out}")
    return res


if __name__ == "__main__":
    main()
