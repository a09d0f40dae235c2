"""The hover task inside a fitted world model: what finetuning explores in, so the robot never has to.

:class:`ImaginedHoverEnv` is the hover task (observations, reward, curriculum weights) whose physics step is the
world model (:class:`~sim2real.policies.world_model.QuadrotorWorldModel`): every imagined quadrotor is one of the
model's ``K`` bootstrap members (its fitted parameters and external force/torque are also what the critic's
privileged observation reports), with the training's randomisation around the fit: its random disturbances on top
of the fitted external force and torque, its domain-randomisation factors on the fitted parameters (a fit is a few
per cent off where the data cannot tell parameters apart, and the policy stays as robust as it was pretrained),
and its episodes start from *real* logged states (:class:`StartBank`: odometry,
the motor speeds the model reconstructs, the action history, the set-point) and last ``horizon`` steps. Per step::

    s'_k = model_k(s, a)  for every member k            u = | std_k(v'_k, omega'_k) |  (+ residual disagreement)
    s'   = s'_{k(env)}                                   r = r_task(s', a) - penalty * u

and an episode terminates where the task's box or the :class:`~sim2real.sim.safety.SafetyLimits` are crossed.

:class:`HoverImagination` is what the finetuning loop (:mod:`sim2real.policies.finetune`) asks of the task: these
envs, the real transitions in the same observation layout, the error of a real flight, and the gate's assessment
of a policy in the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from sim2real.policies.world_model import Flight, QuadrotorWorldModel, model_slice
from sim2real.sim.quadrotor import (
    MODELS,
    OMEGA,
    PARAM_NAMES,
    POS,
    QUAT,
    RPM,
    TWIST,
    VEL,
    quat_multiply,
    random_quaternions,
)  # fmt: skip
from sim2real.sim.safety import SafetyLimits
from sim2real.sim.vecenv import deg, uniform
from sim2real.tasks.quadrotor_hover.env import EVAL_STARTS, DomainRandomization, HoverConfig, QuadrotorHoverEnv, Shift
from sim2real.tasks.quadrotor_hover.evaluation import PolicyFn

PERTURBATION = EVAL_STARTS["nominal"]
"""How a perturbed start is knocked away from its real state: the evaluation's nominal start distribution."""



@dataclass
class StartBank:
    """Real states to branch from, with what the task needs around them (``S`` rows)."""

    state: torch.Tensor
    """``(S, 17)``: odometry and the motor speeds the model reconstructs."""
    target: torch.Tensor
    """``(S, 3)`` the set-point being held."""
    history: torch.Tensor
    """``(S, H, 4)`` the last ``H`` actions before the state, oldest first."""
    action: torch.Tensor
    """``(S, 4)`` the action the robot then took."""
    next_state: torch.Tensor
    """``(S, 17)`` where it arrived."""

    def __len__(self) -> int:
        return int(self.state.shape[0])


def start_bank(flights: list[Flight], model: QuadrotorWorldModel, action_history: int, burn_in: int) -> StartBank:
    """Every step past ``burn_in`` of every flight (the motor state is reconstructed by the model's mean)."""
    one, rows = model_slice(model), []
    with torch.no_grad():
        for f in flights:
            if f.steps <= burn_in:
                continue
            r = one.motor_speeds(f.action, f.dt)[0]  # (T + 1, 4)
            full = torch.cat((f.odom, r), -1)  # (T + 1, 17)
            padded = torch.cat((f.action[:1].expand(action_history, 4), f.action))  # the first action before t = 0
            t = torch.arange(burn_in, f.steps)
            hist = padded[t[:, None] + torch.arange(action_history)]  # actions t - H .. t - 1
            rows.append((full[t], f.targets[t], hist, f.action[t], full[t + 1]))
    if not rows:
        raise ValueError(f"no flight is longer than the {burn_in}-step burn-in")
    return StartBank(*(torch.cat(col) for col in zip(*rows)))


class ImaginedHoverEnv(QuadrotorHoverEnv):
    """Hover episodes of ``cfg.episode_steps`` (the horizon) inside ``model``, started from ``bank``."""

    def __init__(self, cfg: HoverConfig, model: QuadrotorWorldModel, bank: StartBank, limits: SafetyLimits,
                 home: torch.Tensor, penalty: float = 0.0, reward_env_steps: int = 0,
                 perturbed_fraction: float = 0.0) -> None:  # fmt: skip
        self.world_model, self.bank, self.limits, self.penalty = model, bank, limits, float(penalty)
        self.perturbed_fraction = perturbed_fraction
        self.home = home.reshape(1, 3).float()
        with torch.no_grad():
            self._member_params = model.params()  # (K, 10)
            self._member_force, self._member_torque = model.external()  # (K, 3) each
        self.randomization = cfg.dr
        self.scale = torch.ones(cfg.num_envs, len(PARAM_NAMES))  # each episode's factors on its member's parameters
        self.member = torch.zeros(cfg.num_envs, dtype=torch.long)
        self.uncertainty = torch.zeros(cfg.num_envs)
        self.extra_force, self.extra_torque = torch.zeros(cfg.num_envs, 3), torch.zeros(cfg.num_envs, 3)
        super().__init__(replace(cfg, device="cpu", compile=False, shift=Shift(), dr=DomainRandomization(enabled=False)))
        self.set_env_steps(reward_env_steps)  # the reward weights where pretraining left them
        self._physics = self._model_step

    def _reset_idx(self, ids: torch.Tensor) -> None:
        n, k = len(ids), self.world_model.k
        pick = torch.randint(len(self.bank), (n,), generator=self.gen)
        member = torch.randint(k, (n,), generator=self.gen)
        self.member[ids] = member
        self.state[ids] = self.bank.state[pick]
        self.target[ids] = self.bank.target[pick]
        self.history[ids] = self.bank.history[pick]
        kick = PERTURBATION
        perturbed = ids[torch.rand(n, generator=self.gen) < self.perturbed_fraction]
        if len(perturbed):  # a real state knocked about as the evaluation's nominal starts are: the physics knows
            m, g = len(perturbed), self.gen  # where it goes, so the policy learns the states the robot rarely visits
            self.state[perturbed, POS] += uniform(-kick.max_pos, kick.max_pos, (m, 3), g, self.device)
            turn = random_quaternions(m, deg(kick.max_tilt_deg), g, self.device)
            self.state[perturbed, QUAT] = quat_multiply(turn, self.state[perturbed, QUAT])
            self.state[perturbed, VEL] += uniform(-kick.max_vel, kick.max_vel, (m, 3), g, self.device)
            self.state[perturbed, OMEGA] += uniform(-kick.max_omega, kick.max_omega, (m, 3), g, self.device)
            if kick.motor_speed is not None:  # and the motors where the evaluation starts them (below hover)
                self.state[perturbed, RPM] = kick.motor_speed
                self.history[perturbed] = 2 * kick.motor_speed - 1
        self.scale[ids] = self.randomization.factors(n, self.gen)
        self.params[ids] = self._member_params[member] * self.scale[ids]
        d = self.cfg.disturbance  # the training's random disturbances on top of the fitted ones: robust, as pretrained
        self.extra_force[ids] = d.force_std * torch.randn(n, 3, generator=self.gen)
        self.extra_torque[ids] = d.torque_std * torch.randn(n, 3, generator=self.gen)
        self.f_dist[ids] = self._member_force[member] + self.extra_force[ids]
        self.t_dist[ids] = self._member_torque[member] + self.extra_torque[ids]
        self.steps[ids] = 0
        self.ep_return[ids] = 0.0

    @torch.no_grad()
    def _model_step(self, s: torch.Tensor, r_sp: torch.Tensor, *_: Any) -> torch.Tensor:
        """Every member's prediction; each env takes its own member's, the spread is the uncertainty."""
        k, n = self.world_model.k, s.shape[0]
        a = 2.0 * r_sp - 1.0
        pred = self.world_model.rollout(s[None].expand(k, n, -1), a[None, :, None].expand(k, n, 1, 4), self.cfg.dt,
                                        (self.extra_force, self.extra_torque), self.scale)  # fmt: skip
        pred = pred[:, :, 0]  # (K, N, 17)
        spread = pred[:, :, TWIST].std(0).norm(dim=-1) if k > 1 else torch.zeros(n)
        if self.world_model.residual is not None:
            spread = spread + self.world_model.residual.disagreement(s, a)
        self.uncertainty = spread
        return pred[self.member, torch.arange(n)]

    def terminated(self, state: torch.Tensor) -> torch.Tensor:
        """The task's box, and the safety limits around home."""
        return super().terminated(state) | (self.limits.margins(state, self.home) < 0)

    def step(self, action: torch.Tensor):
        """The task's step in the model; the reward pays ``penalty`` per unit of model uncertainty (``info``)."""
        obs, reward, terminated, truncated, info = super().step(action)
        info["uncertainty"] = self.uncertainty
        return obs, reward - self.penalty * self.uncertainty, terminated, truncated, info


class HoverImagination:
    """What finetuning needs of the hover task (see the module docstring).

    Args:
        cfg: the task config the policy was trained with (observation layout, reward weights).
        limits: the safety limits.
        home: ``(3,)`` the home set-point the safety box is centred on.
        reward_env_steps: where the reward curriculum stood at the end of pretraining.
        burn_in: steps at the start of each flight that no state is branched from (the motor state settles).
    """

    def __init__(self, cfg: HoverConfig, limits: SafetyLimits, home: torch.Tensor, reward_env_steps: int = 0,
                 burn_in: int = 50, perturbed_fraction: float = 0.5) -> None:  # fmt: skip
        self.perturbed_fraction = perturbed_fraction
        self.cfg, self.limits, self.home = cfg, limits, home.reshape(3).float()
        self.reward_env_steps, self.burn_in = reward_env_steps, burn_in
        self.nominal = MODELS[cfg.model]
        """The world model's prior: the simulator's physical model."""

    def env(self, model: QuadrotorWorldModel, flights: list[Flight], num_envs: int, horizon: int, penalty: float,
            seed: int = 0, perturbed_fraction: float | None = None) -> ImaginedHoverEnv:  # fmt: skip
        """``num_envs`` imagined rollouts of ``horizon`` steps branched from the flights' states.

        A ``perturbed_fraction`` of them is knocked about (default: this imagination's).
        """
        bank = start_bank(flights, model, self.cfg.action_history, self.burn_in)
        cfg = replace(self.cfg, num_envs=num_envs, episode_steps=horizon)
        fraction = self.perturbed_fraction if perturbed_fraction is None else perturbed_fraction
        env = ImaginedHoverEnv(cfg, model, bank, self.limits, self.home, penalty, self.reward_env_steps, fraction)
        env.reset(seed)
        return env

    @torch.no_grad()
    def real_transitions(self, model: QuadrotorWorldModel, flights: list[Flight]) -> dict[str, torch.Tensor]:
        """The flights' steps as replay rows (``obs_actor``/``obs_critic`` = ``policy``/``critic`` groups, ...)."""
        bank = start_bank(flights, model, self.cfg.action_history, self.burn_in)
        env = ImaginedHoverEnv(replace(self.cfg, num_envs=len(bank)), model, bank, self.limits, self.home, 0.0,
                               self.reward_env_steps)  # fmt: skip
        one = model_slice(model)
        env.params[:], (f, t) = one.params().expand(len(bank), -1), one.external()
        env.f_dist[:], env.t_dist[:] = f.expand(len(bank), -1), t.expand(len(bank), -1)
        env.state[:], env.target[:], env.history[:] = bank.state, bank.target, bank.history
        obs = env.observe()
        env.state[:] = bank.next_state
        env.history[:] = torch.cat((bank.history[:, 1:], bank.action[:, None]), 1)
        next_obs = env.observe()
        terminated = env.terminated(bank.next_state)
        reward = env.reward_from_terms(env.reward_terms(bank.next_state, bank.target, bank.action,
                                                        bank.history[:, -1], terminated))  # fmt: skip
        return {"obs_actor": obs["policy"], "obs_critic": obs["critic"], "action": bank.action, "reward": reward,
                "next_obs_actor": next_obs["policy"], "next_obs_critic": next_obs["critic"],
                "terminated": terminated.float()}  # fmt: skip

    def real_error(self, flight: Flight, settle_s: float = 1.0) -> float:
        """Mean position error [m] of a real flight over the steps at least ``settle_s`` after a set-point change."""
        rows = torch.arange(flight.odom.shape[0])
        changed = torch.zeros(len(rows), dtype=torch.bool)
        changed[1:] = (flight.targets[1:] != flight.targets[:-1]).any(-1)  # row i holds a new set-point
        last_change = torch.where(changed, rows, 0).cummax(0).values
        settled = (rows - last_change) * flight.dt >= settle_s - 1e-9
        if not bool(settled.any()):
            settled[:] = True
        err = (flight.odom[:, POS] - flight.targets).norm(dim=-1)
        return float(err[settled].mean())

    def real_margin(self, flight: Flight) -> float:
        """The smallest safety margin of a real flight (< 0: a violation)."""
        return float(self.limits.margins(flight.odom, self.home).min())

    @torch.no_grad()
    def assess(self, policy: PolicyFn, model: QuadrotorWorldModel, flights: list[Flight], episodes: int, seconds: float,
               seed: int = 0, perturbed: bool = False) -> dict[str, float]:  # fmt: skip
        """A deterministic policy flown in every member of the model from real start states (the gate's figures).

        ``perturbed``: every start knocked about (:data:`PERTURBATION`); else the real states as they were.
        Returns ``error_m`` (mean position error over the second half of the rollouts: settled), ``min_margin``
        (smallest safety margin of any member at any step of a rollout that stayed within the limits) and
        ``violations`` (rollouts that crossed one).
        """
        steps = int(round(seconds / self.cfg.dt))
        env = self.env(model, flights, episodes, steps + 1, 0.0, seed, float(perturbed))
        obs, errs, pos_err = env.observe(), [], env.spec.obs_groups["critic"].slice("position_error")
        margin, violated = torch.full((episodes,), math.inf), torch.zeros(episodes, dtype=torch.bool)
        for _ in range(steps):
            a = torch.as_tensor(policy(obs["policy"]), dtype=torch.float32)
            obs, _, terminated, _, info = env.step(a)  # a rollout that crossed a limit ended (and restarted)
            violated |= terminated
            last = info["final_obs"]["critic"]  # the state it arrived in, before any restart
            errs.append(last[:, pos_err].norm(dim=-1))  # noise-free
            margin = torch.where(terminated, margin, torch.minimum(margin, self.limits.margins(env.state, self.home)))
        err = torch.stack(errs)[steps // 2 :]  # (steps / 2, E): the settled second half, as the evaluation measures
        return {"error_m": float(err.mean()), "min_margin": float(margin[~violated].min()) if not bool(violated.all())
                else -1.0, "violations": float(violated.sum())}  # fmt: skip


__all__ = ["HoverImagination", "ImaginedHoverEnv", "StartBank", "start_bank"]
