"""Task ``quadrotor-hover``: hold a position set-point with direct motor-RPM commands (Learning to Fly).

Observation groups (:mod:`sim2real.sim.quadrotor_obs`, Learning to Fly's layout, so policies are interchangeable
with its firmware):

* ``policy`` ``(N, 18 + 4 H)``: position error (world, m) 3 | rotation matrix R, row-major 9 |
  linear velocity (world) 3 | angular velocity (body) 3 | the last ``H`` actions, oldest -> newest, 4 H.
  Gaussian sensor noise on the first 18 entries (:class:`NoiseConfig`); the history is the policy's own output.
* ``critic`` ``(N, 38)``: the same 18 sensed terms without noise | disturbance force (world, N) 3 | disturbance
  torque (body, N m) 3 | motor speeds r in [0, 1] 4 | physical parameters relative to nominal (p / p_nom - 1) 10.

Action ``(N, 4)`` in [-1, 1], rotor order of :mod:`sim2real.sim.quadrotor`, RPM set-point
``(a + 1) / 2 * max_rpm``.

Reward (per step)::

    max(clip_min, const - scale * (w_p |p|^2 + w_l |p| + w_q (1 - q_w^2) + w_v |v|^2 + w_a |a - a_hover|^2
                                   + w_r |a - a_prev|^2 + w_w |omega|^2)) - termination_penalty * terminated

The terms are also reported separately (``info["reward_terms"]``) so replayed transitions are re-weighted
when the curriculum moves the weights.
Termination: any ``|p_i| > box``; truncation after ``episode_steps`` (5 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from sim2real.core.config import read_yaml_mapping
from sim2real.core.obs import HISTORY_TERM, ObsGroup, ObsTerm
from sim2real.sim.pybullet_quadrotor import PyBulletConfig, PyBulletQuadrotors
from sim2real.sim.quadrotor import (
    MODELS,
    OMEGA,
    PARAM_GROUPS,
    PARAM_NAMES,
    POS,
    QUAT,
    RPM,
    STATE_DIM,
    VEL,
    QuadrotorDynamics,
    quat_to_rotmat,
    random_quaternions,
)  # fmt: skip
from sim2real.sim.quadrotor_obs import policy_group, sensor_group
from sim2real.sim.vecenv import EnvConfig, EnvSpec, VecEnv, deg, uniform

REWARD_TERMS = (
    "position", "position_linear", "orientation", "velocity", "action", "action_rate", "angular_velocity", "terminated",
)  # fmt: skip


@dataclass
class InitConfig:
    """Distribution of initial states."""

    origin_fraction: float = 0.1
    """Fraction of episodes that start exactly at the set-point, at rest, level."""
    max_pos: float = 0.2
    """Position error U(-max_pos, max_pos) per axis [m]."""
    max_tilt_deg: float = 90.0
    """Attitude: random axis, angle U(0, max_tilt_deg)."""
    max_vel: float = 1.0
    """Linear velocity U(-max_vel, max_vel) per axis [m/s]."""
    max_omega: float = 1.0
    """Angular velocity U(-max_omega, max_omega) per axis [rad/s]."""
    motor_speed: float | None = 0.5
    """Initial normalised motor speed r; ``None`` starts the motors at the hover speed."""


#: The evaluation start distributions (``sim2real eval``, HIL, the simulated robot).
EVAL_STARTS: dict[str, InitConfig] = {
    "nominal": InitConfig(origin_fraction=0.0, max_pos=0.2, max_tilt_deg=30.0, max_vel=0.5, max_omega=1.0),
    "hard": InitConfig(origin_fraction=0.0, max_pos=0.2, max_tilt_deg=90.0, max_vel=1.0, max_omega=1.0),
}


@dataclass
class NoiseConfig:
    """Standard deviations of the sensor noise on the policy observation."""

    position: float = 0.001
    orientation: float = 0.001
    velocity: float = 0.002
    angular_velocity: float = 0.002


@dataclass
class DisturbanceConfig:
    """Constant per-episode disturbance, N(0, std) per axis (Learning to Fly: ~5 % of the weight)."""

    force_std: float = 0.027 * 9.81 / 20.0
    torque_std: float = 2.65e-5


@dataclass
class DomainRandomization:
    """Per-episode multiplicative factors U(lo, hi) on the nominal parameters."""

    enabled: bool = True
    mass: tuple[float, float] = (0.95, 1.05)
    inertia: tuple[float, float] = (0.9, 1.1)
    thrust: tuple[float, float] = (0.95, 1.05)
    torque_coeff: tuple[float, float] = (0.9, 1.1)
    motor_tau: tuple[float, float] = (0.8, 1.2)

    def factors(self, n: int, gen: torch.Generator, device: torch.device | None = None) -> torch.Tensor:
        """``(n, P)`` factors on parameter rows (:data:`~sim2real.sim.quadrotor.PARAM_NAMES`); ones if disabled."""
        device = device or torch.device("cpu")
        f = torch.ones(n, len(PARAM_NAMES), device=device)
        if self.enabled:
            for name, cols in PARAM_GROUPS.items():  # inertia per axis; the thrust and motors as a whole
                lo, hi = getattr(self, name)
                f[:, cols] = uniform(lo, hi, (n, 3 if name == "inertia" else 1), gen, device)
        return f


@dataclass(frozen=True)
class Shift:
    """How the simulated quadrotor differs from its nominal model, on top of the randomisation.

    Parameter factors, a steady wind and a drag the physics does not model: the stand-in for a real robot
    (``config/shifts/``), or the physics an oracle is trained on.
    """

    mass: float = 1.0
    thrust: float = 1.0
    """Factor on the thrust polynomial (weaker motors < 1)."""
    motor_tau: float = 1.0
    """Factor on the motor time constants (slower motors > 1)."""
    wind: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Constant force on the body (world frame) in units of the nominal weight, added to every episode's disturbance."""
    drag: float = 0.0
    """Linear drag ``F = -drag * m_nominal g * v`` (per m/s, in units of the nominal weight), held over each control
    step from the velocity at its start: a force the simulator's physics does not model, for the learned residual
    of the world model."""

    def __post_init__(self) -> None:
        for name in ("mass", "thrust", "motor_tau"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"shift: {name} must be a positive factor, got {getattr(self, name)}")
        if len(self.wind) != 3 or not all(math.isfinite(w) for w in self.wind) or not self.drag >= 0:
            raise ValueError(f"shift: wind must be 3 finite numbers and drag >= 0, got {self.wind}, {self.drag}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Shift:
        """A shift from a YAML mapping of its fields (``config/shifts/*.yaml``); unknown keys are an error."""
        data = read_yaml_mapping(path, f"shift ({', '.join(f.name for f in fields(cls))})")
        if "wind" in data:
            data["wind"] = tuple(data["wind"])
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"{path}: {e}") from None

    def factors(self) -> dict[str, float]:
        """The parameter factors by group (:data:`~sim2real.sim.quadrotor.PARAM_GROUPS`)."""
        return {"mass": self.mass, "thrust": self.thrust, "motor_tau": self.motor_tau}

    def scale(self, params: torch.Tensor) -> torch.Tensor:
        """Parameter rows ``(N, 10)`` with the factors applied (a copy)."""
        p = params.clone()
        for name, factor in self.factors().items():
            p[:, PARAM_GROUPS[name]] *= factor
        return p


@dataclass
class RewardConfig:
    """Reward weights; the curriculum multiplies ``w_*`` by ``*_growth`` every ``interval`` env steps.

    Learning to Fly's terms and curriculum, with four changes (measured in development, see the README): a linear
    ``|p|`` term (a pull that does not vanish near the set-point: steady errors fell from ~0.25 m to ~0.05 m),
    per-step reward clipped at 0 plus a termination penalty (leaving the box never pays), damping terms on
    action rate and angular velocity (the linear term alone excites a ~1.4 Hz limit cycle), and curriculum
    caps (position 30, action 0.3) beyond which training oscillated.
    """

    scale: float = 0.5
    constant: float = 2.0
    position: float = 5.0
    position_linear: float = 5.0
    """Weight of ``|p|`` (not squared): a constant pull towards the set-point even at small errors."""
    orientation: float = 5.0
    velocity: float = 0.01
    action: float = 0.01
    action_rate: float = 2.0
    """Weight of ``|a_t - a_{t-1}|^2``: smooth motor commands."""
    angular_velocity: float = 0.05
    termination_penalty: float = 50.0
    form: str = "linear"
    """``linear``: ``const - scale * cost``; ``exp``: ``const * exp(-scale * cost / const)``, the same slope at the
    set-point but positive everywhere, so far from it the shaping never flattens out the way a clip does."""
    clip_min: float | None = 0.0
    """Lower bound of the per-step reward before the termination penalty (0: staying alive never scores
    worse than the 0 that follows termination)."""
    curriculum: bool = True
    interval: int = 30_000
    """Env steps (summed over envs) between curriculum stages."""
    position_growth: float = 1.2
    position_max: float = 30.0
    velocity_growth: float = 1.4
    velocity_max: float = 1.0
    action_growth: float = 1.4
    action_max: float = 0.3


ENGINES = ("torch", "pybullet")
"""The physics engines the hover task runs in (:attr:`HoverConfig.engine`)."""


@dataclass
class HoverConfig(EnvConfig):
    """Settings of the hover task."""

    num_envs: int = 256
    device: str = "cpu"
    model: str = "crazyflie-paper"
    """Physical model: ``crazyflie-paper`` (Learning to Fly paper) or ``crazyflie-newer`` (RLtools L2F)."""
    dt: float = 0.01
    episode_steps: int = 500
    action_history: int = 32
    termination_box: float = 0.6
    init: InitConfig = field(default_factory=InitConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    disturbance: DisturbanceConfig = field(default_factory=DisturbanceConfig)
    dr: DomainRandomization = field(default_factory=DomainRandomization)
    reward: RewardConfig = field(default_factory=RewardConfig)
    shift: Shift = Shift()
    """Physics outside the randomisation (default: none): the "real" quadrotor of finetuning, or an oracle's."""
    compile: bool = False
    """Compile the RK4 physics with TorchInductor (worth it from ~256 envs)."""
    engine: str = "torch"
    """Who integrates the rigid body: ``torch`` (our batched RK4) or ``pybullet`` (PyBullet, :attr:`pybullet`)."""
    pybullet: PyBulletConfig = field(default_factory=PyBulletConfig)
    """The PyBullet engine's substeps, worker processes and optional effects (``engine="pybullet"``)."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r} for quadrotor-hover; available: {', '.join(ENGINES)}")

    def for_evaluation(self, num_envs: int) -> HoverConfig:
        """CPU, ``num_envs`` envs, physics not compiled (evaluation and export runs are short)."""
        return replace(self, num_envs=num_envs, device="cpu", compile=False)


def obs_groups(cfg: HoverConfig) -> dict[str, ObsGroup]:
    """The ``policy`` and ``critic`` groups of a hover config (the critic: sensed terms noise-free + privileged)."""
    critic = sensor_group().extended(
        ObsTerm("disturbance_force", 3, "world, N"),
        ObsTerm("disturbance_torque", 3, "body, N m"),
        ObsTerm("motor_speed", 4, "normalised RPM"),
        ObsTerm("physical_params", len(PARAM_NAMES), "p / p_nominal - 1: " + ",".join(PARAM_NAMES)),
    )
    return {"policy": policy_group(cfg.action_history, **asdict(cfg.noise)), "critic": critic}


class QuadrotorHoverEnv(VecEnv):
    """Batched hover task over :class:`~sim2real.sim.quadrotor.QuadrotorDynamics`."""

    reward_term_names = REWARD_TERMS
    cfg: HoverConfig

    def __init__(self, cfg: HoverConfig | None = None, **overrides: Any) -> None:
        cfg = replace(cfg or HoverConfig(), **overrides)
        if cfg.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {cfg.num_envs}")
        if cfg.model not in MODELS:
            raise KeyError(f"unknown quadrotor model {cfg.model!r}; available: {', '.join(MODELS)}")
        if cfg.reward.form not in ("linear", "exp"):
            raise ValueError(f"reward.form must be 'linear' or 'exp', got {cfg.reward.form!r}")
        if cfg.action_history < 1:
            raise ValueError("action_history must be >= 1")
        self.cfg = cfg
        self.num_envs = n = cfg.num_envs
        self.device = dev = torch.device(cfg.device)
        self.model = MODELS[cfg.model]
        self.dyn = QuadrotorDynamics(self.model, dev)
        self._engine: PyBulletQuadrotors | None = None
        if cfg.engine == "pybullet":
            self._physics = self._engine = PyBulletQuadrotors(self.model, n, cfg.dt, cfg.pybullet)
        else:
            self._physics = torch.compile(self.dyn.rk4_step, dynamic=False) if cfg.compile else self.dyn.rk4_step
        self.hover_action = self.model.hover_action()
        self.nominal_params = torch.tensor(self.model.param_vector(), device=dev)
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(0)
        h = cfg.action_history
        self.state = torch.zeros(n, STATE_DIM, device=dev)
        self.params = self.nominal_params.repeat(n, 1)
        self.f_dist = torch.zeros(n, 3, device=dev)
        self.t_dist = torch.zeros(n, 3, device=dev)
        self.history = torch.zeros(n, h, 4, device=dev)
        self.target = torch.zeros(n, 3, device=dev)
        self.steps = torch.zeros(n, dtype=torch.long, device=dev)
        self.ep_return = torch.zeros(n, device=dev)
        self.env_steps = 0
        groups = obs_groups(cfg)
        self._sensors = sensor_group(**asdict(cfg.noise))  # the sensed terms of the policy group (noisy)
        self._noise_std = torch.tensor(self._sensors.noise_std(), device=dev)  # (18,)
        self._stage: int | None = None  # curriculum stage whose weights are in self._weights
        self.set_env_steps(0)
        self.spec = EnvSpec(
            task="quadrotor-hover",
            obs_groups=groups,
            action_dim=4,
            action_meaning={
                "type": "motor_rpm",
                "mapping": "rpm = (action + 1) / 2 * max_rpm",
                "min_rpm": 0.0,
                "max_rpm": self.model.max_rpm,
                "rotor_order": ["front_right(+x,-y)", "back_right(-x,-y)", "back_left(-x,+y)", "front_left(+x,+y)"],
                "yaw_dirs": list(self.model.rotor_dirs),
                "hover_action": self.hover_action,
                "frame": "body FLU, world z-up",
            },
            control_dt=cfg.dt,
            max_episode_steps=cfg.episode_steps,
            robot={"model": self.model.name, **dict(zip(PARAM_NAMES, self.model.param_vector()))},
        )
        self.reset(0)

    # ------------------------------------------------------------------------------------------ curriculum
    def set_env_steps(self, env_steps: int) -> None:
        """Move the reward curriculum to the stage of ``env_steps`` total env steps (deterministic)."""
        r = self.cfg.reward
        self.env_steps = int(env_steps)
        k = self.env_steps // r.interval if r.curriculum else 0
        if k == self._stage:
            return
        self._stage = k
        w_p = min(r.position * r.position_growth**k, max(r.position_max, r.position))
        w_v = min(r.velocity * r.velocity_growth**k, max(r.velocity_max, r.velocity))
        w_a = min(r.action * r.action_growth**k, max(r.action_max, r.action))
        self._weights = torch.tensor(
            [w_p, r.position_linear, r.orientation, w_v, w_a, r.action_rate, r.angular_velocity], device=self.device
        )

    @property
    def reward_weights(self) -> dict[str, float]:
        return dict(zip(REWARD_TERMS[:-1], self._weights.tolist()))

    def reward_from_terms(self, terms: torch.Tensor) -> torch.Tensor:
        r = self.cfg.reward
        cost = terms[:, :-1] @ self._weights
        if r.form == "exp":
            reward = r.constant * torch.exp(-r.scale * cost / r.constant)
        else:
            reward = r.constant - r.scale * cost
        if r.clip_min is not None:
            reward = reward.clamp_min(r.clip_min)
        return reward - r.termination_penalty * terms[:, -1]

    # ------------------------------------------------------------------------------------------ state access
    def get_state(self) -> torch.Tensor:
        """Packed state ``(N, 17)`` (copy), sliced by :mod:`~sim2real.sim.quadrotor`'s ``POS``, ``QUAT``, ``VEL``, ... ."""
        return self.state.clone()

    def set_state(self, state: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        """Overwrite the state of all envs or of ``env_ids``; the action history is refilled from the motors."""
        ids = torch.arange(self.num_envs, device=self.device) if env_ids is None else env_ids
        if state.shape != (len(ids), STATE_DIM):
            raise ValueError(f"state must be ({len(ids)}, {STATE_DIM}), got {tuple(state.shape)}")
        self.state[ids] = state.to(self.device, torch.float32)
        self.history[ids] = (2 * self.state[ids, RPM] - 1).unsqueeze(1).expand(-1, self.cfg.action_history, -1)

    def get_params(self) -> torch.Tensor:
        """Per-env physical parameters ``(N, 10)`` (copy), columns :data:`~sim2real.sim.quadrotor.PARAM_NAMES`."""
        return self.params.clone()

    def set_params(self, params: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        ids = torch.arange(self.num_envs, device=self.device) if env_ids is None else env_ids
        if params.shape != (len(ids), len(PARAM_NAMES)):
            raise ValueError(f"params must be ({len(ids)}, {len(PARAM_NAMES)}), got {tuple(params.shape)}")
        if not (torch.isfinite(params).all() and (params[:, [0, 1, 2, 3, 8, 9]] > 0).all()):
            raise ValueError("params must be finite, with positive mass, inertia and motor time constants")
        self.params[ids] = params.to(self.device, torch.float32)

    def set_disturbance(self, force: torch.Tensor, torque: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        ids = torch.arange(self.num_envs, device=self.device) if env_ids is None else env_ids
        self.f_dist[ids], self.t_dist[ids] = force.to(self.device), torque.to(self.device)

    def simulate(self, state: torch.Tensor, rpm_setpoint: torch.Tensor) -> torch.Tensor:
        """Pure step: next state ``(N, 17)`` from ``state`` and normalised RPM set-points ``(N, 4)``.

        Uses this env's per-env parameters and disturbances; the env's own state is untouched. Always the torch
        model (the one system identification and the world model differentiate), whatever :attr:`HoverConfig.engine`.
        """
        return self.dyn.rk4_step(state, rpm_setpoint, self.params, self.f_dist, self.t_dist, self.cfg.dt)

    def state_dict(self) -> dict[str, Any]:
        """Everything that evolves during a run (for exact resume)."""
        keys = ("state", "params", "f_dist", "t_dist", "history", "target", "steps", "ep_return")
        return {**{k: getattr(self, k).clone() for k in keys}, "gen": self.gen.get_state(), "env_steps": self.env_steps}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if k == "gen":
                self.gen.set_state(v)
            elif k == "env_steps":
                self.set_env_steps(int(v))
            else:
                if getattr(self, k).shape != v.shape:
                    raise ValueError(f"env state {k!r}: expected {tuple(getattr(self, k).shape)}, got {tuple(v.shape)}")
                getattr(self, k).copy_(v)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # ------------------------------------------------------------------------------------------ reset
    def _reset_idx(self, ids: torch.Tensor) -> None:
        cfg, n, g, dev = self.cfg, len(ids), self.gen, self.device
        ini = cfg.init
        s = torch.zeros(n, STATE_DIM, device=dev)
        s[:, POS] = uniform(-ini.max_pos, ini.max_pos, (n, 3), g, dev)
        s[:, QUAT] = random_quaternions(n, deg(ini.max_tilt_deg), g, dev)
        s[:, VEL] = uniform(-ini.max_vel, ini.max_vel, (n, 3), g, dev)
        s[:, OMEGA] = uniform(-ini.max_omega, ini.max_omega, (n, 3), g, dev)
        at_origin = torch.rand(n, generator=g, device=dev) < ini.origin_fraction
        s[at_origin, : OMEGA.stop] = torch.tensor([0.0] * 3 + [1.0, 0.0, 0.0, 0.0] + [0.0] * 6, device=dev)
        # Domain randomisation: multiplicative factors on the nominal parameters.
        self.params[ids] = cfg.shift.scale(self.nominal_params.repeat(n, 1) * cfg.dr.factors(n, g, dev))
        r0 = self.model.hover_speed() if ini.motor_speed is None else ini.motor_speed
        s[:, RPM] = r0
        self.state[ids] = s
        self.history[ids] = 2 * r0 - 1
        d = cfg.disturbance
        wind = torch.tensor(cfg.shift.wind, device=dev) * self.model.mass * self.model.gravity
        self.f_dist[ids] = d.force_std * torch.randn(n, 3, generator=g, device=dev) + wind
        self.t_dist[ids] = d.torque_std * torch.randn(n, 3, generator=g, device=dev)
        self.steps[ids] = 0
        self.ep_return[ids] = 0.0

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Reset every env (re-seeding the env's generator when ``seed`` is given); returns the observation."""
        if seed is not None:
            self.gen.manual_seed(int(seed))
        self._reset_idx(torch.arange(self.num_envs, device=self.device))
        return self.observe()

    # ------------------------------------------------------------------------------------------ observation
    def observe(self, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Observation groups of the current state; ``noise`` ``(N, 18)`` unit Gaussians (drawn if None)."""
        s, groups = self.state, self.spec.obs_groups
        sensed = {
            "position_error": s[:, POS] - self.target, "rotation_matrix": quat_to_rotmat(s[:, QUAT]).reshape(-1, 9),
            "linear_velocity": s[:, VEL], "angular_velocity": s[:, OMEGA],
        }  # fmt: skip
        if noise is None:
            noise = torch.randn(self.num_envs, len(self._noise_std), generator=self.gen, device=self.device)
        noisy = self._sensors.concat(**sensed) + noise * self._noise_std  # (N, 18)
        policy = groups["policy"].concat(**{t: noisy[:, self._sensors.slice(t)] for t in sensed}, **{HISTORY_TERM: self.history})
        rel_params = self.params / self.nominal_params - 1.0
        rel_params = torch.nan_to_num(rel_params, 0.0)  # thrust_c0/c1 are 0 for the paper model
        critic = groups["critic"].concat(**sensed, disturbance_force=self.f_dist, disturbance_torque=self.t_dist,
                                         motor_speed=s[:, RPM], physical_params=rel_params)  # fmt: skip
        return {"policy": policy, "critic": critic}

    # ------------------------------------------------------------------------------------------ step
    def terminated(self, state: torch.Tensor) -> torch.Tensor:
        """Which envs ``(N,)`` end in ``state`` ``(N, 17)``: any ``|p_i - target_i| > termination_box``."""
        return ((state[:, POS] - self.target).abs() > self.cfg.termination_box).any(-1)

    def reward_terms(self, state: torch.Tensor, target: torch.Tensor, action: torch.Tensor, prev_action: torch.Tensor,
                     terminated: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The reward terms ``(N, 8)`` (:data:`REWARD_TERMS`) of arriving in ``state`` ``(N, 17)``.

        ``target`` ``(N, 3)`` is the set-point, ``action`` ``(N, 4)`` the step's action, ``prev_action`` the one before.
        """
        pos = state[:, POS] - target
        return torch.stack(
            (
                pos.square().sum(-1),
                pos.norm(dim=-1),
                1.0 - state[:, QUAT.start].square(),  # 1 - q_w^2
                state[:, VEL].square().sum(-1),
                (action - self.hover_action).square().sum(-1),
                (action - prev_action).square().sum(-1),
                state[:, OMEGA].square().sum(-1),
                terminated.float(),
            ),
            -1,
        )

    def step(self, action: torch.Tensor):
        """Advance every env by one control period ``dt``.

        Args:
            action: ``(N, 4)`` float in [-1, 1] (clipped), rotor order of the module docstring.

        Returns:
            ``obs`` (dict of ``(N, ·)``), ``reward`` ``(N,)``, ``terminated`` ``(N,)`` bool,
            ``truncated`` ``(N,)`` bool, ``info`` with ``final_obs``, ``reward_terms`` ``(N, 8)`` and, for
            envs that ended, ``episode`` = {``return``, ``length``} tensors.
        """
        a = self.check_action(action).clamp(-1.0, 1.0)
        f_dist = self.f_dist
        if self.cfg.shift.drag:  # held over the control step, from the velocity at its start
            f_dist = f_dist - self.cfg.shift.drag * self.model.mass * self.model.gravity * self.state[:, VEL]
        self.state = self._physics(self.state, (a + 1.0) * 0.5, self.params, f_dist, self.t_dist, self.cfg.dt)
        prev_action = self.history[:, -1]
        self.history = torch.cat((self.history[:, 1:], a.unsqueeze(1)), 1)
        self.steps += 1
        finite = torch.isfinite(self.state).all(-1)
        terminated = self.terminated(self.state) | ~finite
        truncated = (self.steps >= self.cfg.episode_steps) & ~terminated
        if not bool(finite.all()):  # a diverged env is ended and its state zeroed so no NaN leaks out
            self.state[~finite] = torch.nan_to_num(self.state[~finite], 0.0, 0.0, 0.0)
        terms = self.reward_terms(self.state, self.target, a, prev_action, terminated)
        reward = self.reward_from_terms(terms)
        self.ep_return += reward
        noise = torch.randn(self.num_envs, len(self._noise_std), generator=self.gen, device=self.device)
        obs = self.observe(noise)
        done = terminated | truncated
        info: dict[str, Any] = {"reward_terms": terms, "final_obs": obs}
        if bool(done.any()):
            ids = done.nonzero().flatten()
            info["final_obs"] = {k: v.clone() for k, v in obs.items()}
            info["episode"] = {"return": self.ep_return[ids].clone(), "length": self.steps[ids].clone()}
            self._reset_idx(ids)
            obs = self.observe(noise)
        return obs, reward, terminated, truncated, info


def hover_eval_config(start: str, num_envs: int, base: HoverConfig | None = None) -> HoverConfig:
    """Config for evaluation from the ``nominal`` or ``hard`` start distribution (nominal physics)."""
    if start not in EVAL_STARTS:
        raise KeyError(f"unknown start distribution {start!r}; available: {', '.join(EVAL_STARTS)}")
    base = base or HoverConfig()
    return replace(
        base, num_envs=num_envs, init=EVAL_STARTS[start], dr=replace(base.dr, enabled=False),
        reward=replace(base.reward, curriculum=False),
    )  # fmt: skip


__all__ = [
    "HoverConfig",
    "Shift",
    "QuadrotorHoverEnv",
    "obs_groups",
    "hover_eval_config",
    "EVAL_STARTS",
]
