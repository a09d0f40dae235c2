"""Task ``mujoco-humanoid-walk``: velocity-command tracking with joint position targets (legged_gym / LIFT style).

Model: Gymnasium's ``humanoid.xml`` (42 kg, 17 hinge joints, sphere feet, no ankles) with its torque motors
turned into joint position servos inside MuJoCo (:meth:`HumanoidWalkEnv._edit_model`), so the PD law runs at
every physics substep: ``tau = clip(kp (q_target - q) - kd qdot, +-tau_max)``. The passive joint springs of the
MJCF are removed (the servo is the only actuator), joint damping and armature stay. Physics ``dt = 5 ms``
(``implicitfast``, Newton solver, 10 iterations; RK4 at 3 ms was 5x slower), 4 substeps: **50 Hz control**.

Action ``a`` in ``[-1, 1]^17`` (actuator order of the MJCF, ``spec.robot["joint_names"]``) ->
``q_target = default_joint_pos + action_scale * a`` clipped to the joint range.

=========================== ====== ======= ============ ============================================
joints                      kp     kd      action scale torque limit (= 0.4 gear of the v5 motors)
=========================== ====== ======= ============ ============================================
abdomen x/y/z, hip x/z      150    5       0.3 rad      40 N m
hip y (flexion)             200    5       0.7 rad      120 N m
knee                        200    5       0.8 rad      80 N m
shoulders, elbows           20     1       0.5 rad      10 N m
=========================== ====== ======= ============ ============================================

Leg gains follow ~35 kg humanoids (G1/T1: kp 100-200, kd 2-5); the servo bandwidth sqrt(kp / I) is ~15-40 rad/s,
well inside the 5 ms step. Default pose: qpos0 (the MJCF's keyframes are all qpos0) with hips flexed
-0.2 rad and knees -0.3 rad: qpos0's knee angle 0 lies outside the knee range [-160, -2] deg, a bent knee gives
the servo authority both ways, and this pair puts the centre of mass over the (point) feet (2.5 mm behind).
Torso height at that pose: 1.285 m. With point feet the robot cannot stand passively: action 0 falls in ~1.5 s.

Commands ``(vx, vy, yaw_rate)`` per env, ``vx, vy`` in the heading (yaw-only) frame: uniform in
:class:`CommandConfig`'s ranges, a fraction of standing commands (all zero), resampled every ``resample_s``.

Observation groups (``spec.obs_groups``, ``N`` envs; the critic starts from the policy group without noise):

* ``policy`` ``(N, 60)``: gyro (body) 3 | projected gravity (body) 3 | command 3 | joint pos - default 17 |
  joint vel 17 | last action 17, Gaussian noise on the first four sensors (:class:`ObsNoiseConfig`).
* ``critic`` ``(N, 121)``: the same 60 noise-free | base linear velocity (body) 3 | torso height 1 | foot
  contact forces (world, right|left, / body weight) 6 | push force (world, / body weight) 3 | the DR factors
  (``get_params() / nominal``; 1 with DR off): body mass 13, friction 1, joint damping 17, servo gain 17.

Reward per step = ``terms @ weights`` (:class:`RewardWeights`; terms in ``info["reward_terms"]``), weight x term:
``1.0 exp(-|v_cmd - v_xy|^2 / 0.25) + 0.5 exp(-(w_cmd - w_z)^2 / 0.25) + 0.5 alive - 1.0 v_z^2 - 0.05 |w_xy|^2
- 1.0 |g_xy|^2 - 0.01 |a - a_prev|^2 - 1e-5 sum tau^2 - 1e-4 sum |tau qdot|`` (legged_gym's terms, not scaled by
dt, so a tracking, upright robot earns ~2 per step). Terminated on a fall (torso height outside ``[0.8, 2.0]`` m,
tilt > 45 deg, or a diverged simulation); truncated after ``episode_steps`` (1000 = 20 s). DR defaults
(:func:`humanoid_dr`, on): masses and servo gains x U(0.9, 1.1), friction x U(0.5, 1.25), damping x U(0.8, 1.2),
80 N (std per axis) pushes on the torso for 0.1 s, started with probability 0.01 per step.

Backends (``backend=``): ``"cpu"`` (MuJoCo, an ``MjData`` per env) and ``"warp"`` (mujoco_warp, one batched
simulation on ``device``: :mod:`sim2real.sim.mujoco.warp`) write the same raw row per env (qpos | qvel | torso
xmat | foot forces | actuator forces) and share the batched torch maths (:meth:`HumanoidWalkEnv._features`, on
``device`` for warp). A seed gives the same resets, commands, DR draws and pushes (and sensor noise, except on a
GPU); from one state a step agrees to ~1e-4 relative (warp: float32). Friction cones are pyramidal by default: the
sphere feet get the same contact frame in both engines; capsule-floor contacts (none in 15k live env-steps of random
actions: they come with the fall that ends an episode) a rotated pyramid on warp (1e-3..1e-2 differences;
``friction_cone="elliptic"`` removes them, slower).
The task's validation (:func:`sim2real.tasks.humanoid_walk.validate`, the walking threshold) always runs the CPU
backend.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.sim import legged
from sim2real.sim.mujoco.env import MjData, MjModel, MujocoDRConfig, MujocoEnvConfig, MujocoVecEnv, require_mujoco
from sim2real.sim.vecenv import EnvSpec
from sim2real.tasks.gym_mujoco import gymnasium_asset

TASK = "mujoco-humanoid-walk"
_GRAVITY = 9.81

#: (kp [N m / rad], kd [N m s / rad], action scale [rad]) per joint group, matched by name substring.
_SERVO = {"abdomen": (150.0, 5.0, 0.3), "hip_x": (150.0, 5.0, 0.3), "hip_z": (150.0, 5.0, 0.3),
          "hip_y": (200.0, 5.0, 0.7), "knee": (200.0, 5.0, 0.8), "shoulder": (20.0, 1.0, 0.5),
          "elbow": (20.0, 1.0, 0.5)}  # fmt: skip
_DEFAULT_POSE = {"right_hip_y": -0.2, "left_hip_y": -0.2, "right_knee": -0.3, "left_knee": -0.3}
_FEET = ("right_foot", "left_foot")
_DR_TERMS = ("dr_body_mass", "dr_friction", "dr_joint_damping", "dr_servo_gain")
"""The critic's DR factor terms, in the column order of :meth:`HumanoidWalkEnv._dr_factors`."""


@dataclass
class CommandConfig:
    """Velocity commands, uniform per env; ``vx, vy`` in the heading frame."""

    lin_vel_x: tuple[float, float] = (-0.5, 1.0)
    lin_vel_y: tuple[float, float] = (-0.3, 0.3)
    yaw_rate: tuple[float, float] = (-0.5, 0.5)
    standing_fraction: float = 0.1
    """Fraction of resampled commands that are exactly zero."""
    resample_s: float = 5.0
    """Seconds between resamples (also at every reset)."""


@dataclass
class RewardWeights:
    """Weight per reward term (field order = ``reward_term_names`` = column order of ``info["reward_terms"]``)."""

    track_lin_vel: float = 1.0
    track_yaw_rate: float = 0.5
    alive: float = 0.5
    lin_vel_z: float = -1.0
    ang_vel_xy: float = -0.05
    orientation: float = -1.0
    action_rate: float = -0.01
    torques: float = -1e-5
    power: float = -1e-4


@dataclass
class RewardConfig:
    weights: RewardWeights = field(default_factory=RewardWeights)
    lin_vel_sigma: float = 0.25
    """sigma of ``exp(-|v_cmd - v|^2 / sigma)`` [m^2/s^2]."""
    yaw_rate_sigma: float = 0.25


@dataclass
class ObsNoiseConfig:
    """Gaussian sensor noise std on the ``policy`` group (the critic sees the clean values)."""

    enabled: bool = True
    gyro: float = 0.1
    gravity: float = 0.025
    joint_pos: float = 0.01
    joint_vel: float = 0.5


@dataclass
class TerminationConfig:
    min_height: float = 0.8
    """Torso height limits [m] (standing: 1.285)."""
    max_height: float = 2.0
    max_tilt: float = math.pi / 4
    """Largest angle between the torso z axis and the vertical [rad]."""


def humanoid_dr() -> MujocoDRConfig:
    """This task's DR defaults: +-10 % masses, gains; friction 0.5-1.25; a 0.1 s push every ~2 s."""
    return MujocoDRConfig(enabled=True, mass_scale=(0.9, 1.1), friction_scale=(0.5, 1.25), damping_scale=(0.8, 1.2),
                          gain_scale=(0.9, 1.1), push_prob=0.01, push_force_std=80.0, push_steps=5)  # fmt: skip


@dataclass
class HumanoidWalkConfig(MujocoEnvConfig):
    """Settings of ``mujoco-humanoid-walk`` (``frame_skip=None``: 4; ``reset_noise_scale=None``: 0.02)."""

    dr: MujocoDRConfig = field(default_factory=humanoid_dr)
    timestep: float = 0.005
    """Physics step [s]; control period = ``timestep * frame_skip``."""
    commands: CommandConfig = field(default_factory=CommandConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    noise: ObsNoiseConfig = field(default_factory=ObsNoiseConfig)
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    friction_cone: str = "pyramidal"
    """``"pyramidal"`` (the MJCF's; faster) or ``"elliptic"`` (rotation invariant: the backends agree on capsule
    contacts too, at -10 % env steps/s on the CPU backend and -23 % on Warp's CPU device); see the module docstring."""


class HumanoidWalkEnv(MujocoVecEnv):
    """Batched humanoid velocity tracking on either backend (see the module docstring); float32 outputs on ``device``."""

    task_name = TASK
    default_frame_skip = 4
    default_reset_noise = 0.02
    aux_dim = 1
    reward_term_names = tuple(f.name for f in fields(RewardWeights))
    dr_gain_scales_bias = True  # warp backend: the servo bias follows the randomized gain (CPU: in _randomize)

    def __init__(self, cfg: HumanoidWalkConfig | None = None, **overrides: Any) -> None:
        self.xml_path = gymnasium_asset("humanoid.xml")
        super().__init__(cfg or HumanoidWalkConfig(), **overrides)
        self.cfg: HumanoidWalkConfig
        n, m = self.num_envs, self.model
        self._warp = self.cfg.backend == "warp"
        dev = self._dev = self.device if self._warp else torch.device("cpu")  # where the batched maths runs
        mujoco = require_mujoco()
        d = mujoco.MjData(m)  # standing pose: default joint angles, feet `reset_noise` above the floor
        d.qpos[self._qadr] = self.default_pose
        mujoco.mj_kinematics(m, d)
        low = min(d.geom_xpos[g, 2] - m.geom_size[g, 0] for g in self._foot_geoms)
        self.init_qpos = d.qpos.copy()
        self.init_qpos[2] += self.reset_noise - low
        t = lambda x, dtype=torch.float64: torch.as_tensor(np.asarray(x), dtype=dtype, device=dev)  # noqa: E731
        self._pose_t, self._scale_t, self._kp_t = t(self.default_pose), t(self.action_scale), t(self.kp)
        self._qadr_t, self._dadr_t = t(self._qadr, torch.long), t(self._dadr, torch.long)
        self._feet_t = t(self._foot_bodies, torch.long)
        self._nominal_dr = {k: t(v) for k, v in self._nominal.items()}
        self.commands = torch.zeros(n, 3, dtype=torch.float64, device=dev)
        """Commands ``(N, 3)``: vx, vy [m/s] (heading frame), yaw rate [rad/s]."""
        self._cmd_left = torch.zeros(n, dtype=torch.long)  # on the host: due resamples are known without a sync
        self._resample_steps = max(1, round(self.cfg.commands.resample_s / self.dt))
        z = lambda *shape: torch.zeros(shape, dtype=torch.float64, device=dev)  # noqa: E731
        self._action, self._prev_action = z(n, self.nu), z(n, self.nu)  # (N, 17) in [-1, 1]
        self._terms, self._errors, self._dr = z(n, len(self.reward_term_names)), z(n, 2), z(n, self._dr_dim) + 1
        self._weights = t(astuple(self.cfg.reward.weights))  # (T,)
        std = self.spec.obs_groups["policy"].noise_std()
        self._noise_std = t(std) if self.cfg.noise.enabled else None  # (60,)
        warp: Any = self  # the warp backend's attributes (device_gen, _obs_t, batch) exist only on its classes
        self._noise_gen = warp.device_gen if self._warp else self.gen  # sensor noise (device_gen: self.gen on CPU)
        self._weight_n = float(self._nominal["body_mass"].sum()) * _GRAVITY  # body weight [N]

    # ------------------------------------------------------------------------------------------ model
    def _edit_model(self, model: MjModel) -> None:
        """Motors -> position servos: ``force = kp ctrl - kp q - kd qdot`` (gain fixed, bias affine), gear 1."""
        mujoco = require_mujoco()
        cfg = self.cfg
        jnt = model.actuator_trnid[:, 0]
        self.joint_names = [model.joint(j).name for j in jnt]
        table = [next(v for k, v in _SERVO.items() if k in name) for name in self.joint_names]
        self.kp, self.kd, self.action_scale = (np.array(c, dtype=np.float64) for c in zip(*table))
        self.torque_limit = 0.4 * model.actuator_gear[:, 0].copy()  # the v5 motors' peak torque
        self.default_pose = np.array([_DEFAULT_POSE.get(name, 0.0) for name in self.joint_names])
        self._qadr, self._dadr = model.jnt_qposadr[jnt].copy(), model.jnt_dofadr[jnt].copy()
        self._foot_bodies = [model.body(b).id for b in _FEET]
        self._foot_geoms = [model.geom(b).id for b in _FEET]
        model.actuator_gaintype[:] = mujoco.mjtGain.mjGAIN_FIXED
        model.actuator_biastype[:] = mujoco.mjtBias.mjBIAS_AFFINE
        # a motor has gainprm = (1, 0, ...), biasprm = 0, gear = (g, 0, ...): only these entries change
        model.actuator_gainprm[:, 0] = self.kp  # gain * ctrl = kp q_target
        model.actuator_biasprm[:, 1:3] = np.stack((-self.kp, -self.kd), 1)  # bias = -kp q - kd qdot
        model.actuator_gear[:, 0] = 1.0
        model.actuator_ctrlrange[:] = model.jnt_range[jnt]
        model.actuator_ctrllimited[:] = 1
        model.actuator_forcerange[:] = np.stack((-self.torque_limit, self.torque_limit), 1)
        model.actuator_forcelimited[:] = 1
        model.jnt_stiffness[:] = 0.0  # no passive springs toward qpos0
        model.opt.timestep = cfg.timestep
        model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        model.opt.iterations, model.opt.ls_iterations = 10, 20
        if cfg.friction_cone not in ("pyramidal", "elliptic"):
            raise ValueError(f"friction_cone must be 'pyramidal' or 'elliptic', got {cfg.friction_cone!r}")
        model.opt.cone = getattr(mujoco.mjtCone, f"mjCONE_{cfg.friction_cone.upper()}")
        self._dr_dim = (model.nbody - 1) + 1 + 2 * model.nu
        w = mujoco.mjtWarning
        self._bad_warnings = [int(w.mjWARN_BADQPOS), int(w.mjWARN_BADQVEL), int(w.mjWARN_BADQACC)]

    def _randomize(self, i: int) -> None:
        """Base DR; CPU: the servo's bias follows its randomized gain, the critic's factors (warp: in _reset_idx)."""
        super()._randomize(i)
        if self._warp:  # the backend scales the bias per world (dr_gain_scales_bias)
            return
        m = self.models[i]
        gain = m.actuator_gainprm[:, 0] / self.kp  # motor strength factor: kp and kd scale together
        m.actuator_biasprm[:, 1] = -self.kp * gain
        m.actuator_biasprm[:, 2] = -self.kd * gain
        p = {k: torch.as_tensor(getattr(m, k))[None] for k in ("body_mass", "geom_friction", "dof_damping")}
        self._dr[i] = self._dr_factors({**p, "actuator_gain": torch.as_tensor(m.actuator_gainprm[None, :, 0])})[0]

    def _dr_factors(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """The critic's DR factors ``(K, 48)`` from :meth:`get_params`-like float64 params of ``K`` envs."""
        nom, dadr = self._nominal_dr, self._dadr_t
        return torch.cat((p["body_mass"][:, 1:] / nom["body_mass"][1:],
                          p["geom_friction"][:, 0, :1] / nom["geom_friction"][0, :1],
                          p["dof_damping"][:, dadr] / nom["dof_damping"][dadr],
                          p["actuator_gain"] / self._kp_t), 1)  # fmt: skip

    def _obs_dim(self) -> int:
        """Width of the raw per-env row: qpos | qvel | torso xmat 9 | foot forces 6 | actuator forces."""
        return self.nq + self.nv + 9 + 6 + self.nu

    def _measure(self, model: MjModel, data: MjData, obs: np.ndarray, aux: np.ndarray) -> None:
        """CPU: copy the raw state into ``obs`` (the maths is batched in :meth:`_features`); aux = divergence."""
        feet = data.cfrc_ext[self._foot_bodies, 3:].ravel()  # force part of [torque, force]
        obs[:] = np.concatenate((data.qpos, data.qvel, data.xmat[self.root_body], feet, data.actuator_force))
        # MuJoCo resets a diverged simulation itself; its bad qpos/qvel/qacc warning counters tell us it did
        aux[0] = data.warning.number[self._bad_warnings].sum()

    def _measure_batch(self, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp: the same raw rows ``(N, obs_dim)`` from the batched views; aux = MuJoCo's bad qpos/qvel test."""
        raw = torch.cat((b.qpos, b.qvel, b.xmat[:, self.root_body].flatten(1),
                         b.cfrc_ext[:, self._feet_t, 3:].flatten(1), b.actuator_force), 1)  # fmt: skip
        ok = (b.qpos.abs() <= 1e10).all(1) & (b.qvel.abs() <= 1e10).all(1)  # mjMAXVAL; False on NaN
        return raw, (~ok).float()[:, None]

    def _raw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The last measured raw rows ``(N, obs_dim)`` and push forces ``(N, 3)`` (world), float64 on ``_dev``."""
        if self._warp:
            warp: Any = self
            return warp._obs_t.double(), warp.batch.xfrc_applied[:, self.root_body, :3].double()
        return torch.as_tensor(self._obs), torch.as_tensor(self._push[:, :3])

    def _make_spec(self) -> EnvSpec:
        nz, nu = self.cfg.noise, self.nu
        policy = ObsGroup.of(
            ObsTerm("base_ang_vel", 3, "body [rad/s]", nz.gyro, legged.IMU_GYRO),
            ObsTerm("projected_gravity", 3, "body", nz.gravity, legged.IMU_GRAVITY),
            ObsTerm("command", 3, "heading frame: vx, vy [m/s], yaw_rate [rad/s]", source=legged.CMD_VEL),
            ObsTerm("joint_pos", nu, "action order, minus default_joint_pos [rad]", nz.joint_pos, legged.JOINT_POS),
            ObsTerm("joint_vel", nu, "action order [rad/s]", nz.joint_vel, legged.JOINT_VEL),
            ObsTerm("last_action", nu, "action order", source=legged.LAST_ACTION),
        )  # fmt: skip
        critic = policy.noise_free().extended(
            ObsTerm("base_lin_vel", 3, "body [m/s]"), ObsTerm("base_height", 1, "world z of the torso [m]"),
            ObsTerm("foot_contact_force", 6, "world, right|left, / body weight"),
            ObsTerm("push_force", 3, "world, / body weight"),
            ObsTerm("dr_body_mass", self.model.nbody - 1, "factor, bodies 1.."), ObsTerm("dr_friction", 1, "factor"),
            ObsTerm("dr_joint_damping", nu, "factor, action order"), ObsTerm("dr_servo_gain", nu, "factor, action order"),
        )  # fmt: skip
        rnd = lambda x: [round(float(v), 6) for v in x]  # noqa: E731
        robot = {
            "name": "gymnasium humanoid", "xml": self.xml_path, "joint_names": self.joint_names,
            "default_joint_pos": rnd(self.default_pose), "action_scale": rnd(self.action_scale),
            "kp": rnd(self.kp), "kd": rnd(self.kd), "torque_limit": rnd(self.torque_limit),
            "joint_range": [rnd(r) for r in self.model.actuator_ctrlrange],
            "control": "joint position targets: q_target = default_joint_pos + action_scale * action",
            "timestep": float(self.model.opt.timestep), "frame_skip": self.frame_skip,
            "commands": {"lin_vel_x": self.cfg.commands.lin_vel_x, "lin_vel_y": self.cfg.commands.lin_vel_y,
                         "yaw_rate": self.cfg.commands.yaw_rate},
        }  # fmt: skip
        return EnvSpec(
            task=self.task_name,
            obs_groups={"policy": policy, "critic": critic},
            action_dim=nu,
            action_meaning={"type": "joint position targets", "names": self.joint_names, "formula": robot["control"]},
            control_dt=self.dt,
            max_episode_steps=self.cfg.episode_steps,
            robot=robot,
        )

    # ------------------------------------------------------------------------------------------ state
    def set_commands(self, commands: torch.Tensor, env_ids: torch.Tensor | None = None) -> None:
        """Set the commands ``(K, 3)`` of envs ``env_ids`` (all when None); the resample timer restarts."""
        ids = self._ids(env_ids)
        self.commands[ids] = torch.as_tensor(commands, dtype=torch.float64).reshape(len(ids), 3).to(self._dev)
        self._cmd_left[ids] = self._resample_steps

    def _resample_commands(self, ids: list[int]) -> None:
        if not ids:
            return
        c, k = self.cfg.commands, len(ids)
        lo, hi = torch.tensor((c.lin_vel_x, c.lin_vel_y, c.yaw_rate), dtype=torch.float64).T  # (3,) each
        cmd = lo + (hi - lo) * torch.rand(k, 3, generator=self.gen, dtype=torch.float64)  # U(lo, hi)
        standing = torch.rand(k, generator=self.gen, dtype=torch.float64) < c.standing_fraction
        self.set_commands(cmd * ~standing[:, None], torch.as_tensor(ids))

    def _reset_idx(self, ids: list[int]) -> None:
        super()._reset_idx(ids)
        if not ids:
            return
        if self._warp and self.cfg.dr.enabled:  # the new worlds' parameters are applied: factors of every world
            self._dr = self._dr_factors(self.get_params())
        self._action[ids] = self._prev_action[ids] = 0.0
        self._resample_commands(ids)

    # ------------------------------------------------------------------------------------------ maths
    def _features(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical quantities ``(N, ·)`` float64 from the raw rows ``(N, obs_dim)`` of either backend."""
        nq, nv, n = self.nq, self.nv, raw.shape[0]
        qpos, qvel = raw[:, :nq], raw[:, nq : nq + nv]
        rot = raw[:, nq + nv : nq + nv + 9].reshape(n, 3, 3)  # R: body -> world
        omega_b = qvel[:, 3:6]  # a free joint's angular velocity is in the body frame
        v_w = qvel[:, 0:3]  # ... and its linear velocity in the world frame
        yaw = torch.atan2(rot[:, 1, 0], rot[:, 0, 0])
        cy, sy = torch.cos(yaw), torch.sin(yaw)
        joint_vel = qvel[:, self._dadr_t]
        tau = raw[:, nq + nv + 15 :]
        return {
            "omega_b": omega_b,
            "gravity_b": legged.projected_gravity(rot),  # R^T (0, 0, -1)
            "v_b": torch.einsum("nij,ni->nj", rot, v_w),  # R^T v_w
            "v_heading": torch.stack((cy * v_w[:, 0] + sy * v_w[:, 1], -sy * v_w[:, 0] + cy * v_w[:, 1]), 1),
            "v_z": v_w[:, 2],
            "yaw_rate": (rot[:, 2, :] * omega_b).sum(1),  # (R omega_b)_z
            "joint_pos": qpos[:, self._qadr_t] - self._pose_t,
            "joint_vel": joint_vel,
            "height": qpos[:, 2:3],
            "foot_force": raw[:, nq + nv + 9 : nq + nv + 15] / self._weight_n,
            "torque_sq": tau.square().sum(1),
            "power": (tau * joint_vel).abs().sum(1),
        }

    def observe(self) -> dict[str, torch.Tensor]:
        """``{"policy": (N, 60), "critic": (N, 121)}`` float32 on ``device`` (policy with sensor noise)."""
        raw, push = self._raw()
        f = self._features(raw)
        groups = self.spec.obs_groups
        sensed = {"base_ang_vel": f["omega_b"], "projected_gravity": f["gravity_b"], "command": self.commands,
                  "joint_pos": f["joint_pos"], "joint_vel": f["joint_vel"], "last_action": self._action}  # fmt: skip
        clean = groups["policy"].concat(**sensed)
        dr = self._dr.split([groups["critic"].term(t).size for t in _DR_TERMS], 1)  # _dr_factors: the terms in order
        critic = groups["critic"].concat(
            **sensed, base_lin_vel=f["v_b"], base_height=f["height"], foot_contact_force=f["foot_force"],
            push_force=push / self._weight_n, **dict(zip(_DR_TERMS, dr)),
        )  # fmt: skip
        policy = clean
        if self._noise_std is not None:
            noise = torch.randn(clean.shape, generator=self._noise_gen, dtype=torch.float64, device=self._dev)
            policy = clean + self._noise_std * noise
        out = {"policy": policy, "critic": critic}
        return {k: torch.nan_to_num(v).float().to(self.device) for k, v in out.items()}

    def _reward_done(
        self, obs: torch.Tensor, aux: torch.Tensor, velocity: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward ``(N,)`` = terms ``(N, T)`` @ weights, terminated ``(N,)``; then resamples due commands."""
        f, cfg = self._features(obs), self.cfg.reward
        t = self.cfg.termination
        finite = torch.isfinite(obs).all(1) & (aux[:, 0] == 0)
        h = f["height"][:, 0]
        upright = -f["gravity_b"][:, 2]  # cos(tilt)
        fell = (h < t.min_height) | (h > t.max_height) | (upright < math.cos(t.max_tilt))
        terminated = fell | ~finite
        err_xy = (self.commands[:, :2] - f["v_heading"]).norm(dim=1)
        err_yaw = (self.commands[:, 2] - f["yaw_rate"]).abs()
        # fmt: off
        terms = torch.stack((
            torch.exp(-err_xy.square() / cfg.lin_vel_sigma),  # exp(-|v_cmd - v|^2 / sigma)
            torch.exp(-err_yaw.square() / cfg.yaw_rate_sigma),  # exp(-(w_cmd - w_z)^2 / sigma)
            (~terminated).double(),  # alive
            f["v_z"].square(),  # vertical velocity (world)
            f["omega_b"][:, :2].square().sum(1),  # roll / pitch rates
            f["gravity_b"][:, :2].square().sum(1),  # tilt: |g_xy|^2 = sin^2(tilt)
            (self._action - self._prev_action).square().sum(1),  # action rate
            f["torque_sq"], f["power"]), 1)  # sum tau^2, sum |tau qdot|
        # fmt: on
        self._terms = torch.where(finite[:, None], terms, 0.0)
        self._errors = torch.where(finite[:, None], torch.stack((err_xy, err_yaw), 1), 0.0)
        self._cmd_left -= 1  # after the reward: the next observation carries the new command
        self._resample_commands((self._cmd_left <= 0).nonzero().flatten().tolist())
        return self._terms @ self._weights, terminated

    def reward_from_terms(self, terms: torch.Tensor) -> torch.Tensor:
        return terms @ self._weights.to(terms)

    def step(self, action: torch.Tensor):
        """One 20 ms control step for actions ``(N, 17)`` in [-1, 1] (clipped); the :class:`VecEnv` contract.

        ``info`` adds ``reward_terms`` ``(N, T)`` and ``tracking_error`` ``(N, 2)`` = (|v_cmd - v_xy| [m/s],
        |yaw_rate_cmd - yaw_rate| [rad/s]) of the step, before any reset.
        """
        a = self.check_action(action).to(self._dev, torch.float64).clamp(-1.0, 1.0)
        self._prev_action, self._action = self._action, a
        target = legged.joint_targets(a, self._pose_t, self._scale_t, self.act_low.double(), self.act_high.double())
        obs, reward, terminated, truncated, info = super().step(target)  # q_target
        info["reward_terms"] = self._terms.float().to(self.device)
        info["tracking_error"] = self._errors.float().to(self.device)
        return obs, reward, terminated, truncated, info
