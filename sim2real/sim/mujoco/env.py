"""Batched MuJoCo backend behind the :class:`~sim2real.sim.vecenv.VecEnv` contract (CPU).

One ``mujoco.MjModel`` is compiled from an MJCF file and ``num_envs`` ``MjData`` are stepped with
``mujoco.mj_step`` (``frame_skip`` substeps per control step) followed by ``mj_rnePostConstraint`` (so
``cfrc_ext`` and the other force quantities are current, as in Gymnasium's MuJoCo envs). The envs are split
into ``num_threads`` contiguous slices, each stepped by one worker thread; ``mj_step`` releases the GIL, so
the slices run on separate cores. (``mujoco.rollout`` was measured as well, but it only returns
qpos/qvel/sensordata, while Ant and Humanoid observe ``cfrc_ext``/``cinert``/``cvel``/``qfrc_actuator``
that need the ``MjData`` after each step; see the task module for figures.)

Subclasses (tasks) define the observation and reward through three hooks:

* :meth:`MujocoVecEnv._position` ``(model, data) -> (2,)``: the xy position whose finite difference over the
  control step is the forward velocity (read before and after each step).
* :meth:`MujocoVecEnv._measure` ``(model, data, obs_row, aux_row)``: writes the float64 observation row and the
  task's auxiliary scalars (e.g. a contact cost) of one env.
* :meth:`MujocoVecEnv._reward_done` (vectorised, float64 torch): reward and ``terminated`` of the batch.

Domain randomization (off by default, :class:`MujocoDRConfig`): the ``MjModel`` is shared by all envs when DR
is off. When it is on, every env gets its own copy of the model (a few tens of kB each), and at every
reset of that env its body masses (and inertias, i.e. a uniform density change), geom friction, dof damping
and actuator gains are set to ``nominal * U(lo, hi)`` drawn per env. Random pushes are forces
``N(0, push_force_std)`` per axis on the root body (``xfrc_applied``), started with probability
``push_prob`` per control step and held for ``push_steps`` control steps.

``MujocoEnvConfig.backend = "warp"`` runs the same tasks on mujoco_warp, every env in one batched (GPU) simulation:
:mod:`sim2real.sim.mujoco.warp`; :func:`sim2real.sim.mujoco.make_env` builds a task on the backend its config names.
The ``mujoco`` module is imported when the first env is built (:func:`require_mujoco`), so registering a MuJoCo
task loads no physics engine.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np
import torch

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.sim.vecenv import EnvConfig, EnvSpec, VecEnv

MjModel = Any
"""``mujoco.MjModel`` in annotations (the compiled module ships no type information)."""
MjData = Any
"""``mujoco.MjData`` in annotations."""


def require_mujoco() -> ModuleType:
    """The ``mujoco`` module, imported on first use; ImportError with the install command when it is missing."""
    try:
        import mujoco
    except ImportError as e:  # optional dependency: ``pip install sim2real[mujoco]``
        raise ImportError(f"the MuJoCo backend needs the mujoco package ({e}): pip install 'sim2real[mujoco]'") from e
    return mujoco


@dataclass
class MujocoDRConfig:
    """Domain randomization: per-env multiplicative factors ``U(lo, hi)`` drawn at each reset, and pushes."""

    enabled: bool = False
    mass_scale: tuple[float, float] = (0.8, 1.2)
    """Body mass and inertia factor (one factor per body)."""
    friction_scale: tuple[float, float] = (0.7, 1.3)
    """Geom friction factor (one factor per env, all geoms and friction coefficients)."""
    damping_scale: tuple[float, float] = (0.8, 1.2)
    """Dof damping factor (one per dof)."""
    gain_scale: tuple[float, float] = (0.9, 1.1)
    """Actuator gain factor on ``actuator_gainprm[:, 0]`` (one per actuator; a pure gain for motors)."""
    push_prob: float = 0.0
    """Probability per control step that a push starts on the root body (0: no pushes)."""
    push_force_std: float = 50.0
    """Push force std per axis [N]."""
    push_steps: int = 5
    """Duration of a push in control steps."""


ENGINES = ("mujoco", "pybullet")
"""The physics engines the MuJoCo tasks run in (:attr:`MujocoEnvConfig.engine`)."""


@dataclass
class MujocoEnvConfig(EnvConfig):
    """Settings shared by every MuJoCo task."""

    num_envs: int = 16
    device: str = "cpu"
    num_threads: int = 2
    """Worker threads stepping the env slices (1: step in the calling thread)."""
    episode_steps: int = 1000
    """Time limit in control steps (truncation)."""
    frame_skip: int | None = None
    """MuJoCo substeps per control step; ``None``: the task's default (Gymnasium v5's)."""
    reset_noise_scale: float | None = None
    """``None``: the task's default (Gymnasium v5's)."""
    dr: MujocoDRConfig = field(default_factory=MujocoDRConfig)
    backend: str = "cpu"
    """``"cpu"``: MuJoCo, one ``MjData`` per env in worker threads. ``"warp"``: mujoco_warp, every env in one batched
    simulation on ``device`` (``"cuda"``; ``"cpu"`` runs Warp's CPU backend), see :mod:`sim2real.sim.mujoco.warp`."""
    engine: str = "mujoco"
    """The physics engine: ``"mujoco"`` (on :attr:`backend`) or ``"pybullet"`` (PyBullet integrates the same MJCF
    robot, :mod:`sim2real.sim.pybullet_mjcf`: HalfCheetah and Hopper)."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r} for the MuJoCo tasks; available: {', '.join(ENGINES)}")
        if self.engine == "pybullet" and self.backend != "cpu":
            raise ValueError(f"engine 'pybullet' runs on the CPU; backend {self.backend!r} is MuJoCo's")


class MujocoVecEnv(VecEnv):
    """Batched MuJoCo envs; subclasses set ``xml_path``, ``default_frame_skip`` and implement the hooks.

    Tensors returned are float32 on CPU with leading dimension ``N = num_envs``.
    """

    cfg: MujocoEnvConfig
    xml_path: str = ""
    task_name: str = "mujoco"
    default_frame_skip: int = 5
    default_reset_noise: float = 0.1
    aux_dim: int = 0
    """Width of the per-env auxiliary row written by :meth:`_measure`."""
    warp_backend: bool = False
    """True for the mujoco_warp classes (:func:`sim2real.sim.mujoco.warp.warp_task_class`)."""

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides: Any) -> None:
        mujoco = require_mujoco()
        cfg = replace(cfg or MujocoEnvConfig(), **overrides)  # TypeError on an unknown setting
        if cfg.num_envs < 1 or cfg.num_threads < 1 or cfg.episode_steps < 1:
            raise ValueError("num_envs, num_threads and episode_steps must be >= 1")
        if cfg.backend not in ("cpu", "warp"):
            raise ValueError(f"backend must be 'cpu' or 'warp', got {cfg.backend!r}")
        if (cfg.backend == "warp") != self.warp_backend:
            raise ValueError(f"{type(self).__name__} runs backend {'warp' if self.warp_backend else 'cpu'}, the config "
                             f"asks for {cfg.backend!r}: build it with sim2real.sim.mujoco.make_env (or make(task, ...))")
        self.cfg = cfg
        self.num_envs = cfg.num_envs
        self.device = torch.device(cfg.device)
        self.frame_skip = cfg.frame_skip or self.default_frame_skip
        self.reset_noise = self.default_reset_noise if cfg.reset_noise_scale is None else cfg.reset_noise_scale
        self.model = mujoco.MjModel.from_xml_path(self.xml_path)
        self._edit_model(self.model)
        m = self.model
        n = self.num_envs
        self._make_datas()
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.dt = float(m.opt.timestep) * self.frame_skip
        self.init_qpos = self.datas[0].qpos.copy()  # model keyframe-free default pose (qpos0)
        self.init_qvel = self.datas[0].qvel.copy()
        self._nominal = {k: getattr(m, k).copy() for k in ("body_mass", "body_inertia", "geom_friction",
                                                             "dof_damping", "actuator_gainprm")}  # fmt: skip
        self.root_body = 1
        rng = m.actuator_ctrlrange.copy()
        limited = m.actuator_ctrllimited.astype(bool)
        rng[~limited] = (-np.inf, np.inf)
        self._ctrlrange = rng
        self.act_low = torch.as_tensor(rng[:, 0], dtype=torch.float32)
        self.act_high = torch.as_tensor(rng[:, 1], dtype=torch.float32)
        self.obs_dim = self._obs_dim()
        self._obs = np.zeros((n, self.obs_dim))
        self._aux = np.zeros((n, max(self.aux_dim, 1)))
        self._pos_before = np.zeros((n, 2))
        self._pos_after = np.zeros((n, 2))
        self._ctrl = np.zeros((n, self.nu))
        self._push = np.zeros((n, 6))
        self._push_left = torch.zeros(n, dtype=torch.long)
        self.steps = torch.zeros(n, dtype=torch.long)
        self.ep_return = torch.zeros(n, dtype=torch.float64)
        self.gen = torch.Generator().manual_seed(0)
        nt = min(cfg.num_threads, n)
        bounds = np.linspace(0, n, nt + 1).astype(int)
        self._slices = [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self._pool = ThreadPoolExecutor(nt, thread_name_prefix="mujoco") if nt > 1 else None
        self.spec = self._make_spec()

    # ------------------------------------------------------------------------------------------ task hooks
    def _edit_model(self, model: MjModel) -> None:
        """Modify the compiled model in place before it is copied per env and its nominal values are read.

        Default: nothing (the MJCF as written). A task can e.g. turn motors into position servos here.
        """

    def _make_datas(self) -> None:
        """Create ``self.models`` (a copy per env under DR, else the shared model) and one ``MjData`` per env."""
        mujoco = require_mujoco()
        m, n = self.model, self.num_envs
        self.models = [copy.deepcopy(m) for _ in range(n)] if self.cfg.dr.enabled else [m] * n
        self.datas = [mujoco.MjData(mi) for mi in self.models]

    def _obs_dim(self) -> int:
        raise NotImplementedError

    def _position(self, model: MjModel, data: MjData) -> np.ndarray:
        """The xy position ``(2,)`` used for the forward velocity (default: generalized coordinates 0, 1)."""
        return data.qpos[:2]

    def _measure(self, model: MjModel, data: MjData, obs: np.ndarray, aux: np.ndarray) -> None:
        """Write one env's observation ``(obs_dim,)`` and auxiliary scalars ``(aux_dim,)`` (float64, in place)."""
        raise NotImplementedError

    def _reward_done(
        self, obs: torch.Tensor, aux: torch.Tensor, velocity: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward ``(N,)`` float64 and terminated ``(N,)`` bool of the batch.

        Computed from the float64 ``obs`` ``(N, D)``, ``aux`` ``(N, A)``, xy ``velocity`` ``(N, 2)`` and the applied
        (clipped) ``action`` ``(N, nu)``.
        """
        raise NotImplementedError

    def _make_spec(self) -> EnvSpec:
        group = ObsGroup.of(ObsTerm("state", self.obs_dim, "gymnasium-v5"))
        return EnvSpec(
            task=self.task_name,
            obs_groups={"policy": group, "critic": group},
            action_dim=self.nu,
            action_meaning={"type": "actuator ctrl", "names": [self.model.actuator(i).name for i in range(self.nu)]},
            control_dt=self.dt,
            max_episode_steps=self.cfg.episode_steps,
            action_low=float(self._ctrlrange[:, 0].min()),
            action_high=float(self._ctrlrange[:, 1].max()),
            robot={"xml": self.xml_path, "frame_skip": self.frame_skip, "timestep": float(self.model.opt.timestep)},
        )

    # ------------------------------------------------------------------------------------------ state
    def get_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(qpos (N, nq), qvel (N, nv))`` float64 copies of every env's state."""
        qpos = torch.as_tensor(np.stack([d.qpos for d in self.datas]))
        qvel = torch.as_tensor(np.stack([d.qvel for d in self.datas]))
        return qpos, qvel

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        """Set ``qpos`` ``(K, nq)`` / ``qvel`` ``(K, nv)`` of envs ``env_ids`` (all when None).

        Like Gymnasium's reset, the rest of ``MjData`` (controls, warm start, applied forces) is cleared
        first and ``mj_forward`` recomputes the derived quantities; the observation is refreshed.
        """
        mujoco = require_mujoco()
        ids = self._ids(env_ids)
        qp, qv = self._state_rows(qpos, qvel, len(ids))
        for k, i in enumerate(ids):
            m, d = self.models[i], self.datas[i]
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qp[k]
            d.qvel[:] = qv[k]
            mujoco.mj_forward(m, d)
            self._measure(m, d, self._obs[i], self._aux[i])

    def _state_rows(self, qpos: torch.Tensor, qvel: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``qpos`` / ``qvel`` as float64 arrays ``(k, nq)`` / ``(k, nv)``; ValueError on NaN/Inf."""
        qp = np.asarray(torch.as_tensor(qpos, dtype=torch.float64).cpu()).reshape(k, self.nq)
        qv = np.asarray(torch.as_tensor(qvel, dtype=torch.float64).cpu()).reshape(k, self.nv)
        if not (np.isfinite(qp).all() and np.isfinite(qv).all()):
            raise ValueError("set_state: qpos/qvel contain NaN/Inf")
        return qp, qv

    def get_params(self) -> dict[str, torch.Tensor]:
        """Per-env physical parameters (float64 copies).

        ``body_mass`` ``(N, nbody)``, ``geom_friction`` ``(N, ngeom, 3)``, ``dof_damping`` ``(N, nv)``,
        ``actuator_gain`` ``(N, nu)``.
        """
        return {
            "body_mass": torch.as_tensor(np.stack([m.body_mass for m in self.models])),
            "geom_friction": torch.as_tensor(np.stack([m.geom_friction for m in self.models])),
            "dof_damping": torch.as_tensor(np.stack([m.dof_damping for m in self.models])),
            "actuator_gain": torch.as_tensor(np.stack([m.actuator_gainprm[:, 0] for m in self.models])),
        }

    def _ids(self, env_ids: torch.Tensor | None) -> list[int]:
        return list(range(self.num_envs)) if env_ids is None else [int(i) for i in torch.as_tensor(env_ids).flatten()]

    # ------------------------------------------------------------------------------------------ reset
    def _uniform(self, lo_hi: tuple[float, float], size: int) -> np.ndarray:
        lo, hi = lo_hi
        return (lo + (hi - lo) * torch.rand(size, generator=self.gen, dtype=torch.float64)).numpy()

    def _randomize(self, i: int) -> None:
        """Draw env ``i``'s physical parameters (its own model copy; DR enabled only)."""
        mujoco = require_mujoco()
        dr, m, nom = self.cfg.dr, self.models[i], self._nominal
        s = self._uniform(dr.mass_scale, m.nbody)
        m.body_mass[:] = nom["body_mass"] * s
        m.body_inertia[:] = nom["body_inertia"] * s[:, None]
        m.geom_friction[:] = nom["geom_friction"] * self._uniform(dr.friction_scale, 1)[0]
        m.dof_damping[:] = nom["dof_damping"] * self._uniform(dr.damping_scale, m.nv)
        m.actuator_gainprm[:, 0] = nom["actuator_gainprm"][:, 0] * self._uniform(dr.gain_scale, m.nu)
        mujoco.mj_setConst(m, self.datas[i])

    def _reset_idx(self, ids: list[int]) -> None:
        """Reset envs ``ids``: qpos0 + U(-s, s), qvel0 + the task's velocity noise (Gymnasium v5's)."""
        if not ids:
            return
        k, s = len(ids), self.reset_noise
        qpos = (
            torch.as_tensor(self.init_qpos)
            + (2.0 * torch.rand(k, self.nq, generator=self.gen, dtype=torch.float64) - 1.0) * s
        )
        qvel = torch.as_tensor(self.init_qvel) + self._velocity_noise(k)
        if self.cfg.dr.enabled:
            for i in ids:
                self._randomize(i)
        self.set_state(qpos, qvel, torch.as_tensor(ids))
        self.steps[ids] = 0
        self.ep_return[ids] = 0.0
        self._push[ids] = 0.0
        self._push_left[ids] = 0

    def _velocity_noise(self, k: int) -> torch.Tensor:
        """Initial-velocity noise ``(k, nv)`` (default: uniform like the positions)."""
        return (2.0 * torch.rand(k, self.nv, generator=self.gen, dtype=torch.float64) - 1.0) * self.reset_noise

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Reset every env (re-seeding the env's generator when ``seed`` is given); returns the observation."""
        if seed is not None:
            self.gen.manual_seed(int(seed))
        self._reset_idx(list(range(self.num_envs)))
        return self.observe()

    def observe(self) -> dict[str, torch.Tensor]:
        """``{"policy": (N, D), "critic": (N, D)}`` float32 from the last measured state."""
        obs = torch.as_tensor(self._obs, dtype=torch.float32).to(self.device)
        return {"policy": obs, "critic": obs.clone()}

    # ------------------------------------------------------------------------------------------ step
    def _step_slice(self, envs: range) -> None:
        mujoco = require_mujoco()
        root, fs = self.root_body, self.frame_skip
        for i in envs:
            m, d = self.models[i], self.datas[i]
            self._pos_before[i] = self._position(m, d)
            d.ctrl[:] = self._ctrl[i]
            d.xfrc_applied[root] = self._push[i]
            mujoco.mj_step(m, d, nstep=fs)
            mujoco.mj_rnePostConstraint(m, d)
            self._pos_after[i] = self._position(m, d)
            self._measure(m, d, self._obs[i], self._aux[i])

    def _update_pushes(self) -> None:
        dr = self.cfg.dr
        if not (dr.enabled and dr.push_prob > 0.0):
            return
        self._push_left = (self._push_left - 1).clamp(min=0)
        self._push[(self._push_left == 0).numpy()] = 0.0
        start = (torch.rand(self.num_envs, generator=self.gen) < dr.push_prob) & (self._push_left == 0)
        if bool(start.any()):
            ids = start.nonzero().flatten()
            force = torch.randn(len(ids), 3, generator=self.gen, dtype=torch.float64) * dr.push_force_std
            self._push[ids.numpy(), :3] = force.numpy()
            self._push_left[ids] = dr.push_steps

    def step(self, action: torch.Tensor):
        """Advance every env by one control period ``dt = frame_skip * timestep``.

        Args:
            action: ``(N, nu)`` float, clipped to the actuator ``ctrlrange``.

        Returns:
            ``obs`` (``policy``/``critic`` ``(N, D)`` float32), ``reward`` ``(N,)`` float32, ``terminated`` /
            ``truncated`` ``(N,)`` bool, ``info`` with ``final_obs`` and, for envs that ended, ``episode`` =
            {``return``, ``length``}.
        """
        a = torch.clamp(self.check_action(action).cpu(), self.act_low, self.act_high)
        self._ctrl[:] = a.numpy()
        self._update_pushes()
        if self._pool is None:
            for sl in self._slices:
                self._step_slice(sl)
        else:
            for f in [self._pool.submit(self._step_slice, sl) for sl in self._slices]:
                f.result()
        obs64 = torch.as_tensor(self._obs)
        vel = torch.as_tensor((self._pos_after - self._pos_before) / self.dt)
        reward64, terminated = self._reward_done(obs64, torch.as_tensor(self._aux), vel, a.double())
        return self._finish_step(reward64, terminated)

    def _finish_step(self, reward64: torch.Tensor, terminated: torch.Tensor):
        """Episode bookkeeping after the physics (both backends): counters, time limit, same-step auto-reset.

        ``reward64`` ``(N,)`` float64 and ``terminated`` ``(N,)`` bool on the device of ``self.steps``.
        """
        self.steps += 1
        self.ep_return += reward64
        truncated = (self.steps >= self.cfg.episode_steps) & ~terminated
        obs = self.observe()
        done = terminated | truncated
        info: dict[str, Any] = {"final_obs": obs}
        if bool(done.any()):
            ids = done.nonzero().flatten()
            info["final_obs"] = {k: v.clone() for k, v in obs.items()}
            info["episode"] = {"return": self.ep_return[ids].float(), "length": self.steps[ids].clone()}
            self._reset_idx(ids.tolist())
            obs = self.observe()
        dev = self.device
        return obs, reward64.float().to(dev), terminated.to(dev), truncated.to(dev), info

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
