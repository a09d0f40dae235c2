"""MuJoCo backend on ``mujoco_warp`` (MJWarp): all ``num_envs`` worlds in one batched GPU (or Warp-CPU) simulation.

Selected with ``MujocoEnvConfig.backend = "warp"`` (``make("mujoco-ant", backend="warp", device="cuda")``):
:func:`sim2real.sim.mujoco.make_env` then builds the task class mixed with :class:`MujocoWarpVecEnv`
(:func:`warp_task_class`), so a task keeps its reward, termination, reset noise and spec, and only adds two
vectorized torch hooks that replace the per-env numpy ones:

* ``_measure_batch(b: WarpBatch) -> (obs (N, D), aux (N, A))``
* ``_position_batch(b: WarpBatch) -> (N, 2)`` (default: ``qpos[:, :2]``)

State lives in one ``mujoco_warp.Data`` with ``nworld = num_envs`` on ``device`` (``"cuda[:k]"``; ``"cpu"`` runs
the same kernels on Warp's LLVM CPU backend, one core at ~0.7x CPU MuJoCo's per-core speed: for tests). :class:`WarpBatch` holds
zero-copy float32 torch views of its arrays: actions are written into ``ctrl``, pushes into ``xfrc_applied``,
resets write ``qpos``/``qvel`` of the reset worlds. One control step (``frame_skip`` x ``mujoco_warp.step``, then
``rne_postconstraint`` for ``cfrc_ext``), the masked ``reset_data``, ``forward`` and (DR) ``set_const`` are each
captured once in a Warp graph (a CUDA graph on GPU; Warp 1.19 also replays graphs on CPU) and relaunched every
step. Warp runs on its device's default stream, which is blocking, so it is ordered with torch's default stream
(launch no torch work for the env on another stream).

Same contract as the CPU backend: same random streams (a seed gives the same reset states, DR draws and pushes
as ``backend="cpu"``), rewards computed by the task's ``_reward_done`` in float64, ``terminated``/``truncated``,
same-step auto-reset with ``info["final_obs"]``. Differences: the physics is float32 (CPU MuJoCo: float64), and
``forward`` after a reset runs on every world; live worlds keep the observation and position measured after their
step (cached), so their reward is unaffected. Domain randomization uses per-world model arrays
(``put_model(batch_sizes=...)``) for masses/inertias, friction, damping and actuator gains, followed by
``mujoco_warp.set_const`` (the derived ``invweight0``/``subtreemass``/``acc0`` fields are per world too). A task whose
actuators are position servos sets ``dr_gain_scales_bias = True``: the gain factor then also scales
``actuator_biasprm[:, 1:3]`` (per world), so kp and kd scale together and the set-point does not move (the CPU
backend's task does the same in its ``_randomize``). Tasks that draw per-step randomness on the device use
``device_gen`` (the env's ``gen`` on Warp's CPU device, so the streams stay those of the CPU backend; a separate
generator on a GPU, reseeded by ``reset(seed)``). A task can also override ``step``/``observe`` around the
batched views and keep its own state on ``device``, as ``mujoco-humanoid-walk`` does
(:mod:`sim2real.tasks.humanoid_walk`).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

import torch

from sim2real.sim.mujoco.env import MujocoEnvConfig, MujocoVecEnv, require_mujoco

INSTALL_HINT = "pip install mujoco-warp  (or pip install 'sim2real[warp]')"
_DR_FIELDS = ("body_mass", "body_inertia", "geom_friction", "dof_damping", "actuator_gainprm")
_VIEW_FIELDS = ("qpos", "qvel", "ctrl", "xpos", "xipos", "xmat", "cinert", "cvel", "cfrc_ext", "qfrc_actuator",
                "actuator_force", "xfrc_applied")  # fmt: skip
_DERIVED_FIELDS = ("body_subtreemass", "body_invweight0", "dof_invweight0", "tendon_invweight0", "actuator_acc0")


def import_warp() -> tuple[Any, Any]:
    """``(warp, mujoco_warp)`` modules; ImportError with the install command when either is missing."""
    try:
        import mujoco_warp
        import warp
    except ImportError as e:
        raise ImportError(f"backend='warp' needs the mujoco_warp package ({e}): {INSTALL_HINT}") from e
    if warp.config.log_level == warp.LOG_INFO:  # Warp's default logs a line per loaded module (mujoco_warp: ~100)
        warp.config.log_level = warp.LOG_WARNING
    return warp, mujoco_warp


def warp_device(device: torch.device) -> str:
    """The Warp device name for a torch device; RuntimeError when CUDA is asked for but unusable."""
    wp, _ = import_warp()
    wp.init()
    if device.type == "cpu":
        return "cpu"
    if device.type != "cuda":
        raise RuntimeError(f"backend='warp' runs on device 'cuda[:k]' or 'cpu', got {str(device)!r}")
    if not (torch.cuda.is_available() and wp.is_cuda_available()):
        raise RuntimeError(
            f"backend='warp' with device={str(device)!r} needs a CUDA GPU usable by both torch and Warp "
            f"(torch {torch.__version__}: cuda available={torch.cuda.is_available()}; warp: "
            f"cuda available={wp.is_cuda_available()}). Use device='cpu' (Warp's CPU backend, slow) or backend='cpu'."
        )
    return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"


@dataclass
class WarpBatch:
    """Zero-copy float32 torch views of the batched simulation (``N = num_envs``, ``B`` = 1 or ``N``).

    Writes go straight into the simulation (``ctrl``, ``xfrc_applied``, ``qpos``, ``qvel``); the derived fields
    are those of the last ``step`` (kinematics of its last substep, like ``MjData`` after ``mj_step``).
    """

    qpos: torch.Tensor  # (N, nq)
    qvel: torch.Tensor  # (N, nv)
    ctrl: torch.Tensor  # (N, nu)
    xpos: torch.Tensor  # (N, nbody, 3) body frame positions
    xipos: torch.Tensor  # (N, nbody, 3) body centre-of-mass positions
    xmat: torch.Tensor  # (N, nbody, 3, 3) body orientations (body -> world)
    cinert: torch.Tensor  # (N, nbody, 10) com-based inertia (MuJoCo's layout)
    cvel: torch.Tensor  # (N, nbody, 6) com-based velocity (rot, lin)
    cfrc_ext: torch.Tensor  # (N, nbody, 6) com-based external force (rot, lin), after rne_postconstraint
    qfrc_actuator: torch.Tensor  # (N, nv)
    actuator_force: torch.Tensor  # (N, nu) actuator forces (gear 1: joint torques)
    xfrc_applied: torch.Tensor  # (N, nbody, 6) applied Cartesian force (force, torque)
    body_mass: torch.Tensor  # (B, nbody) model masses (per world under DR)


class MujocoWarpVecEnv(MujocoVecEnv):
    """The warp backend, mixed into a task class by :func:`warp_task_class` (not built directly)."""

    warp_backend = True
    dr_gain_scales_bias: bool = False
    """DR: the actuator gain factor also scales ``actuator_biasprm[:, 1:3]`` (position servos: kp and kd)."""

    def __init__(self, cfg: MujocoEnvConfig | None = None, **overrides: Any) -> None:
        wp, mjw = import_warp()
        wp_device = warp_device(torch.device(overrides.get("device", (cfg or MujocoEnvConfig()).device)))
        super().__init__(cfg, **{**overrides, "backend": "warp"})
        if type(self)._measure_batch is MujocoWarpVecEnv._measure_batch:
            raise NotImplementedError(
                f"task {self.task_name!r} ({type(self).__mro__[1].__name__}) has no batched torch observation "
                "(_measure_batch) for backend='warp'; use backend='cpu'"
            )
        self._wp, self._mjw, self._wp_device = wp, mjw, wp_device
        if self._pool is not None:  # the CPU thread pool is not used
            self._pool.shutdown(wait=True)
            self._pool = None
        n, dev, m = self.num_envs, self.device, self.model
        dr = self.cfg.dr.enabled
        dr_fields = _DR_FIELDS + (("actuator_biasprm",) if self.dr_gain_scales_bias else ())
        with wp.ScopedDevice(self._wp_device):
            batch = {f: n for f in dr_fields + _DERIVED_FIELDS} if dr else None
            try:
                self.wp_model = mjw.put_model(m, batch_sizes=batch)
            except NotImplementedError as e:  # e.g. Humanoid-v5's PGS solver
                raise NotImplementedError(
                    f"task {self.task_name!r}: mujoco_warp cannot simulate its model ({e}); use backend='cpu'"
                ) from e
            self.wp_data = mjw.make_data(m, nworld=n)
            self._mask_wp = wp.zeros(n, dtype=bool)
        if self._wp_device.startswith("cuda") and not wp.is_conditional_graph_supported():
            self.wp_model.opt.graph_conditional = False  # CUDA < 12.4: solver loops unrolled in the graph
        d, t = self.wp_data, wp.to_torch
        self.batch = WarpBatch(**{k: t(getattr(d, k)) for k in _VIEW_FIELDS}, body_mass=t(self.wp_model.body_mass))
        self._mask = t(self._mask_wp)
        self._params = {f: t(getattr(self.wp_model, f)) for f in dr_fields}
        nominal = {**self._nominal, "actuator_biasprm": m.actuator_biasprm}
        self._nominal_t = {k: torch.as_tensor(v, dtype=torch.float32, device=dev) for k, v in nominal.items()}
        self._pending: list[int] = []  # envs whose parameters are drawn in the next _apply_params
        self.act_low, self.act_high = self.act_low.to(dev), self.act_high.to(dev)
        self.steps = self.steps.to(dev)
        self.ep_return = self.ep_return.to(dev)
        self._obs_t = torch.zeros(n, self.obs_dim, device=dev)
        self._aux_t = torch.zeros(n, max(self.aux_dim, 1), device=dev)
        self._pos = torch.zeros(n, 2, dtype=torch.float64, device=dev)
        self.device_gen = self.gen if dev.type == "cpu" else torch.Generator(dev).manual_seed(0)
        """Generator on ``device`` for a task's per-step draws (e.g. sensor noise; reseeded by ``reset(seed)``)."""
        self._graphs: dict[str, Any] = {}
        self.use_graphs = self._capture_graphs()

    # ------------------------------------------------------------------------------------------ task hooks
    def _measure_batch(self, b: WarpBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation ``(N, obs_dim)`` and auxiliary scalars ``(N, aux_dim)`` (float32) of every world."""
        raise NotImplementedError

    def _position_batch(self, b: WarpBatch) -> torch.Tensor:
        """The xy position ``(N, 2)`` whose finite difference is the forward velocity (default ``qpos[:, :2]``)."""
        return b.qpos[:, :2]

    # ------------------------------------------------------------------------------------------ simulation
    def _ops(self) -> dict[str, Any]:
        mjw, m, d, fs = self._mjw, self.wp_model, self.wp_data, self.frame_skip

        def step() -> None:
            for _ in range(fs):
                mjw.step(m, d)
            mjw.rne_postconstraint(m, d)

        groups = mjw.SetConstGroup.FIXED | mjw.SetConstGroup.INERT0  # what the DR fields change (~200 launches)
        return {
            "step": step,
            "reset": lambda: mjw.reset_data(m, d, reset=self._mask_wp),
            "forward": lambda: mjw.forward(m, d),
            **({"set_const": lambda: mjw.set_const(m, d, groups=groups, restore=False)} if self.cfg.dr.enabled else {}),
        }

    def _capture_graphs(self) -> bool:
        """Capture each op in a Warp graph (needs the CUDA memory pool on GPU); False: ops run eagerly."""
        wp = self._wp
        if self._wp_device.startswith("cuda") and not wp.is_mempool_enabled(self._wp_device):
            return False
        gc_on = gc.isenabled()
        gc.disable()  # a Warp object finalized during capture would record its release into the graph
        try:
            with wp.ScopedDevice(self._wp_device):
                for name, op in self._ops().items():
                    with wp.ScopedCapture() as capture:
                        op()
                    self._graphs[name] = capture.graph
        finally:
            if gc_on:
                gc.enable()
        return True

    def _run(self, name: str) -> None:
        with self._wp.ScopedDevice(self._wp_device):
            if self.use_graphs:
                self._wp.capture_launch(self._graphs[name])
            else:
                self._ops()[name]()

    # ------------------------------------------------------------------------------------------ state
    def _make_datas(self) -> None:
        mujoco = require_mujoco()
        self.models = [self.model]  # one host MjData (qpos0, inspection); the batched state is self.wp_data
        self.datas = [mujoco.MjData(self.model)]

    def _ids(self, env_ids: torch.Tensor | None) -> list[int]:
        """Env indices as a list (one ``tolist``, no Python loop over the elements: resets of many worlds)."""
        return list(range(self.num_envs)) if env_ids is None else torch.as_tensor(env_ids).flatten().long().tolist()

    def get_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(qpos (N, nq), qvel (N, nv))`` float64 copies on ``device``."""
        return self.batch.qpos.double(), self.batch.qvel.double()

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        """Set ``qpos`` ``(K, nq)`` / ``qvel`` ``(K, nv)`` of worlds ``env_ids`` (all when None).

        Like the CPU backend: the rest of the worlds' data is cleared (``reset_data`` on a world mask), ``forward``
        recomputes the derived quantities and the observation rows of those worlds are refreshed.
        """
        ids = self._ids(env_ids)
        k, dev, b = len(ids), self.device, self.batch
        qpos = torch.as_tensor(qpos, dtype=torch.float64).reshape(k, self.nq).to(dev)
        qvel = torch.as_tensor(qvel, dtype=torch.float64).reshape(k, self.nv).to(dev)
        if not bool(torch.isfinite(qpos).all() & torch.isfinite(qvel).all()):
            raise ValueError("set_state: qpos/qvel contain NaN/Inf")
        if k == 0:
            return
        idx = torch.as_tensor(ids, device=dev)
        self._apply_params()
        self._mask.zero_()
        self._mask[idx] = True
        self._run("reset")
        b.qpos[idx] = qpos.float()
        b.qvel[idx] = qvel.float()
        self._run("forward")
        b.cfrc_ext[idx] = 0.0  # like mj_resetData + mj_forward (forward does not compute cfrc_ext)
        obs, aux = self._measure_batch(b)
        mask = self._mask[:, None]
        self._obs_t = torch.where(mask, obs, self._obs_t)  # live worlds keep the rows measured after their step
        self._aux_t = torch.where(mask, aux.reshape(self.num_envs, -1), self._aux_t)
        self._pos = torch.where(mask, self._position_batch(b).double(), self._pos)

    def get_params(self) -> dict[str, torch.Tensor]:
        """Per-env physical parameters (float64 on ``device``), same keys and shapes as the CPU backend."""
        p, n = self._params, self.num_envs
        return {
            "body_mass": p["body_mass"].double().expand(n, -1).clone(),
            "geom_friction": p["geom_friction"].double().expand(n, -1, -1).clone(),
            "dof_damping": p["dof_damping"].double().expand(n, -1).clone(),
            "actuator_gain": p["actuator_gainprm"][..., 0].double().expand(n, -1).clone(),
        }

    def _randomize(self, i: int) -> None:
        """Queue env ``i``: its factors are drawn with the other queued envs' in :meth:`_apply_params`."""
        self._pending.append(i)

    def _apply_params(self) -> None:
        """Draw the queued worlds' factors, write them into the model arrays and recompute the derived constants.

        One ``(K, nbody + 1 + nv + nu)`` draw gives the numbers of the CPU backend's ``_randomize`` env after env
        (mass, friction, damping, gain; its generator fills a tensor in order): the same DR draws for a seed.
        """
        if not self._pending:
            return
        dr, m, dev = self.cfg.dr, self.model, self.device
        idx, sizes = torch.as_tensor(self._pending, device=dev), (m.nbody, 1, m.nv, m.nu)
        u = torch.rand(len(self._pending), sum(sizes), generator=self.gen, dtype=torch.float64)
        self._pending = []
        scales = (dr.mass_scale, dr.friction_scale, dr.damping_scale, dr.gain_scale)
        lo, hi = (torch.cat([torch.full((n,), float(s[j]), dtype=torch.float64) for n, s in zip(sizes, scales)])
                  for j in (0, 1))  # fmt: skip
        mass, fric, damp, gain = (lo + (hi - lo) * u).to(dev, torch.float32).split(sizes, 1)
        p, nom = self._params, self._nominal_t
        p["body_mass"][idx] = nom["body_mass"] * mass
        p["body_inertia"][idx] = nom["body_inertia"] * mass[..., None]
        p["geom_friction"][idx] = nom["geom_friction"] * fric[..., None]
        p["dof_damping"][idx] = nom["dof_damping"] * damp
        p["actuator_gainprm"][idx, :, 0] = nom["actuator_gainprm"][:, 0] * gain
        if self.dr_gain_scales_bias:
            p["actuator_biasprm"][idx, :, 1:3] = nom["actuator_biasprm"][:, 1:3] * gain[..., None]
        self._run("set_const")

    # ------------------------------------------------------------------------------------------ step
    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        if seed is not None and self.device_gen is not self.gen:
            self.device_gen.manual_seed(int(seed))
        return super().reset(seed)

    def observe(self) -> dict[str, torch.Tensor]:
        """``{"policy": (N, D), "critic": (N, D)}`` float32 on ``device`` (copies: callers may modify them)."""
        return {"policy": self._obs_t.clone(), "critic": self._obs_t.clone()}

    def step(self, action: torch.Tensor):
        """Advance every world by ``dt = frame_skip * timestep``; returns are those of :meth:`MujocoVecEnv.step`."""
        b, dev = self.batch, self.device
        a = torch.clamp(self.check_action(action), self.act_low, self.act_high)
        b.ctrl.copy_(a)
        if self.cfg.dr.enabled and self.cfg.dr.push_prob > 0.0:
            self._update_pushes()  # the CPU backend's draws (host generator), then one copy to the device
            b.xfrc_applied[:, self.root_body] = torch.as_tensor(self._push, dtype=torch.float32).to(dev)
        self._run("step")
        obs, aux = self._measure_batch(b)
        pos = self._position_batch(b).double()
        vel = (pos - self._pos) / self.dt
        self._obs_t, self._aux_t, self._pos = obs, aux.reshape(self.num_envs, -1), pos
        reward64, terminated = self._reward_done(obs.double(), self._aux_t.double(), vel, a.double())
        return self._finish_step(reward64, terminated.to(dev))

    def close(self) -> None:
        self._graphs.clear()
        self.use_graphs = False
        super().close()


_WARP_CLASSES: dict[type, type] = {}


def warp_task_class(task_cls: type[MujocoVecEnv]) -> type[MujocoWarpVecEnv]:
    """``task_cls`` on the warp backend: a subclass with MRO ``(task, ..., MujocoWarpVecEnv, MujocoVecEnv)``."""
    if issubclass(task_cls, MujocoWarpVecEnv):
        return task_cls
    if task_cls not in _WARP_CLASSES:
        name = f"{task_cls.__name__}Warp"
        doc = f"{task_cls.__name__} on the mujoco_warp backend.\n\n{task_cls.__doc__ or ''}"
        bases = (task_cls, MujocoWarpVecEnv)  # a consistent MRO: the task subclasses MujocoVecEnv like the backend
        _WARP_CLASSES[task_cls] = type(name, bases, {"__doc__": doc, "__qualname__": name})  # pyright: ignore[reportGeneralTypeIssues]
    return _WARP_CLASSES[task_cls]
