"""Finetuning on a shifted quadrotor with at most 60 s of real flight: ours against the classical baselines.

The "real" robot is the hover task's simulator with physics outside the training randomisation
(``config/shifts/*.yaml``, :class:`~sim2real.tasks.quadrotor_hover.flight.SimulatedRobot`), flown from hover
through set-point changes. Every method starts from the pretrained policy of ``tests/data`` (``quadrotor_hover.pt``
and the ONNX exported from it) and may use ``--max-real-s`` seconds of flight on the robot:

* ``none``: the pretrained policy as it is;
* ``sysid``: system identification only: fly the pretrained policy, fit the world model's physics, then SAC in the
  simulator with the fitted physics (warm-started from the pretrained agent, ``--sysid-steps`` env steps, the best
  policy validated in the fitted simulator kept, the pretrained one included);
* ``real_sac``: SAC directly on the robot, with its usual stochastic exploration (warm-started from the pretrained
  agent, one update per step); its safety-limit violations on the robot are counted;
* ``mbpo``: the same loop with a purely learned world model (an ensemble on the odometry increments, no physics
  prior: ``world_model.physics=false``), as MBPO-style model-based RL learns it;
* ``ours``: :mod:`sim2real.policies.finetune` (deterministic flights, world model, SAC in imagination, gate);
* ``oracle_sim``: the ``sysid`` recipe with the *true* shifted physics, ``--oracle-steps`` env steps and no real
  flight (trained from scratch on the shifted physics, the hover recipe flies worse than the pretrained policy, so
  it starts from the pretrained agent too);
* ``oracle_loop``: our loop whose model is the true shifted physics, exactly (no fit): what ours would reach with
  a perfect world model.

Each final policy is evaluated like ``sim2real eval`` on the shifted physics (200 nominal starts, mean error over
the last 2 s of every episode, one that left the box counting as the box's half-width). Gap closed =
(none - method) / (none - oracle), per seed, with the better of the two oracles (no gap when neither beats none).
Prints a table, writes ``benchmarks/results/finetune.json`` and ``docs/figures/finetune.png`` (real-data seconds vs
error).

    python benchmarks/finetune.py [--shifts heavy_weak all] [--seeds 0 1 2] [--max-real-s 60]
        [--methods none sysid real_sac mbpo ours oracle_sim oracle_loop] [--baseline-seeds 0]
    python benchmarks/finetune.py --combine a.json b.json   # one table and plot from per-shift runs
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from sim2real.core.config import config_to_dict
from sim2real.core.files import save_figure_atomic, write_text_atomic
from sim2real.core.policy_file import OnnxPolicy
from sim2real.export.onnx import export_onnx
from sim2real.policies.finetune import FinetuneConfig, Finetuner, load_pretrained
from sim2real.policies.replay import ReplayBuffer
from sim2real.policies.runner import Runner
from sim2real.policies.sac import SAC
from sim2real.policies.world_model import FitReport, QuadrotorWorldModel, WorldModelConfig, fit
from sim2real.sim.quadrotor import MODELS
from sim2real.sim.safety import SafetyLimits
from sim2real.tasks.quadrotor_hover.env import HoverConfig, Shift
from sim2real.tasks.quadrotor_hover.evaluation import VALIDATION_SEED, hover_metrics, rollout_hover
from sim2real.tasks.quadrotor_hover.flight import SimulatedRobot

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "tests" / "data" / "quadrotor_hover.pt"
POLICY = REPO / "tests" / "data" / "quadrotor_hover.onnx"


def evaluate(policy: Any, shift: Shift, episodes: int = 200, seed: int = 0) -> dict[str, float]:
    m = hover_metrics(rollout_hover(policy, "nominal", episodes, seed, HoverConfig(shift=shift)))
    return {"error_m": m["pos_error_all_last2s_m"], "left_box": m["left_box_fraction"],
            "error_inside_m": m["pos_error_last2s_m"]}  # fmt: skip


class _KnownPhysics(Finetuner):
    """Our loop whose model is the true shifted physics, exactly (no fit, no residual): the oracle of our loop."""

    def __init__(self, shift: Shift, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.truth = QuadrotorWorldModel(self.imagination.nominal)
        weight = self.truth.weight_n
        self.truth.set_physics(shift.factors(), tuple(w * weight for w in shift.wind))  # type: ignore[arg-type]

    def _fit(self) -> tuple[QuadrotorWorldModel, FitReport]:
        return self.truth, FitReport(self.truth.summary(), {"steps": sum(f.steps for f in self.flights)})


def run_ours(shift: Shift, seed: int, max_real_s: float, out: Path, model: str = "fitted") -> dict[str, Any]:
    """Our loop with its world ``model``.

    ``fitted``: ours; ``learned``: purely learned (the MBPO-style baseline); ``true``: the true physics (its oracle).
    """
    robot = SimulatedRobot(shift, seed=seed)
    robot.deploy(POLICY)
    cfg = FinetuneConfig(max_real_s=max_real_s, seed=seed)
    if model == "learned":
        cfg = replace(cfg, world_model=replace(cfg.world_model, physics=False, bootstrap=1))
    args = (cfg, load_pretrained(PRETRAINED), robot, lambda c, o: export_onnx(c, o), out, POLICY)
    ft = _KnownPhysics(shift, *args, quiet=True) if model == "true" else Finetuner(*args, quiet=True)
    report = ft.run()
    errors = {str(POLICY): evaluate(OnnxPolicy(POLICY), shift)["error_m"]}
    curve = [[0.0, errors[str(POLICY)]]]
    for row in report["iterations"]:  # the policy deployed after each iteration, at the real seconds it had used
        path = row["deployed_after"]
        if path not in errors:
            errors[path] = evaluate(OnnxPolicy(path), shift)["error_m"]
        curve.append([row["real_s"], errors[path]])
    final = evaluate(OnnxPolicy(Path(report["deployed"])), shift)
    return {**final, "violation_steps": robot.violation_steps, "curve": curve, "accepted": report["accepted"],
            "rollbacks": report["rollbacks"]}  # fmt: skip


class _SelectByError(Runner):
    """A run that keeps as ``best.pt`` the policy of lowest :func:`evaluate` error on its own simulator's physics.

    Validation episodes have seeds disjoint from the evaluation's; the task's training criterion is not used.
    """

    def validate(self, writer: Any = None) -> dict[str, float]:
        a_key = self.cfg.sac.actor_obs
        figures = evaluate(lambda o: self.agent.act({a_key: o}, deterministic=True), self.env.cfg.shift, 100,
                           VALIDATION_SEED)  # fmt: skip
        if self.best is None or figures["error_m"] < self.best["error_m"]:
            self.best = {**figures, "env_steps": float(self.env_steps)}
            self.save(self.run_dir / "best.pt", with_replay=False)
        return figures


def train_in_sim(shift: Shift, seed: int, steps: int, out: Path, name: str) -> Path:
    """SAC in the simulator with ``shift`` physics, finetuning the pretrained agent as our loop does in its model.

    The same recipe as :class:`~sim2real.policies.finetune.FinetuneConfig`: the pretrained actor, critics and
    normalisers, its learning rates, fixed entropy temperature and anchor to the pretrained actor. Validated every
    50k env steps on that simulator, the pretrained policy included as the first candidate, so the best validated
    policy is exported (the pretrained one when training on ``shift`` does not help). Returns the ONNX.
    """
    pre, ft = load_pretrained(PRETRAINED), FinetuneConfig()
    sac = replace(pre.cfg.sac, actor_lr=ft.actor_lr, critic_lr=ft.critic_lr, alpha_lr=0.0,
                  init_alpha=ft.alpha if ft.alpha is not None else float(pre.agent_state["log_alpha"].exp()))  # fmt: skip
    cfg = replace(pre.cfg, seed=seed, total_env_steps=steps, warmup_env_steps=pre.cfg.num_envs * 8,
                  eval_interval=min(50_000, steps), eval_start=0, log_dir=str(out), name=name, sac=sac,
                  env=replace(pre.cfg.env, shift=shift))  # fmt: skip
    runner = _SelectByError(cfg, quiet=True)
    agent = runner.agent
    for module in ("actor", "critic", "critic_target", "actor_norm", "critic_norm"):
        getattr(agent, module).load_state_dict(pre.agent_state[module])
    agent.set_anchor(agent.actor, ft.anchor)  # (copied: the pretrained actor)
    runner.env.set_env_steps(pre.env_steps)  # the reward weights where pretraining left them
    runner.validate()
    runner.train()
    return export_onnx(runner.run_dir, out / f"{name}.onnx")


def run_sysid(shift: Shift, seed: int, max_real_s: float, steps: int, out: Path) -> dict[str, Any]:
    """Fly the pretrained policy, fit the world model's physics, then :func:`train_in_sim` with the fitted physics."""
    robot = SimulatedRobot(shift, seed=seed)
    flight = robot.record(OnnxPolicy(POLICY), max_real_s)
    model, report = fit([flight], MODELS["crazyflie-paper"], WorldModelConfig(seed=seed))
    p = report.parameters
    weight = MODELS["crazyflie-paper"].mass * MODELS["crazyflie-paper"].gravity
    fitted = Shift(mass=p["mass"]["mean"], thrust=p["thrust"]["mean"], motor_tau=p["motor_tau"]["mean"],
                   wind=tuple(p[f"force_{a}"]["mean"] / weight for a in "xyz"))  # type: ignore[arg-type]
    onnx = train_in_sim(fitted, seed, steps, out, "sysid")
    return {**evaluate(OnnxPolicy(onnx), shift), "violation_steps": robot.violation_steps,
            "fitted": config_to_dict(fitted), "curve": [[max_real_s, math.nan]]}  # fmt: skip


def run_real_sac(shift: Shift, seed: int, max_real_s: float) -> dict[str, Any]:
    """SAC on the robot itself: stochastic actions, one update per control step, from the pretrained agent."""
    pre = load_pretrained(PRETRAINED)
    robot = SimulatedRobot(shift, seed=seed)
    env, limits = robot.env, SafetyLimits()
    agent = SAC(env.spec.obs_dims, 4, pre.cfg.sac)
    agent.load_state_dict(pre.agent_state)
    a_key, c_key = pre.cfg.sac.actor_obs, pre.cfg.sac.critic_obs
    env.set_env_steps(pre.env_steps)
    gen = torch.Generator().manual_seed(seed + 1)
    obs, violations, curve = robot.obs, 0, []
    steps, every = int(round(max_real_s / env.cfg.dt)), int(round(2.0 / env.cfg.dt))
    dims = {"obs_actor": obs[a_key].shape[1], "obs_critic": obs[c_key].shape[1], "action": 4,
            "next_obs_actor": obs[a_key].shape[1], "next_obs_critic": obs[c_key].shape[1]}  # fmt: skip
    replay = ReplayBuffer(steps, {**{k: ((d,), torch.float32) for k, d in dims.items()},
                                  "reward": ((), torch.float32), "terminated": ((), torch.float32)})  # fmt: skip
    for t in range(steps):
        if t % every == 0:
            env.target[:] = (2 * torch.rand(1, 3, generator=gen) - 1) * 0.2
            obs = env.observe()
        action = agent.act(obs)
        nxt, reward, terminated, _, info = env.step(action)
        violations += int(limits.margins(env.state, torch.zeros(3))[0] < 0)
        replay.add(obs_actor=obs[a_key], obs_critic=obs[c_key], action=action, reward=reward,
                   next_obs_actor=info["final_obs"][a_key], next_obs_critic=info["final_obs"][c_key],
                   terminated=terminated.float())  # fmt: skip
        obs = nxt
        if t >= 256:  # rows are in arrival order (the buffer holds the whole flight): a uniform draw of them
            idx = torch.randint(t + 1, (pre.cfg.sac.batch_size,), generator=gen)
            agent.update({k: v[idx] for k, v in replay.data.items()})
        if (t + 1) % (5 * every) == 0:
            curve.append([(t + 1) * env.cfg.dt, evaluate(lambda o: agent.act({a_key: o}, deterministic=True), shift)["error_m"]])
    final = evaluate(lambda o: agent.act({a_key: o}, deterministic=True), shift)
    return {**final, "violation_steps": violations, "curve": curve}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shifts", nargs="+", default=["heavy_weak", "slow_motors", "wind", "wind_strong", "all"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--baseline-seeds", nargs="+", type=int, default=None,
                    help="seeds of sysid, real_sac and mbpo (default: --seeds)")
    ap.add_argument("--combine", nargs="+", default=[], metavar="JSON",
                    help="merge the shifts of earlier result files into --out, print the table, plot; run nothing")
    ap.add_argument("--max-real-s", type=float, default=60.0)
    ap.add_argument("--methods", nargs="+", default=["none", "sysid", "real_sac", "mbpo", "ours", "oracle_sim", "oracle_loop"])
    ap.add_argument("--sysid-steps", type=int, default=100_000, help="env steps of SAC in the fitted simulator")
    ap.add_argument("--oracle-steps", type=int, default=300_000, help="env steps of SAC in the true shifted simulator")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "finetune.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other methods' results already in --out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"max_real_s": args.max_real_s, "seeds": args.seeds, "shifts": {}}
    if args.merge and Path(args.out).is_file():
        results = json.loads(Path(args.out).read_text())
    for path in args.combine:
        results["shifts"].update(json.loads(Path(path).read_text())["shifts"])
    work = Path(tempfile.mkdtemp(prefix="finetune_bench_"))
    for name in [] if args.combine else args.shifts:
        shift = Shift.from_yaml(REPO / "config" / "shifts" / f"{name}.yaml")
        row: dict[str, Any] = dict(results["shifts"].get(name, {}))
        row["methods"] = dict(row.get("methods", {}))
        for method in args.methods:
            runs = []
            for seed in args.seeds if method in ("none", "ours") else args.baseline_seeds or args.seeds:
                t0 = time.time()
                out = work / name / method / f"s{seed}"
                out.mkdir(parents=True, exist_ok=True)
                if method == "none":
                    r = {**evaluate(OnnxPolicy(POLICY), shift), "violation_steps": 0, "curve": []}
                elif method in ("ours", "mbpo", "oracle_loop"):
                    model = {"ours": "fitted", "mbpo": "learned", "oracle_loop": "true"}[method]
                    r = run_ours(shift, seed, args.max_real_s, out, model)
                elif method == "sysid":
                    r = run_sysid(shift, seed, args.max_real_s, args.sysid_steps, out)
                elif method == "real_sac":
                    r = run_real_sac(shift, seed, args.max_real_s)
                elif method == "oracle_sim":  # the true physics, no real flight: a reference of "gap closed"
                    r = {**evaluate(OnnxPolicy(train_in_sim(shift, seed, args.oracle_steps, out, "oracle")), shift),
                         "violation_steps": 0, "curve": []}  # fmt: skip
                else:
                    raise SystemExit(f"unknown method {method!r}")
                r["time_s"] = round(time.time() - t0, 1)
                runs.append(r)
                print(f"{name:11s} {method:11s} seed {seed}: error {r['error_m']:.4f} m, left box {r['left_box']:.1%}, "
                      f"violations {r['violation_steps']}, {r['time_s']:.0f} s", flush=True)  # fmt: skip
            row["methods"][method] = {"runs": runs, "error_m": statistics.mean(r["error_m"] for r in runs),
                                      "violation_steps": sum(r["violation_steps"] for r in runs)}  # fmt: skip
        results["shifts"][name] = row
        write_text_atomic(Path(args.out), json.dumps(results, indent=2, default=float) + "\n")
    for row in results["shifts"].values():  # gap closed = (none - method) / (none - best oracle), per seed
        errors = {k: m["error_m"] for k, m in row["methods"].items()}
        oracle = min((e for k, e in errors.items() if k.startswith("oracle")), default=None)
        row["oracle_m"] = oracle
        for method, m in row["methods"].items():
            m.pop("gap_closed", None)
            if "none" in errors and oracle is not None and not method.startswith(("none", "oracle")):
                gap = errors["none"] - oracle  # no gap (<= 0): the pretrained policy is as good as the oracles
                m["gap_closed"] = [(errors["none"] - r["error_m"]) / gap if gap > 0 else None for r in m["runs"]]
    write_text_atomic(Path(args.out), json.dumps(results, indent=2, default=float) + "\n")
    print(f"\n{'shift':11s} {'method':11s} {'error m':>8s} {'gap closed (per seed)':>28s} {'violations':>10s}")
    for name, row in results["shifts"].items():
        for method, m in row["methods"].items():
            gaps = " ".join("no gap" if g is None else f"{g:5.0%}" for g in m.get("gap_closed", []))
            print(f"{name:11s} {method:11s} {m['error_m']:8.4f} {gaps:>28s} {m['violation_steps']:10d}")
    _plot(results, REPO / "docs" / "figures" / "finetune.png")
    print(f"wrote {args.out}")
    return 0


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = list(results["shifts"])
    fig, axes = plt.subplots(1, len(shifts), figsize=(5 * len(shifts), 3.5), squeeze=False)
    for ax, name in zip(axes[0], shifts):
        row = results["shifts"][name]
        for method, m in row["methods"].items():
            curves = [r["curve"] for r in m["runs"] if r["curve"]]
            if method.startswith("oracle"):
                ax.axhline(m["error_m"], color="k", lw=0.8, ls=":" if method == "oracle_sim" else "-", label=method)
                continue
            if method == "none" or not curves or any(math.isnan(c[-1][1]) for c in curves):
                ax.plot([0, results["max_real_s"]], [m["error_m"]] * 2, "--" if method == "none" else "o", label=method)
                continue
            xs = [p[0] for p in curves[0]]
            ys = [statistics.mean(c[i][1] for c in curves if i < len(c)) for i in range(len(xs))]
            ax.plot(xs, ys, "-o", label=method)
        ax.set(title=name, xlabel="real flight data [s]", ylabel="error on the shifted quadrotor [m]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
