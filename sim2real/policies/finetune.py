"""Safe finetuning on the robot: the robot flies the deterministic policy, SAC explores only in a world model.

The LIFT recipe (world model fitted to the robot's own logs, SAC in imagination) with a physics prior and a gate.
One iteration of :meth:`Finetuner.run`:

a. **fly**: the deployed policy on the real system for ``seconds_per_iteration`` (the real system's set-point
   schedule excites the dynamics); its real error and safety margin are logged;
f. **rollback**: if the policy deployed last iteration flew worse than its predecessor by more than
   ``rollback_threshold`` (relative), the predecessor is deployed again (and the agent returns to it);
b. **fit** the world model on every real second so far (warm start from the last fit; prior: the simulator); when the
   flights hold no window long enough (cut into short pieces where the robot's control loop missed ticks), the
   iteration ends here, says why, and the loop flies again (a run that never fits raises ``NotEnoughData``);
c. **SAC in imagination**: rollouts branched from real states for ``horizon`` steps (ramped over iterations),
   every batch ``real_fraction`` real transitions, reward minus ``uncertainty_penalty`` x model disagreement,
   termination at the safety limits; the actor starts from the deployed policy, the critics from the pretrained
   checkpoint (every iteration: they were trained across the randomisation with exploration), and the actor loss
   keeps the mean action near the deployed policy's (``anchor``, ``w |mu - mu_deployed|^2``). Every
   ``select_every`` imagined steps the agent is assessed in the model; the candidate is the best snapshot (measured:
   the predicted error falls within a few hundred updates and then rises again);
d. **gate**: the candidate and the deployed policy fly in every member of the model from real start states; the
   candidate is accepted only with no predicted violation, a predicted safety margin of ``gate_min_margin`` and an
   error at least ``gate_improvement`` (relative) below the deployed policy's;
e. **deploy**: an accepted candidate is written as a checkpoint, exported (the exporter's parity check) and handed
   to the real system.

Until ``max_real_s`` seconds are flown. Everything is logged per iteration to TensorBoard, ``finetune_report.json``
and ``finetune.png`` (real-data seconds vs real error); the real flights are kept in ``real_flights.pt``.
What the loop needs of the task is its ``imagination``
(:class:`Imagination`, e.g. :class:`~sim2real.tasks.quadrotor_hover.imagined.HoverImagination`); what it needs of
the robot is a :class:`RealSystem`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from sim2real.core.config import config_to_dict
from sim2real.core.files import (
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    save_figure_atomic,
    write_text_atomic,
)
from sim2real.policies.replay import ReplayBuffer
from sim2real.policies.runner import CHECKPOINT_VERSION, TrainConfig, config_from_dict
from sim2real.policies.sac import SAC
from sim2real.policies.world_model import FitReport, Flight, NotEnoughData, QuadrotorWorldModel, WorldModelConfig, fit
from sim2real.sim.registry import get_task
from sim2real.sim.safety import SafetyLimits
from sim2real.sim.vecenv import VecEnv

PolicyFn = Callable[[torch.Tensor], torch.Tensor]
FLIGHTS_FILE = "real_flights.pt"
"""Every real flight of a finetuning run, in its report directory (``sim2real sysid RUN`` reads it)."""


def save_flights(flights: list[Flight], path: Path) -> None:
    """Write flights atomically (tensors only: loadable with ``weights_only=True``)."""
    rows = [{"odom": f.odom, "action": f.action, "dt": f.dt, "target": f.targets} for f in flights]
    atomic_torch_save({"flights": rows}, path)


def load_flights(path: str | Path) -> list[Flight]:
    """Flights written by :func:`save_flights`.

    Raises:
        CheckpointError: missing, corrupt or not a list of flights.
    """
    data = load_checkpoint(Path(path))
    try:
        return [Flight(d["odom"], d["action"], float(d["dt"]), d["target"]) for d in data["flights"]]
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a file of flights ({type(e).__name__}: {e})") from None


class RealSystem(Protocol):
    """The robot (or a stand-in): flies whatever policy file was deployed last."""

    def deploy(self, policy_file: Path) -> None:
        """Hand an exported policy to the robot (it flies it from now on)."""
        ...

    def fly(self, schedule: list[tuple[float, tuple[float, float, float]]]) -> list[Flight]:
        """Fly the deployed policy through set-points held in turn, ``[(seconds, (x, y, z)), ...]``.

        Returns the logged flight (pieces where the log has gaps).
        """
        ...


class Imagination(Protocol):
    """What the loop needs of a task (see :mod:`sim2real.tasks.quadrotor_hover.imagined`)."""

    nominal: Any
    """The world model's prior (the simulator's physical model)."""

    def env(self, model: QuadrotorWorldModel, flights: list[Flight], num_envs: int, horizon: int, penalty: float,
            seed: int = 0) -> VecEnv: ...  # fmt: skip

    def real_transitions(self, model: QuadrotorWorldModel, flights: list[Flight]) -> dict[str, torch.Tensor]: ...

    def real_error(self, flight: Flight) -> float: ...

    def real_margin(self, flight: Flight) -> float: ...

    def assess(self, policy: PolicyFn, model: QuadrotorWorldModel, flights: list[Flight], episodes: int,
               seconds: float, seed: int = 0, perturbed: bool = False) -> dict[str, float]: ...  # fmt: skip


@dataclass
class FinetuneConfig:
    """Settings of the finetuning loop (defaults: a Crazyflie, 60 s of real flight)."""

    max_real_s: float = 60.0
    """Real flight used for learning, in total."""
    seconds_per_iteration: float = 10.0
    setpoint_every_s: float = 2.0
    setpoint_range_m: float = 0.2
    """The excitation: set-points uniform in ``home ± setpoint_range_m`` per axis (within the limits' set-point box),
    a new one every ``setpoint_every_s``; every iteration flies the same schedule, so real errors compare."""
    imagined_envs: int = 256
    """Imagined rollouts stepped in parallel."""
    horizon: tuple[int, int] = (10, 40)
    """Imagined rollout length [control steps] in the first iteration and from ``horizon_ramp`` iterations on."""
    horizon_ramp: int = 3
    imagined_steps: int = 150
    """Vector steps of the imagined envs per iteration."""
    updates_per_step: int = 10
    """SAC updates per imagined vector step."""
    batch_size: int = 256
    real_fraction: float = 0.1
    """Share of every batch drawn from the real transitions."""
    uncertainty_penalty: float = 1.0
    """Reward per unit of model disagreement (m/s and rad/s of the members' spread)."""
    anchor: float = 1.0
    """Weight of ``|mu(s) - mu_deployed(s)|^2`` in the actor loss."""
    actor_lr: float = 1e-4
    critic_lr: float = 1e-4
    alpha: float | None = 1e-3
    """Fixed entropy temperature in imagination (None: the pretrained one)."""
    select_every: int = 10
    """Imagined vector steps between assessments of the agent in the model (fewer episodes than the gate's, other
    starts); the iteration's candidate is the best snapshot (updates can also make a policy worse)."""
    select_episodes: int = 32
    gate_episodes: int = 128
    gate_seconds: float = 3.0
    gate_improvement: float = 0.03
    """The candidate's predicted error must be at least this fraction below the deployed policy's."""
    gate_min_margin: float = 0.2
    """Smallest predicted safety margin the candidate must keep (1 = at home, level, at rest)."""
    rollback_threshold: float = 0.2
    """A new policy whose real error exceeds its predecessor's by this fraction is rolled back."""
    world_model: WorldModelConfig = field(default_factory=lambda: WorldModelConfig(bootstrap=4))
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    seed: int = 0


@dataclass
class Pretrained:
    """The pretrained run: its training config and the agent state (actor, critics, normalisers)."""

    cfg: TrainConfig
    agent_state: dict[str, Any]
    env_steps: int
    path: Path


def load_pretrained(path: str | Path) -> Pretrained:
    """A training checkpoint (a run directory gives its ``best.pt``, else ``checkpoint.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt" if (p / "best.pt").is_file() else p / "checkpoint.pt"
    ckpt = load_checkpoint(p)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in ("version", "config", "agent")):
        raise CheckpointError(f"{p}: not a sim2real training checkpoint (needs version, config, agent)")
    if ckpt["version"] not in (1, CHECKPOINT_VERSION):
        raise CheckpointError(f"{p}: checkpoint version {ckpt['version']}; supported: 1, {CHECKPOINT_VERSION}")
    cfg = config_from_dict(ckpt["config"], ckpt["version"])
    return Pretrained(cfg, ckpt["agent"], int(ckpt.get("env_steps", cfg.total_env_steps)), p)


class _Snapshot:
    """The agent's deterministic policy as it is now: frozen copies of its actor and observation normaliser."""

    def __init__(self, agent: SAC) -> None:
        self.actor, self.norm = copy.deepcopy(agent.actor).eval(), copy.deepcopy(agent.actor_norm)
        self.normalize = agent.cfg.normalize_obs

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``(N, 4)`` for policy observations ``(N, obs_dim)``."""
        return self.actor.deterministic(self.norm(obs) if self.normalize else obs)


def _gate(g: dict[str, dict[str, float]], cfg: FinetuneConfig) -> list[str]:
    """Why the candidate may not be deployed ([] if it may), from the model's figures of it and the deployed policy.

    From the real start states: no predicted violation and a margin of ``gate_min_margin``; from perturbed ones: no
    more violations than the deployed policy (never less safe than what flies now); over both: an error at least
    ``gate_improvement`` below the deployed policy's.
    """
    c, cp, d, dp = g["candidate"], g["candidate_perturbed"], g["deployed"], g["deployed_perturbed"]
    error_c, error_d = (c["error_m"] + cp["error_m"]) / 2, (d["error_m"] + dp["error_m"]) / 2
    checks = (
        (c["violations"] > 0, f"{c['violations']:.0f} predicted violations from real states"),
        (c["min_margin"] < cfg.gate_min_margin, f"predicted margin {c['min_margin']:.2f} < {cfg.gate_min_margin}"),
        (cp["violations"] > dp["violations"],
         f"{cp['violations']:.0f} predicted violations from perturbed states (deployed: {dp['violations']:.0f})"),
        (error_c > error_d * (1 - cfg.gate_improvement),
         f"predicted error {error_c:.4f} m not {cfg.gate_improvement:.0%} below {error_d:.4f} m"),
    )  # fmt: skip
    return [why for bad, why in checks if bad]


def _join(flights: list[Flight]) -> list[Flight]:
    """Consecutive flights that continue each other (the last odometry row is the next one's first) joined."""
    out: list[Flight] = []
    for f in flights:
        prev = out[-1] if out else None
        if prev is not None and prev.dt == f.dt and torch.equal(prev.odom[-1], f.odom[0]):
            out[-1] = Flight(torch.cat((prev.odom, f.odom[1:])), torch.cat((prev.action, f.action)), f.dt,
                             torch.cat((prev.targets, f.targets[1:])))  # fmt: skip
        else:
            out.append(f)
    return out


class Finetuner:
    """The loop of the module docstring.

    Args:
        pretrained: the run the deployed policy was exported from (its critics are the starting point).
        real: the robot.
        export: ``export(checkpoint, onnx_path) -> onnx_path``: the exporter, with its parity check.
        out_dir: where the report, the TensorBoard events and the accepted policies (``policies/``) go.
        first_policy: the deployed policy file (it is checked to be the pretrained checkpoint's actor).
    """

    def __init__(self, cfg: FinetuneConfig, pretrained: Pretrained, real: RealSystem,
                 export: Callable[[Path, Path], Path], out_dir: Path, first_policy: Path,
                 home: tuple[float, float, float] = (0.0, 0.0, 0.0), quiet: bool = False) -> None:  # fmt: skip
        if not 0 < cfg.seconds_per_iteration <= cfg.max_real_s:
            raise ValueError(f"need 0 < seconds_per_iteration <= max_real_s, got {cfg.seconds_per_iteration}, {cfg.max_real_s}")
        if not 0 <= cfg.real_fraction < 1:
            raise ValueError(f"real_fraction must be in [0, 1), got {cfg.real_fraction}")
        self.cfg, self.pretrained, self.real, self.export, self.out = cfg, pretrained, real, export, Path(out_dir)
        self.quiet, self.home = quiet, home
        if not 0 <= cfg.setpoint_range_m <= cfg.limits.setpoint_box_m:
            raise ValueError(f"setpoint_range_m must be in [0, limits.setpoint_box_m = {cfg.limits.setpoint_box_m}], "
                             f"got {cfg.setpoint_range_m}")  # fmt: skip
        task = get_task(pretrained.cfg.task)
        if task.imagination is None:
            raise ValueError(f"task {task.name!r} cannot be finetuned (it provides no imagination)")
        env_cfg = pretrained.cfg.env
        self.imagination: Imagination = task.imagination(env_cfg, cfg.limits, torch.tensor(home), pretrained.env_steps)
        torch.manual_seed(cfg.seed)
        alpha = float(pretrained.agent_state["log_alpha"].exp()) if cfg.alpha is None else cfg.alpha
        sac_cfg = replace(pretrained.cfg.sac, actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, alpha_lr=0.0,
                          batch_size=cfg.batch_size, compile=False, init_alpha=alpha)  # fmt: skip
        probe = task.make(env_cfg.for_evaluation(1))
        self._dims, self._sac_cfg = (probe.spec.obs_dims, probe.spec.action_dim), sac_cfg
        self.agent = self._agent(None)
        self._check_policy_file(first_policy)
        self.deployed = _Snapshot(self.agent)
        self.deployed_actor = copy.deepcopy(self.agent.actor.state_dict())
        self.deployed_file = first_policy
        self.predecessor: tuple[_Snapshot, dict[str, Any], Path, float] | None = None
        """The policy deployed before the current one: policy, actor state, file, its real error."""
        self.model: QuadrotorWorldModel | None = None
        self.flights: list[Flight] = []
        self.log: list[dict[str, Any]] = []

    def _agent(self, actor: dict[str, Any] | None) -> SAC:
        """A fresh agent: critics and normalisers of the pretrained checkpoint, ``actor`` (None: the pretrained one).

        Every iteration starts its critics from the pretrained ones: trained across the randomisation with its
        exploration, they value actions the near-deterministic finetuned policy no longer tries.
        """
        agent = SAC(*self._dims, self._sac_cfg)
        state = self.pretrained.agent_state
        try:
            for name, module in (("actor", agent.actor), ("critic", agent.critic), ("critic_target", agent.critic_target),
                                 ("actor_norm", agent.actor_norm), ("critic_norm", agent.critic_norm)):  # fmt: skip
                module.load_state_dict(state[name])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{self.pretrained.path}: the agent does not fit its config ({e})") from None
        if actor is not None:
            agent.actor.load_state_dict(actor)
        return agent

    def _check_policy_file(self, path: Path) -> None:
        """The deployed ONNX must be the pretrained actor: same actions on the checkpoint's own observations."""
        from sim2real.core.policy_file import OnnxPolicy

        onnx = OnnxPolicy(path)
        gen = torch.Generator().manual_seed(0)
        norm = self.agent.actor_norm
        x = norm.mean + norm.var.clamp_min(1e-8).sqrt() * torch.randn(64, norm.mean.shape[0], generator=gen)
        if onnx.obs_dim != x.shape[1]:
            raise CheckpointError(f"{path} reads {onnx.obs_dim} observations, checkpoint {self.pretrained.path} "
                                  f"{x.shape[1]}: the checkpoint does not match the policy")  # fmt: skip
        diff = float((torch.as_tensor(onnx(x.numpy())) - _Snapshot(self.agent)(x)).abs().max())
        if not diff <= 1e-4:
            raise CheckpointError(f"checkpoint {self.pretrained.path} does not match the policy {path}: their actions "
                                  f"differ by up to {diff:.3g}")  # fmt: skip

    def _schedule(self, seconds: float) -> list[tuple[float, tuple[float, float, float]]]:
        """The first ``seconds`` of the excitation schedule (the same draw every iteration)."""
        cfg, gen = self.cfg, torch.Generator().manual_seed(self.cfg.seed)
        out, left = [], seconds
        while left > 1e-9:
            offset = (2 * torch.rand(3, generator=gen) - 1) * cfg.setpoint_range_m
            point = tuple(float(h + o) for h, o in zip(self.home, offset))
            out.append((min(cfg.setpoint_every_s, left), point))
            left -= cfg.setpoint_every_s
        return out

    # ------------------------------------------------------------------------------------------ one iteration
    def _imagine(self, horizon: int, iteration: int) -> dict[str, Any]:
        """SAC updates in the model (step c); returns the last losses and imagined-episode figures."""
        cfg, imag = self.cfg, self.imagination
        assert self.model is not None
        self.agent = agent = self._agent(self.deployed_actor)
        agent.set_anchor(self.deployed.actor, cfg.anchor)
        env = imag.env(self.model, self.flights, cfg.imagined_envs, horizon, cfg.uncertainty_penalty,
                       cfg.seed * 1000 + iteration)  # fmt: skip
        real = imag.real_transitions(self.model, self.flights)
        a_key, c_key = agent.cfg.actor_obs, agent.cfg.critic_obs
        dims = {k: ((v.shape[1],), torch.float32) if v.ndim == 2 else ((), torch.float32) for k, v in real.items()}
        replay = ReplayBuffer(cfg.imagined_envs * cfg.imagined_steps, dims, "cpu", seed=cfg.seed + iteration)
        n_real = int(round(cfg.batch_size * cfg.real_fraction))
        gen = torch.Generator().manual_seed(cfg.seed + iteration)
        obs, metrics, ended, unc = env.reset(cfg.seed * 1000 + iteration), {}, 0, []
        best_state, best_error, seed = copy.deepcopy(agent.state_dict()), math.inf, cfg.seed * 1000 + iteration
        selection: list[list[float]] = []  # (updates, score): mean predicted error [m] + predicted violations
        for step in range(cfg.imagined_steps):
            action = agent.act(obs)
            nxt, reward, terminated, _, info = env.step(action)
            final = info["final_obs"]
            replay.add(obs_actor=obs[a_key], obs_critic=obs[c_key], action=action, reward=reward,
                       next_obs_actor=final[a_key], next_obs_critic=final[c_key], terminated=terminated.float())  # fmt: skip
            ended += int(terminated.sum())
            unc.append(float(info["uncertainty"].mean()))
            obs = nxt
            for _ in range(cfg.updates_per_step):
                batch = replay.sample(cfg.batch_size - n_real)
                if n_real:
                    pick = torch.randint(len(real["action"]), (n_real,), generator=gen)
                    batch = {k: torch.cat((v, real[k][pick])) for k, v in batch.items()}
                metrics = agent.update(batch)
            if (step + 1) % cfg.select_every == 0 or step + 1 == cfg.imagined_steps:  # keep the best snapshot
                figures = [imag.assess(_Snapshot(agent), self.model, self.flights, cfg.select_episodes, cfg.gate_seconds,
                                       seed + 1, kick) for kick in (False, True)]  # fmt: skip
                error = sum(f["error_m"] for f in figures) / 2 + sum(f["violations"] for f in figures)
                selection.append([float(agent.num_updates), error])
                if error < best_error:
                    best_state, best_error = copy.deepcopy(agent.state_dict()), error
        agent.load_state_dict(best_state)
        out: dict[str, Any] = {f"sac/{k}": float(v) for k, v in metrics.items()}
        out.update({"imagination/terminated_per_step": ended / (cfg.imagined_steps * cfg.imagined_envs),
                    "imagination/uncertainty": sum(unc) / len(unc), "imagination/horizon": float(horizon),
                    "selection": selection, "selected_updates": min(selection, key=lambda r: r[1])[0]})  # fmt: skip
        return out

    def _fit(self) -> tuple[QuadrotorWorldModel, FitReport]:
        """The world model on all real flights so far, warm-started from the previous fit (step b)."""
        return fit(self.flights, self.imagination.nominal, self.cfg.world_model, init=self.model)

    def _deploy(self, iteration: int) -> Path:
        """Write the agent as a checkpoint, export it (parity-checked) and hand it to the robot (step e)."""
        folder = self.out / "policies"
        folder.mkdir(parents=True, exist_ok=True)
        ckpt = folder / f"iter{iteration:02d}.pt"
        atomic_torch_save({"version": CHECKPOINT_VERSION, "config": config_to_dict(self.pretrained.cfg),
                           "agent": self.agent.state_dict(), "env_steps": self.pretrained.env_steps,
                           "finetune": {"iteration": iteration, "real_s": self.real_s}}, ckpt)  # fmt: skip
        path = self.export(ckpt, ckpt.with_suffix(".onnx"))
        self.real.deploy(path)
        return path

    @property
    def real_s(self) -> float:
        return sum(f.steps * f.dt for f in self.flights)

    def run(self) -> dict[str, Any]:
        """The loop until ``max_real_s``; returns the report (also ``finetune_report.json``)."""
        from torch.utils.tensorboard import SummaryWriter

        cfg, imag = self.cfg, self.imagination
        self.out.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(self.out))
        t0, iteration, new_policy = time.time(), 0, False
        deployed_error = math.nan
        while self.real_s < cfg.max_real_s - 0.1 * cfg.seconds_per_iteration:  # (a tick short is not an iteration)
            row: dict[str, Any] = {"iteration": iteration, "deployed": str(self.deployed_file)}
            seconds = min(cfg.seconds_per_iteration, cfg.max_real_s - self.real_s)
            pieces = [f for f in self.real.fly(self._schedule(seconds)) if f.steps > 0]  # (a) fly
            if not pieces:
                raise RuntimeError(f"the real system returned no data for {seconds:.1f} s of flight")
            self.flights = _join(self.flights + pieces)
            real_error = sum(imag.real_error(f) * f.steps for f in pieces) / sum(f.steps for f in pieces)
            row.update(real_s=self.real_s, real_error_m=real_error, real_min_margin=min(imag.real_margin(f) for f in pieces))
            row["rolled_back"] = False
            if new_policy and self.predecessor is not None:  # (f) rollback
                pred_fn, pred_actor, pred_file, pred_error = self.predecessor
                if real_error > pred_error * (1 + cfg.rollback_threshold):
                    self.real.deploy(pred_file)
                    self.deployed, self.deployed_actor, self.deployed_file = pred_fn, pred_actor, pred_file
                    row["rolled_back"], real_error = True, pred_error
            deployed_error, new_policy = real_error, False
            t_fit = time.time()
            try:
                self.model, report = self._fit()  # (b) fit
            except NotEnoughData as err:  # e.g. flights cut into short pieces by missed control ticks: fly again
                row.update(fit_s=time.time() - t_fit, time_s=time.time() - t0, deployed_after=str(self.deployed_file),
                           gate={"accepted": False, "reasons": [f"not fitted: {err}"]})  # fmt: skip
                self._log(writer, row)
                iteration += 1
                continue
            row.update(fit_s=time.time() - t_fit, parameters=report.parameters, prediction_error=report.prediction_error,
                       data=report.data)  # fmt: skip
            horizon = cfg.horizon[0] + round((cfg.horizon[1] - cfg.horizon[0]) * min(1.0, iteration / max(cfg.horizon_ramp, 1)))
            t_sac = time.time()
            row.update(self._imagine(horizon, iteration), sac_s=time.time() - t_sac)  # (c) SAC in imagination
            candidate = _Snapshot(self.agent)
            seed = cfg.seed * 1000 + iteration
            gate = {f"{name}{'_perturbed' if kick else ''}": imag.assess(fn, self.model, self.flights, cfg.gate_episodes,
                                                                        cfg.gate_seconds, seed, kick)
                    for name, fn in (("candidate", candidate), ("deployed", self.deployed)) for kick in (False, True)}  # (d)
            reasons = _gate(gate, cfg)  # fmt: skip
            row["gate"] = {**gate, "accepted": not reasons, "reasons": reasons}
            if not reasons:  # (e) deploy
                self.predecessor = (self.deployed, self.deployed_actor, self.deployed_file, deployed_error)
                self.deployed_file = self._deploy(iteration)
                self.deployed, self.deployed_actor = candidate, copy.deepcopy(self.agent.actor.state_dict())
                new_policy = True
            row["time_s"], row["deployed_after"] = time.time() - t0, str(self.deployed_file)
            self._log(writer, row)
            iteration += 1
        writer.close()
        if not any("parameters" in r for r in self.log):
            why = self.log[-1]["gate"]["reasons"][0] if self.log else "nothing flown"
            raise NotEnoughData(f"no flight of the {self.real_s:.1f} s flown gave enough contiguous data to fit the "
                                f"world model: {why}")  # fmt: skip
        return self._report()

    def _log(self, writer: Any, row: dict[str, Any]) -> None:
        step = int(round(row["real_s"] * 1000))  # milliseconds of real data
        for key in ("real_error_m", "real_min_margin", "fit_s", "sac_s"):
            if key in row:  # an iteration without a fit has no SAC
                writer.add_scalar(f"finetune/{key}", row[key], step)
        for key, value in row.items():
            if key.startswith(("sac/", "imagination/")):
                writer.add_scalar(key, value, step)
        for name, v in row.get("parameters", {}).items():
            writer.add_scalar(f"world_model/{name}", v["mean"], step)
        for which, errs in row.get("prediction_error", {}).items():
            for k, v in errs.items():
                writer.add_scalar(f"world_model/{which}_{k}", v, step)
        for name in ("candidate", "deployed", "candidate_perturbed", "deployed_perturbed"):
            for k, v in row["gate"].get(name, {}).items():
                writer.add_scalar(f"gate/{name}_{k}", v, step)
        writer.add_scalar("gate/accepted", float(row["gate"]["accepted"]), step)
        writer.add_scalar("finetune/rolled_back", float(row["rolled_back"]), step)
        self.log.append(row)
        save_flights(self.flights, self.out / FLIGHTS_FILE)  # the real data is what is most expensive to get again
        if not self.quiet and "parameters" not in row:
            print(f"[{row['real_s']:5.1f} s real] error {row['real_error_m']:.4f} m, margin {row['real_min_margin']:.2f}"
                  f" | {row['gate']['reasons'][0]}; flying again", flush=True)  # fmt: skip
        elif not self.quiet:
            g = row["gate"]
            verdict = "deployed" if g["accepted"] else "rejected: " + "; ".join(g["reasons"])
            p = row["parameters"]  # empty for a purely learned model
            fitted = " ".join(f"{n} x{p[n]['mean']:.3f}" for n in ("mass", "thrust") if n in p) or "learned model"
            print(f"[{row['real_s']:5.1f} s real] error {row['real_error_m']:.4f} m, margin {row['real_min_margin']:.2f}"
                  f"{' (rolled back)' if row['rolled_back'] else ''} | {fitted} | predicted {g['candidate']['error_m']:.4f} "
                  f"({g['candidate_perturbed']['error_m']:.4f} perturbed) vs {g['deployed']['error_m']:.4f} "
                  f"({g['deployed_perturbed']['error_m']:.4f}) m: {verdict}", flush=True)  # fmt: skip
        self._report()

    def _report(self) -> dict[str, Any]:
        report = {"config": config_to_dict(self.cfg), "pretrained": str(self.pretrained.path), "real_s": self.real_s,
                  "deployed": str(self.deployed_file), "iterations": self.log,
                  "real_min_margin": min((r["real_min_margin"] for r in self.log), default=math.nan),
                  "accepted": sum(r["gate"]["accepted"] for r in self.log),
                  "rollbacks": sum(r["rolled_back"] for r in self.log)}  # fmt: skip
        write_text_atomic(self.out / "finetune_report.json", json.dumps(report, indent=2, default=float))
        _plot(self.log, self.out / "finetune.png")
        return report


def _plot(log: list[dict[str, Any]], path: Path) -> None:
    """Real-data seconds vs the real error of each iteration's flight, marking what the gate decided."""
    if not log:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x, y = [r["real_s"] for r in log], [r["real_error_m"] for r in log]
    ax.plot(x, y, "-", color="0.6")
    for r in log:
        style = ("v", "tab:red") if r["rolled_back"] else (("o", "tab:green") if r["gate"]["accepted"] else ("x", "tab:gray"))
        ax.plot(r["real_s"], r["real_error_m"], style[0], color=style[1])
    ax.set(xlabel="real flight data [s]", ylabel="real position error [m]",
           title="finetuning (o: deployed next, x: rejected, v: rolled back)")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
