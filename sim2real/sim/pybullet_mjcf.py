"""MuJoCo locomotion tasks with PyBullet integrating the robot: ``MujocoEnvConfig.engine = "pybullet"``.

:func:`pybullet_task_class` mixes :class:`MujocoPyBulletVecEnv` into a task class (as the warp backend does), so
the task keeps its observation (``_measure_batch``), reward and termination (``_reward_done``), reset noise and
spec; only the physics changes. The robot is built in PyBullet from the model MuJoCo compiles from the task's own
file (:func:`build_multibody`; :func:`load_robot` for any MJCF or URDF file), so kinematics, masses, centres of mass,
principal inertias, collision geoms and joint limits are the same numbers in both engines. PyBullet's own MJCF
importer was measured first and dropped: it ignores ``settotalmass`` (HalfCheetah 51 % too heavy) and puts each
body's centre of mass at its frame origin (HalfCheetah's thigh 0.16 m off). One DIRECT client holds one robot per
env, each in its own lane (``LANE_M`` apart along y; the planar robots cannot leave it), over one floor. What
PyBullet has no field for is applied by this backend, from the same model:

* actuators: each ``motor`` becomes a joint torque ``gear * clip(ctrl, ctrlrange)`` (other actuators are refused);
* passive joint forces, each physics substep: ``-stiffness (q - springref) - damping qdot``;
* friction: MuJoCo takes the larger of two geoms' coefficients, Bullet their product, so each link gets
  ``max(link, floor)`` and the floor 1;
* armature, as a rotor inertia on a light link that each joint moves (see :func:`build_multibody`);
* the timestep (``opt.timestep``), the substeps (``frame_skip``) and gravity.

Differences that remain: the armature rotor is also felt by the parent joints (MuJoCo's armature only by its own
dof; applying it exactly instead, as a torque ``-A qdd`` from PyBullet's mass matrix and the last substep's contact
forces, was measured too: 3x (HalfCheetah) to 10x (Hopper) closer to MuJoCo in the air, but HalfCheetah's ground
contact then drifted 4x further apart, and it costs two more PyBullet calls per env and substep), PyBullet's
contacts are rigid with error correction where MuJoCo's are soft (``solref``/``solimp``), its joint limits are hard
and it integrates the passive forces explicitly (MuJoCo's Euler integrator treats damping implicitly).
``tests/sim/test_pybullet_mjcf.py`` bounds how far an open-loop flight drifts apart, and ``benchmarks/sim2sim.py``
measures what a policy trained in one engine earns in the other.

Observations come from joint states only: the batch handed to ``_measure_batch`` has ``qpos`` and ``qvel``
(MuJoCo's order and conventions; slide and hinge joints, ``nq == nv``), so HalfCheetah and Hopper run here; a task
that observes MuJoCo's derived quantities or bodies (Ant, Humanoid: ``cfrc_ext``, ``xpos``...) is refused with a
clear error. Domain randomisation follows :class:`~sim2real.sim.mujoco.env.MujocoDRConfig`: link masses (and
inertias), friction, damping and actuator gains per env at each reset, and pushes on the root body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.sim.mujoco.env import MjModel, MujocoVecEnv, require_mujoco
from sim2real.sim.pybullet_quadrotor import require_pybullet

LANE_M = 2.0
"""Distance between the envs' lanes along y [m]."""


class MissingQuantity(AttributeError):
    """A task asked the PyBullet engine for a MuJoCo quantity it does not compute."""


@dataclass
class JointBatch:
    """What the PyBullet engine measures: ``qpos`` ``(N, nq)`` and ``qvel`` ``(N, nv)`` float64, MuJoCo's order."""

    qpos: torch.Tensor
    qvel: torch.Tensor

    def __getattr__(self, name: str) -> Any:
        raise MissingQuantity(f"the PyBullet engine measures joint positions and velocities only; this task observes "
                              f"MuJoCo's {name!r} (use engine='mujoco')")  # fmt: skip


class MujocoPyBulletVecEnv(MujocoVecEnv):
    """The PyBullet engine, mixed into a MuJoCo task class by :func:`pybullet_task_class` (not built directly)."""

    pybullet_engine = True
    client: Any
    """The PyBullet DIRECT client holding every env's robot (None once closed)."""

    def _measure_batch(self, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's observation ``(N, D)`` and auxiliary scalars ``(N, A)`` from a :class:`JointBatch`."""
        raise NotImplementedError(f"{self.task_name} has no batched measurement for the PyBullet engine")

    def _make_datas(self) -> None:
        """Check the model, build the PyBullet client with one robot per env, keep one MjData for ``qpos0``."""
        mujoco = require_mujoco()
        m, n = self.model, self.num_envs
        if m.nq != m.nv or any(int(t) not in (2, 3) for t in m.jnt_type):  # mjJNT_SLIDE = 2, mjJNT_HINGE = 3
            raise ValueError(f"{self.task_name}: the PyBullet engine takes models of slide and hinge joints only")
        if any(int(t) != 0 for t in m.actuator_trntype) or any(int(b) != 0 for b in m.actuator_biastype):
            raise ValueError(f"{self.task_name}: the PyBullet engine takes joint motors only (no servos, tendons)")
        self.models, self.datas = [m], [mujoco.MjData(m)]
        pb = require_pybullet()
        from pybullet_utils.bullet_client import BulletClient

        self._pb = pb
        self.client = c = BulletClient(connection_mode=pb.DIRECT)
        c.setGravity(*(float(g) for g in m.opt.gravity))
        c.setTimeStep(float(m.opt.timestep))
        floor = _floor(c, m)
        built = [build_multibody(c, m, (0.0, LANE_M * i, 0.0)) for i in range(n)]
        self.robots = [r for r, _, _ in built]
        self._joints, self._body_links = built[0][1], built[0][2]  # PyBullet joint per MuJoCo dof, link per body
        self._root_link = self._body_links[1]
        self._ref = m.qpos0.copy()  # MuJoCo's joint ref: PyBullet's joint position 0 is the model as written
        self._dof_stiffness = np.array([m.jnt_stiffness[m.dof_jntid[d]] for d in range(m.nv)])
        self._springref = np.array([m.qpos_spring[m.jnt_qposadr[m.dof_jntid[d]]] for d in range(m.nv)])
        self._act_to_dof = np.zeros((m.nu, m.nv))  # actuator -> dof it drives
        self._act_to_dof[np.arange(m.nu), [m.jnt_dofadr[m.actuator_trnid[a, 0]] for a in range(m.nu)]] = 1.0
        floor_friction = max((float(m.geom_friction[g, 0]) for g in range(m.ngeom) if int(m.geom_bodyid[g]) == 0),
                             default=1.0)  # fmt: skip
        self._link_friction = {b: max(float(m.geom_friction[m.geom_bodyid == b, 0].max(initial=0.0)), floor_friction)
                               for b in self._body_links}  # fmt: skip
        c.changeDynamics(floor, -1, lateralFriction=1.0, restitution=0.0)
        for r in self.robots:
            c.setJointMotorControlArray(r, self._joints, pb.VELOCITY_CONTROL, forces=[0.0] * m.nv)  # no default motors
            for j in range(c.getNumJoints(r)):
                c.changeDynamics(r, j, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0, restitution=0.0)
        # per-env parameters (nominal; DR redraws them at each reset)
        self._damping = np.tile(m.dof_damping, (n, 1))
        self._gear = np.tile(m.actuator_gear[:, 0] * m.actuator_gainprm[:, 0], (n, 1))
        self._friction_factor = np.ones(n)
        self._mass_factor = np.ones((n, m.nbody))
        for i in range(n):
            self._apply_params(i)

    def _apply_params(self, i: int) -> None:
        c, r = self.client, self.robots[i]
        for b, j in self._body_links.items():
            s = float(self._mass_factor[i, b])
            c.changeDynamics(r, j, mass=float(self.model.body_mass[b]) * s,
                             localInertiaDiagonal=[float(x) * s for x in self.model.body_inertia[b]],
                             lateralFriction=self._link_friction[b] * float(self._friction_factor[i]))  # fmt: skip

    def _randomize(self, i: int) -> None:
        dr, m = self.cfg.dr, self.model
        self._mass_factor[i] = self._uniform(dr.mass_scale, m.nbody)
        self._friction_factor[i] = self._uniform(dr.friction_scale, 1)[0]
        self._damping[i] = m.dof_damping * self._uniform(dr.damping_scale, m.nv)
        self._gear[i] = m.actuator_gear[:, 0] * m.actuator_gainprm[:, 0] * self._uniform(dr.gain_scale, m.nu)
        self._apply_params(i)

    # ------------------------------------------------------------------------------------------ state
    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(qpos (N, nq), qvel (N, nv))`` float64 from PyBullet's joint states (plus MuJoCo's joint ``ref``)."""
        states = [self.client.getJointStates(r, self._joints) for r in self.robots]
        q = np.array([[s[0] for s in row] for row in states]) + self._ref
        qd = np.array([[s[1] for s in row] for row in states])
        return q, qd

    def _measure_all(self) -> np.ndarray:
        """Measure every env (the task's ``_measure_batch``); returns the forward positions ``(N, 2)``."""
        q, qd = self._read()
        obs, aux = self._measure_batch(JointBatch(torch.as_tensor(q), torch.as_tensor(qd)))
        self._obs[:] = obs.numpy()
        self._aux[:, : aux.shape[1]] = aux.numpy()
        return q[:, :2]

    def get_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self._read()
        return torch.as_tensor(q), torch.as_tensor(qd)

    def set_state(self, qpos: torch.Tensor, qvel: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        ids = self._ids(env_ids)
        qp, qv = self._state_rows(qpos, qvel, len(ids))
        for k, i in enumerate(ids):
            for d, j in enumerate(self._joints):
                self.client.resetJointState(self.robots[i], j, float(qp[k, d] - self._ref[d]), float(qv[k, d]))
        self._measure_all()

    def get_params(self) -> dict[str, torch.Tensor]:
        m = self.model
        return {"body_mass": torch.as_tensor(m.body_mass * self._mass_factor),
                "geom_friction": torch.as_tensor(m.geom_friction[None] * self._friction_factor[:, None, None]),
                "dof_damping": torch.as_tensor(self._damping.copy()),
                "actuator_gain": torch.as_tensor(self._gear.copy())}  # fmt: skip

    # ------------------------------------------------------------------------------------------ step
    def step(self, action: torch.Tensor):
        """One control period: ``frame_skip`` PyBullet steps with motor, passive and push forces each substep."""
        a = torch.clamp(self.check_action(action).cpu(), self.act_low, self.act_high)
        self._ctrl[:] = a.numpy()
        self._update_pushes()
        pb, c = self._pb, self.client
        before = self._read()[0][:, :2]  # forward position: the planar root's slide joints (x, z)
        motor = (self._gear * self._ctrl) @ self._act_to_dof  # (N, nv) joint torques of the motors
        for _ in range(self.frame_skip):
            q, qd = self._read()
            tau = motor - self._dof_stiffness * (q - self._springref) - self._damping * qd
            for i, r in enumerate(self.robots):
                c.setJointMotorControlArray(r, self._joints, pb.TORQUE_CONTROL, forces=tau[i].tolist())
                if self._push[i].any():
                    pos = c.getLinkState(r, self._root_link)[0] if self._root_link >= 0 else [0.0, 0.0, 0.0]
                    c.applyExternalForce(r, self._root_link, self._push[i, :3].tolist(), pos, pb.WORLD_FRAME)
            c.stepSimulation()
        after = self._measure_all()
        vel = torch.as_tensor((after - before) / self.dt)
        reward64, terminated = self._reward_done(torch.as_tensor(self._obs), torch.as_tensor(self._aux), vel, a.double())
        return self._finish_step(reward64, terminated)

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.disconnect()
            self.client = None
        super().close()


def _xyzw(q_wxyz: np.ndarray) -> list[float]:
    return [float(q_wxyz[1]), float(q_wxyz[2]), float(q_wxyz[3]), float(q_wxyz[0])]


def _floor(c: Any, m: MjModel) -> int:
    """The world's plane geom as a static PyBullet plane (the tasks' floor); ValueError when there is none."""
    planes = [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) == 0 and int(m.geom_type[g]) == 0]  # mjGEOM_PLANE
    if not planes:
        raise ValueError("the PyBullet engine needs a floor: a plane geom in the worldbody")
    g = planes[0]
    shape = c.createCollisionShape(c.GEOM_PLANE)
    return c.createMultiBody(0.0, shape, -1, [float(x) for x in m.geom_pos[g]], _xyzw(m.geom_quat[g]))


def _collision_shape(c: Any, m: MjModel, b: int) -> int:
    """One (compound) PyBullet collision shape of body ``b``'s colliding geoms, in the body frame (-1: none)."""
    kinds = {2: c.GEOM_SPHERE, 3: c.GEOM_CAPSULE, 5: c.GEOM_CYLINDER, 6: c.GEOM_BOX}  # mjGEOM_SPHERE, ...
    geoms = [g for g in range(m.ngeom) if int(m.geom_bodyid[g]) == b and (m.geom_contype[g] or m.geom_conaffinity[g])]
    if not geoms:
        return -1
    types, radii, halves, lengths, poss, orns = [], [], [], [], [], []
    for g in geoms:
        t, size = int(m.geom_type[g]), m.geom_size[g]
        if t not in kinds:
            raise ValueError(f"the PyBullet engine takes sphere, capsule, cylinder and box geoms; geom {m.geom(g).name!r} "
                             f"of body {m.body(b).name!r} has MuJoCo type {t}")  # fmt: skip
        types.append(kinds[t])
        radii.append(float(size[0]))
        halves.append([float(x) for x in size] if t == 6 else [0.0, 0.0, 0.0])
        lengths.append(2.0 * float(size[1]) if t in (3, 5) else 0.0)  # MuJoCo: half-length; PyBullet: length
        poss.append([float(x) for x in m.geom_pos[g]])
        orns.append(_xyzw(m.geom_quat[g]))
    return c.createCollisionShapeArray(types, radii=radii, halfExtents=halves, lengths=lengths,
                                       collisionFramePositions=poss, collisionFrameOrientations=orns)  # fmt: skip


def build_multibody(c: Any, m: MjModel, base: tuple[float, float, float]) -> tuple[int, list[int], dict[int, int]]:
    """Build MuJoCo's compiled model ``m`` as one PyBullet multibody fixed at ``base`` (the world body).

    Each MuJoCo body becomes a link carrying its mass, centre of mass, principal inertia and colliding geoms, fixed
    to a chain of one light link per joint (MuJoCo applies a body's joints one after the other in its frame). The
    joint links carry the dofs' armature as a rotor inertia about the axis (for a slide, as mass): exact on the dof's
    own diagonal of the joint-space inertia; unlike MuJoCo's armature it is also felt by the parent joints.

    Returns:
        ``(body id, PyBullet joint index of each MuJoCo dof, {MuJoCo body: PyBullet link})``.
    """
    light = 1e-4  # [kg] mass of a joint link (PyBullet wants a positive mass on moving links)
    masses, shapes, poss, orns, ipos, iorns, parents, jtypes, axes = [], [], [], [], [], [], [], [], []
    rotor: dict[int, list[float]] = {}
    body_link: dict[int, int] = {0: -1}
    dof_joint: dict[int, int] = {}
    for b in range(1, m.nbody):
        parent = body_link[int(m.body_parentid[b])]
        frame_pos, frame_orn = [float(x) for x in m.body_pos[b]], _xyzw(m.body_quat[b])
        at = np.zeros(3)  # the chain's current point, in the body frame
        first = int(m.body_jntadr[b])
        for j in range(first, first + int(m.body_jntnum[b])):
            jp, axis, kind = np.asarray(m.jnt_pos[j]), np.asarray(m.jnt_axis[j], dtype=float), int(m.jnt_type[j])
            if j == first:  # the first joint link sits at the joint, in the body's orientation
                pos = [float(x) for x in np.asarray(frame_pos) + _rotate(m.body_quat[b], jp)]
                orn = frame_orn
            else:  # the next ones follow along the body frame
                pos, orn = [float(x) for x in jp - at], [0.0, 0.0, 0.0, 1.0]
            at = jp
            k = len(masses)
            arm = float(m.dof_armature[m.jnt_dofadr[j]])
            masses.append(light + (arm if kind == 2 else 0.0))
            rotor[k] = [float(x) + 1e-9 for x in (arm * axis**2 if kind == 3 else np.zeros(3))]
            shapes.append(-1)
            poss.append(pos)
            orns.append(orn)
            ipos.append([0.0, 0.0, 0.0])
            iorns.append([0.0, 0.0, 0.0, 1.0])
            parents.append(parent + 1)  # createMultiBody counts links from 1 (0: the base)
            jtypes.append(c.JOINT_REVOLUTE if kind == 3 else c.JOINT_PRISMATIC)
            axes.append([float(x) for x in axis])
            dof_joint[int(m.jnt_dofadr[j])] = k
            parent = k
        if int(m.body_jntnum[b]) > 0:
            pos, orn = [float(x) for x in -at], [0.0, 0.0, 0.0, 1.0]
        else:
            pos, orn = frame_pos, frame_orn
        k = len(masses)
        masses.append(float(m.body_mass[b]))
        shapes.append(_collision_shape(c, m, b))
        poss.append(pos)
        orns.append(orn)
        ipos.append([float(x) for x in m.body_ipos[b]])
        iorns.append(_xyzw(m.body_iquat[b]))
        parents.append(parent + 1)
        jtypes.append(c.JOINT_FIXED)
        axes.append([0.0, 0.0, 1.0])
        body_link[b] = k
    n = len(masses)
    robot = c.createMultiBody(0.0, -1, -1, list(base), [0.0, 0.0, 0.0, 1.0], linkMasses=masses,
                              linkCollisionShapeIndices=shapes, linkVisualShapeIndices=[-1] * n, linkPositions=poss,
                              linkOrientations=orns, linkInertialFramePositions=ipos,
                              linkInertialFrameOrientations=iorns, linkParentIndices=parents, linkJointTypes=jtypes,
                              linkJointAxis=axes)  # fmt: skip
    for k, inertia in rotor.items():
        c.changeDynamics(robot, k, localInertiaDiagonal=inertia)
    for b, k in body_link.items():
        if b > 0:
            c.changeDynamics(robot, k, localInertiaDiagonal=[float(x) for x in m.body_inertia[b]])
    for j in range(m.njnt):
        if m.jnt_limited[j]:
            lo, hi = (float(x) for x in m.jnt_range[j])
            c.changeDynamics(robot, dof_joint[int(m.jnt_dofadr[j])], jointLowerLimit=lo, jointUpperLimit=hi)
    return robot, [dof_joint[d] for d in range(m.nv)], {b: k for b, k in body_link.items() if b > 0}


def _rotate(q_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` rotated by the unit quaternion ``q`` (w, x, y, z)."""
    w, u = float(q_wxyz[0]), np.asarray(q_wxyz[1:], dtype=float)
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def load_robot(c: Any, path: str | Path, base: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[int, MjModel]:
    """Load a robot file (MJCF or URDF, compiled by MuJoCo) into PyBullet client ``c``: ``(body id, MjModel)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: MuJoCo cannot compile it, or it has what the builder does not take (see :func:`build_multibody`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"robot file not found: {path}")
    try:
        m = require_mujoco().MjModel.from_xml_path(str(path))
    except ValueError as e:
        raise ValueError(f"cannot compile robot file {path}: {e}") from None
    return build_multibody(c, m, base)[0], m


_PYBULLET_CLASSES: dict[type, type] = {}


def pybullet_task_class(task_cls: type[MujocoVecEnv]) -> type[MujocoPyBulletVecEnv]:
    """``task_cls`` with PyBullet physics: a subclass with MRO ``(task, ..., MujocoPyBulletVecEnv, MujocoVecEnv)``."""
    if issubclass(task_cls, MujocoPyBulletVecEnv):
        return task_cls
    if any(h in vars(c) for c in task_cls.__mro__ if c is not MujocoVecEnv for h in ("_position", "_position_batch")):
        raise ValueError(f"{task_cls.task_name}: the PyBullet engine runs tasks whose forward position is the root slide "
                         "joints (mujoco-halfcheetah, mujoco-hopper)")  # fmt: skip
    if task_cls not in _PYBULLET_CLASSES:
        name = f"{task_cls.__name__}PyBullet"
        doc = f"{task_cls.__name__} with PyBullet physics.\n\n{task_cls.__doc__ or ''}"
        bases = (task_cls, MujocoPyBulletVecEnv)
        _PYBULLET_CLASSES[task_cls] = type(name, bases, {"__doc__": doc, "__qualname__": name})  # pyright: ignore[reportGeneralTypeIssues]
    return _PYBULLET_CLASSES[task_cls]
