"""Quadrotors whose rigid-body motion PyBullet integrates, behind the same step as the torch integrator.

:class:`PyBulletQuadrotors` has the signature of :meth:`QuadrotorDynamics.rk4_step`: the packed state ``(N, 17)``,
set-points, per-env parameters and disturbances in, the next state out (conventions of
:mod:`sim2real.sim.quadrotor`). Per control step and env it places a body in a PyBullet DIRECT client at the
given state, then for each of ``substeps`` physics steps of ``h = dt / substeps``:

* integrates the first-order motors exactly over ``h``: ``r <- r_sp + (r - r_sp) exp(-h / T)``, ``T`` the rise or
  fall constant (the torch model integrates the same ODE with RK4);
* applies each rotor's thrust ``f_i = c0 + c1 r_i + c2 r_i^2`` (the mean of the substep's start and end) as an
  external force along body z at the rotor's position, the yaw torque ``k_q sum_i dir_i f_i`` about body z, the
  disturbance force (world) and torque (body), and optionally gym-pybullet-drones' drag and ground effect;
* lets PyBullet's semi-implicit Euler integrate the body (gravity, Coriolis and gyroscopic terms of Featherstone's
  articulated-body algorithm), with no damping.

Mass and inertia follow the parameters (``changeDynamics`` when they change). The bodies have no collision shapes:
the hover task has no ground, and the envs do not touch each other. ``workers`` > 0 splits the envs over that many
processes, each with its own client (PyBullet holds the GIL while it steps).
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from sim2real.sim.quadrotor import OMEGA, POS, QUAT, RPM, STATE_DIM, VEL, QuadrotorModel, quat_to_rotmat

#: gym-pybullet-drones' ``cf2x.urdf`` constants for the optional effects (drag per rad/s of summed rotor speed
#: [N s/m / (rad/s)], ground-effect coefficient, propeller radius [m]).
CF2X_DRAG_XY, CF2X_DRAG_Z = 9.1785e-7, 10.311e-7
CF2X_GROUND_EFFECT, CF2X_PROP_RADIUS = 11.36859, 2.31348e-2


@dataclass
class PyBulletConfig:
    """The PyBullet engine of the quadrotor."""

    substeps: int = 4
    """Physics steps per control step (4: 400 Hz physics for 100 Hz control)."""
    workers: int = 0
    """Processes with a PyBullet client each (0: one client in this process)."""
    drag: bool = False
    """gym-pybullet-drones' rotor drag ``-k (sum_i omega_i) v`` in the body frame (off by default)."""
    ground_effect: bool = False
    """gym-pybullet-drones' ground effect below ``ground_z`` + 0.2 m (off by default)."""
    ground_z: float = -1.0
    """Height of the (invisible) ground the ground effect sees [m, world]."""

    def __post_init__(self) -> None:
        if self.substeps < 1 or self.workers < 0:
            raise ValueError(f"need substeps >= 1 and workers >= 0, got {self.substeps}, {self.workers}")


def require_pybullet() -> Any:
    """The ``pybullet`` module; ImportError with the install command when it is missing."""
    try:
        import pybullet
    except ImportError as e:
        raise ImportError(f"the PyBullet engine needs the pybullet package ({e}): pip install 'sim2real[pybullet]'") from e
    return pybullet


def _rotmat_xyzw(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(N, 3, 3)`` of PyBullet quaternions ``(N, 4)`` ``(x, y, z, w)`` (:func:`quat_to_rotmat`)."""
    return quat_to_rotmat(torch.from_numpy(np.ascontiguousarray(q[:, [3, 0, 1, 2]]))).numpy()


class _Client:
    """One DIRECT client holding ``n`` quadrotor bodies; steps numpy batches."""

    def __init__(self, model: QuadrotorModel, n: int, dt: float, cfg: PyBulletConfig) -> None:
        pb = require_pybullet()
        from pybullet_utils.bullet_client import BulletClient

        self.pb, self.cfg, self.n, self.h = pb, cfg, n, dt / cfg.substeps
        self.c = BulletClient(connection_mode=pb.DIRECT)
        self.c.setGravity(0.0, 0.0, -model.gravity)
        self.c.setTimeStep(self.h)
        self.c.setPhysicsEngineParameter(numSubSteps=0, deterministicOverlappingPairs=1)
        self.bodies = [self.c.createMultiBody(baseMass=model.mass, baseCollisionShapeIndex=-1, basePosition=[0, 0, 0])
                       for _ in range(n)]  # fmt: skip
        for b in self.bodies:
            self.c.changeDynamics(b, -1, linearDamping=0.0, angularDamping=0.0, localInertiaDiagonal=list(model.inertia))
        self.rotors = np.asarray(model.rotor_positions, dtype=np.float64)  # (4, 3) body
        self.dirs = np.asarray(model.rotor_dirs, dtype=np.float64)
        self.max_rpm = model.max_rpm
        self.params = np.full((n, 4), np.nan)  # mass, inertia as last set

    def _set_params(self, p: np.ndarray) -> None:
        changed = np.nonzero((p[:, :4] != self.params).any(1))[0]
        for i in changed:
            self.c.changeDynamics(self.bodies[i], -1, mass=float(p[i, 0]), localInertiaDiagonal=p[i, 1:4].tolist())
        self.params[changed] = p[changed, :4]

    def step(self, s: np.ndarray, r_sp: np.ndarray, p: np.ndarray, f_dist: np.ndarray, t_dist: np.ndarray) -> np.ndarray:
        c, cfg, h = self.c, self.cfg, self.h
        self._set_params(p)
        pos, quat, vel, omega, r = s[:, POS], s[:, QUAT], s[:, VEL], s[:, OMEGA], s[:, RPM].copy()
        xyzw = np.concatenate((quat[:, 1:], quat[:, :1]), 1)
        rot = _rotmat_xyzw(xyzw)
        omega_w = np.einsum("nij,nj->ni", rot, omega)  # PyBullet's angular velocity is in the world frame
        for i, b in enumerate(self.bodies):
            c.resetBasePositionAndOrientation(b, pos[i].tolist(), xyzw[i].tolist())
            c.resetBaseVelocity(b, vel[i].tolist(), omega_w[i].tolist())
        tau = np.where(r_sp > r, p[:, 8:9], p[:, 9:10])  # (N, 4) motor time constants
        decay = np.exp(-h / tau)
        for _ in range(cfg.substeps):
            r_next = r_sp + (r - r_sp) * decay  # exact first-order response over h
            rm = 0.5 * (r + r_next)
            f = p[:, 4:5] + p[:, 5:6] * rm + p[:, 6:7] * rm * rm  # (N, 4) rotor thrusts [N]
            r = r_next
            states = [c.getBasePositionAndOrientation(b) for b in self.bodies]
            bpos = np.array([st[0] for st in states])
            R = _rotmat_xyzw(np.array([st[1] for st in states]))  # (N, 3, 3) body -> world
            if cfg.ground_effect:  # thrust x (1 + C (R_p / 4 h)^2) near the ground (gym-pybullet-drones)
                z = bpos[:, 2:3] + np.einsum("nj,rj->nr", R[:, 2], self.rotors) - cfg.ground_z
                near = z < 0.2
                f = f * (1.0 + near * CF2X_GROUND_EFFECT * (CF2X_PROP_RADIUS / (4.0 * np.clip(z, 0.01, None))) ** 2)
            rotor_w = bpos[:, None] + np.einsum("nij,rj->nri", R, self.rotors)  # (N, 4, 3) rotor positions, world
            thrust_w = R[:, :, 2][:, None] * f[..., None]  # (N, 4, 3) along body z
            yaw = p[:, 7] * (f @ self.dirs)  # (N,)
            torque_w = R[:, :, 2] * yaw[:, None] + np.einsum("nij,nj->ni", R, t_dist)
            force_w = f_dist.copy()
            if cfg.drag:
                v = np.array([c.getBaseVelocity(b)[0] for b in self.bodies])
                v_b = np.einsum("nji,nj->ni", R, v)
                speed = (r * self.max_rpm * 2 * math.pi / 60).sum(1, keepdims=True)  # summed rotor speeds [rad/s]
                drag_b = -speed * np.array([CF2X_DRAG_XY, CF2X_DRAG_XY, CF2X_DRAG_Z]) * v_b
                force_w = force_w + np.einsum("nij,nj->ni", R, drag_b)
            for i, b in enumerate(self.bodies):
                for k in range(4):
                    c.applyExternalForce(b, -1, thrust_w[i, k].tolist(), rotor_w[i, k].tolist(), self.pb.WORLD_FRAME)
                c.applyExternalForce(b, -1, force_w[i].tolist(), bpos[i].tolist(), self.pb.WORLD_FRAME)
                c.applyExternalTorque(b, -1, torque_w[i].tolist(), self.pb.WORLD_FRAME)
            c.stepSimulation()
        out = np.empty((self.n, STATE_DIM))
        for i, b in enumerate(self.bodies):
            (px, o), (v, w) = c.getBasePositionAndOrientation(b), c.getBaseVelocity(b)
            out[i, POS], out[i, VEL] = px, v
            out[i, QUAT] = (o[3], o[0], o[1], o[2])
            out[i, OMEGA] = _rotmat_xyzw(np.asarray([o]))[0].T @ np.asarray(w)
        q = out[:, QUAT]
        out[:, QUAT] = q / np.linalg.norm(q, axis=1, keepdims=True)
        out[:, RPM] = np.clip(r, 0.0, 1.0)
        return out

    def close(self) -> None:
        self.c.disconnect()


def _worker(conn: Connection, model: QuadrotorModel, n: int, dt: float, cfg: PyBulletConfig) -> None:
    client = _Client(model, n, dt, cfg)
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            conn.send(client.step(*msg))
    finally:
        client.close()


class PyBulletQuadrotors:
    """``step(s, r_sp, p, f_dist, t_dist, dt) -> s_next`` for ``num_envs`` quadrotors in PyBullet (module docstring)."""

    def __init__(self, model: QuadrotorModel, num_envs: int, dt: float, cfg: PyBulletConfig | None = None) -> None:
        self.cfg = cfg = cfg or PyBulletConfig()
        require_pybullet()
        self.dt = dt
        k = min(cfg.workers, num_envs)
        self.bounds = [(num_envs * j // max(k, 1), num_envs * (j + 1) // max(k, 1)) for j in range(max(k, 1))]
        self.local: _Client | None = None
        self.pipes: list[Any] = []  # Connection (PipeConnection on Windows)
        self.procs: list[Any] = []
        if k == 0:
            self.local = _Client(model, num_envs, dt, cfg)
            return
        ctx = mp.get_context("spawn")
        for lo, hi in self.bounds:
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, model, hi - lo, dt, cfg), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def __call__(self, s: torch.Tensor, r_sp: torch.Tensor, p: torch.Tensor, f_dist: torch.Tensor, t_dist: torch.Tensor,
                 dt: float) -> torch.Tensor:  # fmt: skip
        """The next state ``(N, 17)`` (float32, on ``s``'s device) after ``dt`` (the step this engine was built for)."""
        if abs(dt - self.dt) > 1e-12:
            raise ValueError(f"this PyBullet engine steps dt={self.dt} s, asked for {dt} s")
        args = [t.detach().double().cpu().numpy() for t in (s, r_sp, p, f_dist, t_dist)]
        if self.local is not None:
            out = self.local.step(*args)
        else:
            for pipe, (lo, hi) in zip(self.pipes, self.bounds):
                pipe.send([a[lo:hi] for a in args])
            out = np.concatenate([pipe.recv() for pipe in self.pipes])
        return torch.as_tensor(out, dtype=torch.float32, device=s.device)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
        for pipe, proc in zip(self.pipes, self.procs):
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=5)
        self.pipes, self.procs = [], []
