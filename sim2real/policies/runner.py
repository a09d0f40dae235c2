"""Off-policy training loop: batched env collection, replay, SAC updates, checkpoints, logging, progress.

Generic: the task comes from the registry by name; its env config travels typed inside :class:`TrainConfig`.
A run lives in ``runs/<task>/<YYYYmmdd-HHMMSS>_<name>_s<seed>/``: ``config.yaml`` (resolved), ``checkpoint.pt``
(latest, written atomically every ``checkpoint_interval`` env steps and every ``checkpoint_every_s`` seconds),
TensorBoard event files, ``summary.json`` and ``learning_curve.png``.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from sim2real.core.config import apply_overrides, config_to_dict, dataclass_from_dict, to_yaml
from sim2real.core.files import (
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    save_figure_atomic,
    write_text_atomic,
)
from sim2real.core.obs import joined_dim, select
from sim2real.policies import distill
from sim2real.policies.distill import DistillConfig, Teacher
from sim2real.policies.replay import ReplayBuffer, nstep_batch
from sim2real.policies.sac import SAC, SACConfig
from sim2real.sim.registry import GroupedPolicy, get_task
from sim2real.sim.vecenv import EnvSpec, VecEnv

CHECKPOINT_VERSION = 2
"""2: ``config.env`` is the task's whole env config; 1 (still read): a dict of dotted overrides of it."""


class RunComplete(Exception):
    """``train()`` on a run that already reached its step budget: nothing to do (the run's files are untouched)."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved beside it as ``config.yaml``)."""

    task: str = "quadrotor-hover"
    seed: int = 0
    device: str = "cpu"
    num_envs: int = 64
    total_env_steps: int = 1_000_000
    """Env steps summed over all envs."""
    warmup_env_steps: int = 10_000
    """Uniform-random actions (summed over envs) before the policy acts and learning starts."""
    updates_per_step: float = 1.0
    """Gradient updates per vector step; replay ratio = updates_per_step * batch_size / num_envs."""
    replay_size: int = 1_000_000
    sac: SACConfig = field(default_factory=SACConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Stage 2 of asymmetric actor-critic distillation (a student of ``distill.teacher``); off by default."""
    env: Any = None
    """The task's env config (its dataclass, e.g. ``HoverConfig``; a dict is read as one); None: the task's
    defaults. Its ``num_envs`` and ``device`` always follow the two fields above."""
    name: str = "sac"
    log_dir: str = "runs"
    log_interval: int = 20_000
    """Env steps between TensorBoard/console log points."""
    checkpoint_interval: int = 200_000
    """Env steps between checkpoints."""
    checkpoint_every_s: float = 300.0
    """Also write the checkpoint when this much wall-clock time passed since the last one (0: only by steps), so a
    killed run loses at most this much training."""
    eval_interval: int = 0
    """Env steps between validations of the deterministic policy (0 = never); the best one is kept as
    ``best.pt`` and is what a run directory exports."""
    eval_start: int = 0
    """First env step at which validation may run."""
    eval_episodes: int = 100
    """Validation episodes per start distribution."""
    save_replay: bool = False
    """Also save the replay buffer (``replay.pt``) so ``--resume`` continues bit-exactly."""
    torch_threads: int = 0
    """``torch.set_num_threads`` (0 = leave PyTorch's default: all cores)."""

    def __post_init__(self) -> None:
        spec = get_task(self.task)
        env = spec.config() if self.env is None else self.env
        if isinstance(env, dict):
            env = dataclass_from_dict(spec.config, env)
        if not isinstance(env, spec.config):
            raise TypeError(f"task {self.task!r} takes a {spec.config.__name__} env config, got {type(env).__name__}")
        self.env = replace(env, num_envs=self.num_envs, device=self.device)


def config_from_dict(d: dict[str, Any], version: int = CHECKPOINT_VERSION) -> TrainConfig:
    """Inverse of ``config_to_dict(cfg)`` (unknown keys are an error); ``version`` 1 configs are migrated."""
    if version == 1:  # env was a dict of dotted overrides of the task's defaults, applied at env construction
        d = dict(d)
        env = apply_overrides(get_task(d.get("task", "quadrotor-hover")).config(), d.get("env") or {})
        d["env"] = config_to_dict(env)
    return dataclass_from_dict(TrainConfig, d)


def run_checkpoint(source: str | Path) -> Path:
    """The checkpoint a run directory stands for: ``best.pt`` (its best validated policy) if any, else ``checkpoint.pt``."""
    path = Path(source)
    if path.is_dir():
        path = path / "best.pt" if (path / "best.pt").is_file() else path / "checkpoint.pt"
    return path


def load_teacher(source: str | Path, obs_dims: dict[str, int], act_dim: int, device: torch.device) -> Teacher:
    """The frozen stage-1 teacher of a run directory or checkpoint file (``weights_only`` load).

    Raises:
        CheckpointError: missing or corrupt file, not a training checkpoint, or weights that do not fit the env.
    """
    path = run_checkpoint(source)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        raise CheckpointError(f"teacher: {e}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "agent" not in ckpt:
        raise CheckpointError(f"teacher {path}: not a sim2real training checkpoint")
    try:
        sac = config_from_dict(ckpt["config"], ckpt.get("version", CHECKPOINT_VERSION)).sac
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"teacher {path}: unreadable config ({type(e).__name__}: {e})") from None
    return distill.teacher_from_state(sac, ckpt["agent"], obs_dims, act_dim, device, str(path))


def make_agent(spec: EnvSpec, sac: SACConfig, device: torch.device | str) -> SAC:
    """The SAC agent of an env: a CNN actor encoder takes its image shape from the env's ``tactile`` sensor."""
    image = spec.sensors.get("tactile", {}).get("shape") if sac.actor_encoder == "cnn" else None
    return SAC(spec.obs_dims, spec.action_dim, sac, device, tuple(image) if image else None)


def make_env(cfg: TrainConfig) -> VecEnv:
    """Build the task env of a training config."""
    return get_task(cfg.task).make(cfg.env)


# ----------------------------------------------------------------------------------------------- runner
class Runner:
    """Trains SAC on a registered task. ``Runner(cfg).train()``; ``Runner.resume(run_dir).train()``."""

    def __init__(self, cfg: TrainConfig, run_dir: Path | None = None, quiet: bool = False) -> None:
        if cfg.num_envs < 1 or cfg.total_env_steps < 1:
            raise ValueError("num_envs and total_env_steps must be positive")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.device!r} requested but CUDA is not available on this machine")
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        self.quiet = quiet
        torch.manual_seed(cfg.seed)
        self.env = make_env(cfg)
        spec = self.env.spec
        self.teacher: Teacher | None = None
        if cfg.distill.teacher:  # a student: the teacher's critic shape, its weights after the agent is built
            self.teacher = load_teacher(cfg.distill.teacher, spec.obs_dims, spec.action_dim, torch.device(cfg.device))
            self.cfg = cfg = replace(cfg, sac=distill.student_sac(cfg.distill, cfg.sac, self.teacher))
        self.agent = make_agent(spec, cfg.sac, cfg.device)
        if self.teacher is not None:
            distill.init_student(self.agent, self.teacher, cfg.distill.critic)
        a_dim, c_dim = joined_dim(spec.obs_dims, cfg.sac.actor_obs), joined_dim(spec.obs_dims, cfg.sac.critic_obs)
        self.use_terms = bool(self.env.reward_term_names)
        reward_field = ((len(self.env.reward_term_names),), torch.float32) if self.use_terms else ((), torch.float32)
        capacity = min(cfg.replay_size, max(cfg.total_env_steps, cfg.num_envs))
        nstep = cfg.sac.n_step > 1
        if nstep:  # n-step windows step through the ring one row per env: whole vector steps only
            capacity = max(capacity // cfg.num_envs, 1) * cfg.num_envs
        self.replay = ReplayBuffer(
            capacity,
            {
                "obs_actor": ((a_dim,), torch.float32),
                "obs_critic": ((c_dim,), torch.float32),
                "action": ((spec.action_dim,), torch.float32),
                "reward_terms" if self.use_terms else "reward": reward_field,
                "next_obs_actor": ((a_dim,), torch.float32),
                "next_obs_critic": ((c_dim,), torch.float32),
                "terminated": ((), torch.float32),
                **({"ended": ((), torch.float32)} if nstep else {}),
            },
            cfg.device,
            seed=cfg.seed + 1,
        )
        self.env_steps = 0
        self.learn_from = cfg.warmup_env_steps
        """Env steps after which the policy acts and learns (later than the warm-up after a resume without replay)."""
        self.update_credit = 0.0
        self.obs = self.env.reset(cfg.seed)
        self.agent.observe(self.obs)
        self.run_dir = run_dir or self._new_run_dir()
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None

    def _new_run_dir(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(self.cfg.log_dir) / self.cfg.task / f"{stamp}_{self.cfg.name}_s{self.cfg.seed}"
        base.parent.mkdir(parents=True, exist_ok=True)
        path, i = base, 1
        while True:  # mkdir is atomic: two runs started in the same second get different directories
            try:
                path.mkdir()
                return path
            except FileExistsError:
                path, i = base.with_name(f"{base.name}-{i}"), i + 1

    # ------------------------------------------------------------------------------------------ one iteration
    def collect(self) -> dict[str, torch.Tensor] | None:
        """One vector step of every env; returns episode stats of envs that ended (or None)."""
        cfg, env = self.cfg, self.env
        if self.env_steps < self.learn_from:
            action = torch.rand(env.num_envs, env.spec.action_dim, device=env.device) * 2 - 1
        else:
            action = self.agent.act(self.obs)
        teacher = self.teacher
        beta = distill.dagger_beta(cfg.distill, self.env_steps) if teacher is not None else 0.0
        if teacher is not None and beta > 0:  # DAgger: the teacher's action is executed with probability beta
            take = torch.rand(env.num_envs, 1, device=env.device) < beta
            action = torch.where(take, teacher.act_on(self.obs), action)
        obs, reward, terminated, truncated, info = env.step(action)
        final = info["final_obs"]
        a_key, c_key = cfg.sac.actor_obs, cfg.sac.critic_obs
        self.replay.add(
            obs_actor=select(self.obs, a_key),
            obs_critic=select(self.obs, c_key),
            action=action,
            **({"reward_terms": info["reward_terms"]} if self.use_terms else {"reward": reward}),
            next_obs_actor=select(final, a_key),
            next_obs_critic=select(final, c_key),
            terminated=terminated.float(),
            **({"ended": (terminated | truncated).float()} if "ended" in self.replay.data else {}),
        )
        self.agent.observe(obs)
        self.obs = obs
        self.env_steps += env.num_envs
        env.set_env_steps(self.env_steps)
        return info.get("episode")

    def learn(self) -> dict[str, torch.Tensor] | None:
        """The gradient updates owed for the last vector step (fractional ``updates_per_step`` accumulate)."""
        if self.env_steps < self.learn_from:
            return None
        self.update_credit += self.cfg.updates_per_step
        self.agent.set_progress(self.env_steps / self.cfg.total_env_steps)
        metrics = None
        sac = self.cfg.sac
        while self.update_credit >= 1.0:
            if sac.n_step > 1:  # rewards (under the current curriculum weights) summed over n steps
                batch = nstep_batch(
                    self.replay, sac.batch_size, sac.n_step, sac.gamma, self.env.num_envs,
                    self.env.reward_from_terms if self.use_terms else None,
                )  # fmt: skip
            else:
                batch = self.replay.sample(sac.batch_size)
                if self.use_terms:  # rewards under the current curriculum weights
                    batch["reward"] = self.env.reward_from_terms(batch.pop("reward_terms"))
            if self.teacher is not None and self.env_steps < self.cfg.distill.dagger_env_steps:
                batch["bc_target"] = self.teacher.act(batch["obs_critic"])  # DAgger: label the student's own states
            metrics = self.agent.update(batch)
            self.update_credit -= 1.0
        return metrics

    # ------------------------------------------------------------------------------------------ the loop
    @property
    def complete(self) -> bool:
        """Whether the run has reached its step budget."""
        return self.env_steps >= self.cfg.total_env_steps

    def train(self, callback: Callable[[Runner], None] | None = None) -> dict[str, Any]:
        """Run until ``total_env_steps``; returns the final summary (also written to ``summary.json``).

        Raises:
            RunComplete: the run already reached ``total_env_steps`` (a resumed, finished run): nothing is written.
        """
        from torch.utils.tensorboard import SummaryWriter

        from sim2real.core.progress import progress_bar

        cfg = self.cfg
        if self.complete:
            raise RunComplete(
                f"run {self.run_dir} is complete ({self.env_steps:,} of {cfg.total_env_steps:,} env steps); extend it "
                f"with --resume {self.run_dir} --total-steps N (N > {self.env_steps})"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.run_dir / "config.yaml", to_yaml(config_to_dict(cfg)))
        writer = SummaryWriter(str(self.run_dir))
        recent_ret: deque[float] = deque(maxlen=200)
        recent_len: deque[float] = deque(maxlen=200)
        next_log = (self.env_steps // cfg.log_interval + 1) * cfg.log_interval
        next_ckpt = (self.env_steps // cfg.checkpoint_interval + 1) * cfg.checkpoint_interval
        if cfg.eval_interval:
            next_eval = max(cfg.eval_start, (self.env_steps // cfg.eval_interval + 1) * cfg.eval_interval)
        t_start, steps_start, upd_start = time.time(), self.env_steps, self.agent.num_updates
        t_ckpt = t_start
        t_last, steps_last, upd_last = t_start, self.env_steps, self.agent.num_updates
        metrics: dict[str, torch.Tensor] | None = None
        with progress_bar(cfg.total_env_steps, self.quiet) as bar:
            bar.update(completed=self.env_steps)
            while self.env_steps < cfg.total_env_steps:
                ep = self.collect()
                if ep is not None:
                    recent_ret.extend(ep["return"].tolist())
                    recent_len.extend(ep["length"].float().tolist())
                metrics = self.learn() or metrics
                if self.env_steps >= next_log or self.env_steps >= cfg.total_env_steps:
                    now = time.time()
                    row = {
                        "env_steps": float(self.env_steps),
                        "episode_return": _mean(recent_ret),
                        "episode_length": _mean(recent_len),
                        "perf/env_sps": (self.env_steps - steps_last) / max(now - t_last, 1e-9),
                        "perf/updates_per_s": (self.agent.num_updates - upd_last) / max(now - t_last, 1e-9),
                        # samples replayed per new transition: updates per vector step * batch / envs
                        "perf/replay_ratio": cfg.updates_per_step * cfg.sac.batch_size / cfg.num_envs,
                        "time_s": now - t_start,
                    }
                    if metrics is not None:
                        row.update({f"losses/{k}": float(v) for k, v in metrics.items()})
                    row.update({f"curriculum/w_{k}": v for k, v in self.env.reward_weights.items()})
                    for k, v in row.items():
                        if k != "env_steps":
                            writer.add_scalar(k, v, self.env_steps)
                    self.history.append(row)
                    t_last, steps_last, upd_last = now, self.env_steps, self.agent.num_updates
                    next_log += cfg.log_interval
                    bar.update(completed=self.env_steps, ret=row["episode_return"], length=row["episode_length"],
                               sps=row["perf/env_sps"], ups=row["perf/updates_per_s"])  # fmt: skip
                    if callback is not None:
                        callback(self)
                else:
                    bar.update(completed=self.env_steps)
                if cfg.eval_interval and self.env_steps >= next_eval:
                    t_val = time.time()
                    self.validate(writer)
                    next_eval += cfg.eval_interval
                    t_last += time.time() - t_val  # validation time is not training throughput
                by_clock = cfg.checkpoint_every_s > 0 and time.time() - t_ckpt >= cfg.checkpoint_every_s
                if self.env_steps >= next_ckpt or by_clock:
                    self.save()
                    t_ckpt = time.time()
                    while next_ckpt <= self.env_steps:
                        next_ckpt += cfg.checkpoint_interval
        writer.close()
        self.save()
        elapsed = time.time() - t_start
        summary = {
            "run_dir": str(self.run_dir),
            "task": cfg.task,
            "seed": cfg.seed,
            "env_steps": self.env_steps,
            "updates": self.agent.num_updates,
            "wall_time_s": round(elapsed, 2),
            "env_steps_per_s": round((self.env_steps - steps_start) / max(elapsed, 1e-9), 1),
            "updates_per_s": round((self.agent.num_updates - upd_start) / max(elapsed, 1e-9), 1),
            "replay_ratio": cfg.updates_per_step * cfg.sac.batch_size / cfg.num_envs,
            "final_episode_return": _mean(recent_ret),
            "final_episode_length": _mean(recent_len),
        }
        if self.best is not None:
            summary["best_validation"] = self.best
        write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        _plot_learning_curve(self.history, self.run_dir / "learning_curve.png")
        return summary

    def validate(self, writer: Any = None) -> dict[str, float] | None:
        """Validate the deterministic policy with the task's hook; keep it as ``best.pt`` if it scores best."""
        entry = get_task(self.cfg.task)
        if entry.validate is None:
            return None
        agent, a_key = self.agent, self.cfg.sac.actor_obs
        was_training = agent.actor.training
        agent.actor.eval()

        def act(obs: torch.Tensor) -> torch.Tensor:  # the actor's input, as a policy file takes it
            return agent.act_input(obs.to(agent.device), deterministic=True).cpu()

        figures = entry.validate(GroupedPolicy(act, a_key), self.env.cfg, self.cfg.eval_episodes, None)
        agent.actor.train(was_training)
        figures = {**figures, "env_steps": float(self.env_steps)}
        if writer is not None:
            for k, v in figures.items():
                if k != "env_steps":
                    writer.add_scalar(f"validation/{k}", v, self.env_steps)
        if self.best is None or figures["score"] < self.best["score"]:
            self.best = figures
            self.save(self.run_dir / "best.pt", with_replay=False)
        return figures

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self, path: Path | None = None, with_replay: bool = True) -> Path:
        """Write the complete checkpoint atomically (and ``replay.pt`` when ``save_replay`` and ``with_replay``)."""
        path = path or self.run_dir / "checkpoint.pt"
        env_state = self.env.state_dict()
        ckpt = {
            "version": CHECKPOINT_VERSION,
            "config": config_to_dict(self.cfg),
            "agent": self.agent.state_dict(),
            "env_steps": self.env_steps,
            "update_credit": self.update_credit,
            "obs": self.obs,
            "env_state": env_state,
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "best": self.best,
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(ckpt, path)
        if self.cfg.save_replay and with_replay:
            atomic_torch_save(self.replay.state_dict(), path.with_name("replay.pt"))
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, total_env_steps: int | None = None, quiet: bool = False) -> Runner:
        """Rebuild a run from ``run_dir/checkpoint.pt`` and continue it (optionally to a new step budget)."""
        run_dir = Path(run_dir)
        ckpt = load_checkpoint(run_dir / "checkpoint.pt")
        version = ckpt.get("version")
        if version not in (1, CHECKPOINT_VERSION):
            raise CheckpointError(f"checkpoint {run_dir / 'checkpoint.pt'} has version {version}; "
                                  f"supported: 1, {CHECKPOINT_VERSION}")  # fmt: skip
        cfg = config_from_dict(ckpt["config"], version)
        if total_env_steps is not None:
            cfg = replace(cfg, total_env_steps=total_env_steps)
        runner = cls(cfg, run_dir=run_dir, quiet=quiet)
        try:
            runner.agent.load_state_dict(ckpt["agent"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise ValueError(f"checkpoint {run_dir / 'checkpoint.pt'} does not fit config of this run: {e}") from e
        runner.env_steps = int(ckpt["env_steps"])
        runner.update_credit = float(ckpt["update_credit"])
        runner.obs = ckpt["obs"]
        runner.history = list(ckpt.get("history", []))
        runner.best = ckpt.get("best")
        if ckpt.get("env_state"):
            runner.env.load_state_dict(ckpt["env_state"])
        runner.env.set_env_steps(runner.env_steps)
        torch.set_rng_state(ckpt["torch_rng"])
        replay_path = run_dir / "replay.pt"
        if replay_path.exists():
            runner.replay.load_state_dict(load_checkpoint(replay_path))
        else:  # without the buffer, refill it before learning resumes (the saved config stays as it was)
            runner.learn_from = runner.env_steps + cfg.warmup_env_steps
        return runner


def _mean(x: deque[float]) -> float:
    return float(sum(x) / len(x)) if x else math.nan


def _plot_learning_curve(history: list[dict[str, float]], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["env_steps"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(steps, [h["episode_return"] for h in history])
    axes[0].set(xlabel="env steps", ylabel="episode return", title="return")
    axes[1].plot(steps, [h["episode_length"] for h in history])
    axes[1].set(xlabel="env steps", ylabel="episode length [steps]", title="episode length")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
