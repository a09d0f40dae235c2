"""Task ``peg-insert``: put a peg held in a two-pad gripper into a socket with 1 mm clearance, by touch (TacSL-style).

The scene (MuJoCo, built by :func:`scene_xml`): a hand on a stiff position-controlled arm (three slide joints, each
driven by a servo of ``HAND_KP`` with a force limit of ``HAND_FORCE``), two elastomer pads on it squeezing a
cylindrical peg (radius 5 mm) that the grasp holds by friction: pushed harder than ``GRASP_FRICTION`` the peg slides
along the pads or turns between them, and stays where it slid. A socket of four walls stands around a square hole
1 mm wider than the peg, on a mocap body placed anywhere in a 4 x 4 cm square. The action moves the arm's target by
at most ``max_step_m`` per axis and step (``(3,)`` in [-1, 1], 20 Hz). An episode ends when the peg's tip is
``insert_depth_m`` into the hole (success), when the peg has slipped more than ``max_slip_m`` in the grasp (the
grasp is lost: failure, ``lost_grasp_penalty``) or after ``episode_s``.

Why touch is needed: the arm follows its commands whatever the peg meets (it never stalls below the grasp's
friction), so proprioception carries no sign of contact; a misplaced peg only slides up in the grasp, which the pads
feel. Where the peg sits in the grasp (up to 5 mm off along the pads) is visible in the pads' imprint and nowhere
else, and the hole forgives about 1 mm: a policy that cannot feel has to guess, and each wrong press uses up grasp.

Randomised per episode: the peg's pose in the hand (offset along the pads, height, tilt: the springs' rest
positions), the socket's position and the error of its estimate, the friction, the tactile constants.

Observation groups:

* ``policy`` (what a robot knows): the hand's position relative to the *estimated* socket, its velocity, the last
  action;
* ``tactile``: both pads' TacSL force fields (:mod:`sim2real.sim.tactile`: pressure and shear on a ``14 x 10`` taxel
  grid, in newtons times ``force_scale``), or their RGB images (``tactile="image"``, ``2 x 3 x 80 x 60`` in
  [0, 1]);
* ``critic`` (privileged): the policy group noise-free, the peg tip relative to the *true* socket, the peg's pose
  in the hand, the estimate's error and the contact force on the peg.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.sim.mujoco.env import require_mujoco
from sim2real.sim.sdf import Cylinder
from sim2real.sim.tactile import ContactShape, PadGeometry, RigidState, TactileConstants, TactileSensor
from sim2real.sim.tactile_image import Augmentation, TactileCamera, TactileImageConfig
from sim2real.sim.vecenv import EnvConfig, EnvSpec, VecEnv

TASK = "peg-insert"
PEG_RADIUS, PEG_HALF_LENGTH = 0.005, 0.02
CLEARANCE = 0.001  # hole width - peg diameter
SOCKET_DEPTH, WALL = 0.02, 0.01
PAD_HALF = (0.010, 0.0125, 0.002)  # pad box half sizes: face 20 x 25 mm, 4 mm thick
GRIP_DEPTH = 0.0005  # the peg presses this far into each pad
PAD_HEIGHT = 0.012  # pads' centre above the peg's centre
TIMESTEP, FRAME_SKIP = 0.002, 25
# The grasp: the peg sits on springs (slip along x and z [N/m, N s/m, kg]; the tilt's are 1e-3 of these [N m/rad]) stiff
# enough that the hole's chamfer-less walls do not steer a misplaced peg in: it has to arrive where the hole is.
GRASP_FRICTION, GRASP_C, GRASP_M, GRASP_ARM = 10.0, 20.0, 0.005, 0.05
"""The grasp holds the peg by friction: it slips along x and z when pushed harder than GRASP_FRICTION [N] and tilts
beyond GRASP_FRICTION * GRASP_ARM [N m] (damping [N s/m] and armature [kg] keep the slip smooth)."""
SLIP_RANGE = (0.012, 0.012, 0.3)  # the grasp's physical limits: x, z [m], tilt [rad] (the pads' edges, the palm)
HAND_KP, HAND_FORCE, HAND_MASS = 30_000.0, 40.0, 3.0  # the arm's position servo [N/m], its force limit [N], mass [kg]
START_HEIGHT = 0.025  # the tip above the socket's top at the start


@dataclass
class PegRandomization:
    """Ranges drawn per episode (uniform in [-x, x] unless a pair)."""

    in_hand_offset_m: float = 0.005
    """Peg offset along the pads (the hand's x)."""
    in_hand_height_m: float = 0.003
    """Peg offset along its axis."""
    in_hand_tilt_rad: float = 0.03
    """Peg tilt about the axis across the pads."""
    socket_range_m: float = 0.02
    """Socket position in the table's square (x and y)."""
    socket_estimate_std_m: float = 0.0005
    """Error of the socket estimate the policy gets (Gaussian per axis, fixed per episode)."""
    start_offset_m: float = 0.005
    """The hand starts this far (x, y) from above the estimated socket."""
    friction: tuple[float, float] = (0.3, 0.8)
    tactile_k_n: tuple[float, float] = (150.0, 350.0)
    """Normal stiffness of the pads' force field (TacSL's training range)."""


@dataclass
class PegInsertConfig(EnvConfig):
    """The task's settings."""

    num_envs: int = 32
    episode_s: float = 5.0
    max_step_m: float = 0.002
    """Largest target move per axis and step."""
    insert_depth_m: float = 0.01
    """Success: the tip this far below the socket's top, inside the hole."""
    tactile: str = "force_field"
    """``force_field`` (2 x 14 x 10 x 3), ``image`` (2 x 3 x 80 x 60) or ``none``."""
    force_scale: float = 1000.0
    """The force field's unit in the observation: newtons times this (k_n ~ 250 N/m x 0.5 mm ~ 0.1 N)."""
    taxels: tuple[int, int] = (14, 10)
    """The force field's grid on each pad (rows along the pad's y, columns along its x)."""
    image: TactileImageConfig = field(default_factory=TactileImageConfig)
    """The tactile images (``tactile="image"``): resolution, difference images, calibration."""
    augmentation: Augmentation = field(default_factory=Augmentation)
    """Training augmentation of the tactile images (colour, noise, blur); evaluation turns it off."""
    success_bonus: float = 10.0
    max_slip_m: float = 0.008
    """The grasp is lost when the peg has slipped this far (x and z) from where it was grasped: the episode ends, failed."""
    max_slip_tilt_rad: float = 0.1
    """... or has turned this far in the grasp."""
    lost_grasp_penalty: float = 10.0
    """Subtracted from the reward of the step that loses the grasp. Kept small: at 50 the teacher learns to keep the
    peg away from the socket (no success in 100k steps); at 10 it inserts."""
    randomization: PegRandomization = field(default_factory=PegRandomization)
    num_threads: int = 2
    compile: bool = False
    """Fuse the tactile sensor with torch.compile (faster after a first compile of a few seconds)."""

    def for_evaluation(self, num_envs: int) -> PegInsertConfig:
        """Evaluation sees unaugmented images."""
        return replace(super().for_evaluation(num_envs), augmentation=Augmentation())

    def __post_init__(self) -> None:
        if self.tactile not in ("force_field", "image", "none"):
            raise ValueError(f"tactile must be force_field, image or none, got {self.tactile!r}")
        if not (self.episode_s > 0 and self.max_step_m > 0 and 0 < self.insert_depth_m < SOCKET_DEPTH):
            raise ValueError(f"need episode_s > 0, max_step_m > 0 and 0 < insert_depth_m < {SOCKET_DEPTH}")


def scene_xml() -> str:
    """The MJCF of the scene (module docstring); sizes from the module constants."""
    hole = PEG_RADIUS + CLEARANCE / 2  # half width of the square hole
    z, c = SOCKET_DEPTH / 2, hole + WALL / 2  # the walls' half height, their centres' distance from the hole's
    walls = "".join(f'<geom type="box" size="{WALL / 2} {hole + WALL} {z}" pos="{s * c} 0 {z}"/>'
                    f'<geom type="box" size="{hole} {WALL / 2} {z}" pos="0 {s * c} {z}"/>' for s in (1, -1))  # fmt: skip
    y = PEG_RADIUS + PAD_HALF[2] - GRIP_DEPTH  # each pad's centre from the peg's axis
    pad = f'type="box" size="{PAD_HALF[0]} {PAD_HALF[1]} {PAD_HALF[2]}" contype="0" conaffinity="0" mass="0.02"'
    kv = 2 * math.sqrt(HAND_KP * HAND_MASS)  # critically damped servo
    servo = f'kp="{HAND_KP}" kv="{kv}" forcerange="{-HAND_FORCE} {HAND_FORCE}"'
    hand = "".join(
        f'<joint name="hand_{a}" type="slide" axis="{ax}"/>' for a, ax in zip("xyz", ("1 0 0", "0 1 0", "0 0 1"))
    )
    slip = f'frictionloss="{GRASP_FRICTION}" damping="{GRASP_C}" armature="{GRASP_M}"'
    r = GRASP_ARM**2
    tilt = f'frictionloss="{GRASP_FRICTION * GRASP_ARM}" damping="{GRASP_C * r}" armature="{GRASP_M * r}"'
    limit = 'solreflimit="0.004 1"'
    return f"""<mujoco model="peg_insert">
  <compiler angle="radian"/>
  <option timestep="{TIMESTEP}"/>
  <default><geom friction="0.5 0.005 0.0001" solref="0.004 1"/></default>
  <worldbody>
    <geom name="table" type="plane" size="0.3 0.3 0.01"/>
    <body name="socket" mocap="true">{walls}</body>
    <body name="hand" gravcomp="1">
      {hand}
      <geom name="palm" type="box" size="0.015 0.02 0.005" pos="0 0 0.035" mass="{HAND_MASS}" contype="0" conaffinity="0"/>
      <geom name="pad0" {pad} pos="0 {y} {PAD_HEIGHT}" euler="{math.pi / 2} 0 0"/>
      <geom name="pad1" {pad} pos="0 {-y} {PAD_HEIGHT}" euler="{-math.pi / 2} 0 0"/>
      <body name="peg" gravcomp="1">
        <joint name="slip_x" type="slide" axis="1 0 0" range="{-SLIP_RANGE[0]} {SLIP_RANGE[0]}" {limit} {slip}/>
        <joint name="slip_z" type="slide" axis="0 0 1" range="{-SLIP_RANGE[1]} {SLIP_RANGE[1]}" {limit} {slip}/>
        <joint name="tilt" type="hinge" axis="0 1 0" range="{-SLIP_RANGE[2]} {SLIP_RANGE[2]}" {limit} {tilt}/>
        <geom name="peg" type="cylinder" size="{PEG_RADIUS} {PEG_HALF_LENGTH}" mass="0.02"/>
      </body>
    </body>
  </worldbody>
  <actuator>{"".join(f'<position name="hand_{a}" joint="hand_{a}" {servo}/>' for a in "xyz")}</actuator>
</mujoco>"""


def obs_groups(cfg: PegInsertConfig) -> dict[str, ObsGroup]:
    """The observation groups (module docstring), defined once."""
    policy = ObsGroup.of(
        ObsTerm("hand_to_socket_estimate", 3, "world, m"),
        ObsTerm("hand_velocity", 3, "world, m/s"),
        ObsTerm("last_action", 3, "[-1, 1]"),
    )
    groups = {"policy": policy, "critic": policy.noise_free().extended(
        ObsTerm("tip_to_socket", 3, "world, m"),
        ObsTerm("peg_in_hand", 3, "slide x, slide z [m], tilt [rad]"),
        ObsTerm("estimate_error", 3, "world, m"),
        ObsTerm("peg_contact_force", 3, "world, N"),
    )}  # fmt: skip
    tactile = tactile_description(cfg)
    if tactile:
        frame = f"{' x '.join(tactile['order'])}; {tactile['normalization']}"
        groups["tactile"] = ObsGroup.of(ObsTerm(tactile["term"], math.prod(tactile["shape"]), frame))
    return groups


def tactile_description(cfg: PegInsertConfig) -> dict[str, Any]:
    """What the ``tactile`` group holds (the env spec's ``sensors["tactile"]``, exported into a policy); ``{}``: none."""
    pads = ["pad0: on the hand's +y side, facing -y", "pad1: on the hand's -y side, facing +y"]
    if cfg.tactile == "force_field":
        rows, cols = cfg.taxels
        return {
            "kind": "force_field", "term": "force_field", "shape": [2, rows, cols, 3],
            "order": ["pad", "row", "col", "channel"], "channels": ["pressure", "shear_x", "shear_y"],
            "normalization": f"newtons x {cfg.force_scale:g}", "pads": pads,
            "grid": "rows along the pad's y, columns along its x, 3 mm margin",
        }  # fmt: skip
    if cfg.tactile == "image":
        im = cfg.image
        return {
            "kind": "image", "term": "image", "shape": [2, 3, im.rows, im.cols],
            "order": ["pad", "channel", "row", "col"], "channels": ["red", "green", "blue"],
            "normalization": "(image - no-contact image) / 255, in [-1, 1]" if im.difference else "intensity / 255, in [0, 1]",
            "pads": pads, "calibration": im.calibration or "shipped",
        }  # fmt: skip
    return {}


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


class PegInsertEnv(VecEnv):
    """The batched task (see the module docstring); every env has its own MjModel (randomised friction, springs)."""

    cfg: PegInsertConfig

    def __init__(self, cfg: PegInsertConfig | None = None) -> None:
        mujoco = require_mujoco()
        self.cfg = cfg = cfg or PegInsertConfig()
        self.num_envs, self.device = cfg.num_envs, torch.device(cfg.device)
        base = mujoco.MjModel.from_xml_string(scene_xml())
        self.models = [copy.copy(base) for _ in range(cfg.num_envs)]
        self.datas = [mujoco.MjData(m) for m in self.models]
        self._mj = mujoco
        self.ids = {name: mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_GEOM, name) for name in ("pad0", "pad1", "peg")}
        self.peg_body = mujoco.mj_name2id(base, mujoco.mjtObj.mjOBJ_BODY, "peg")
        self.max_steps = int(round(cfg.episode_s / (TIMESTEP * FRAME_SKIP)))
        tactile = tactile_description(cfg)
        self.spec = EnvSpec(TASK, obs_groups(cfg), 3, {"hand_target_delta": f"x, y, z; 1 = {cfg.max_step_m} m"},
                            TIMESTEP * FRAME_SKIP, self.max_steps, sensors={"tactile": tactile} if tactile else {})  # fmt: skip
        self.sensor = TactileSensor(PadGeometry(rows=cfg.taxels[0], cols=cfg.taxels[1]), compile=cfg.compile)
        self.camera = TactileCamera(config=cfg.image, compile=cfg.compile) if cfg.tactile == "image" else None
        self.augment = any(getattr(cfg.augmentation, f) for f in ("brightness", "offset", "noise", "blur"))
        self.pool = ThreadPoolExecutor(cfg.num_threads) if cfg.num_threads > 1 else None
        n = cfg.num_envs
        self.steps = torch.zeros(n, dtype=torch.long)
        self.socket = np.zeros((n, 3))
        self.estimate = np.zeros((n, 3))
        self.in_hand = np.zeros((n, 3))
        self.last_action = np.zeros((n, 3))
        self.returns = torch.zeros(n)
        self.gen = np.random.default_rng(0)
        self.k_n = torch.full((n,), 250.0)

    # ------------------------------------------------------------------------------------------ episodes
    def _reset_env(self, i: int) -> None:
        r, g, m, d = self.cfg.randomization, self.gen, self.models[i], self.datas[i]
        self._mj.mj_resetData(m, d)
        self.in_hand[i] = (g.uniform(-1, 1) * r.in_hand_offset_m, g.uniform(-1, 1) * r.in_hand_height_m,
                           g.uniform(-1, 1) * r.in_hand_tilt_rad)  # fmt: skip
        d.qpos[3:6] = self.in_hand[i]  # the grasp's pose (slip_x, slip_z, tilt): friction holds it
        m.geom_friction[:, 0] = g.uniform(*r.friction)
        self.socket[i] = (g.uniform(-1, 1) * r.socket_range_m, g.uniform(-1, 1) * r.socket_range_m, 0.0)
        self.estimate[i] = self.socket[i] + np.r_[g.normal(0, r.socket_estimate_std_m, 2), 0.0]
        d.mocap_pos[0] = self.socket[i]
        start = (
            self.estimate[i]
            + np.r_[g.uniform(-1, 1, 2) * r.start_offset_m, SOCKET_DEPTH + START_HEIGHT + PEG_HALF_LENGTH]
        )
        d.ctrl[:] = start
        d.qpos[0:3] = start
        self._mj.mj_forward(m, d)
        self.last_action[i] = 0.0
        self.k_n[i] = float(g.uniform(*r.tactile_k_n))

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        if seed is not None:
            self.gen = np.random.default_rng(seed)
        for i in range(self.num_envs):
            self._reset_env(i)
        self.steps.zero_()
        self.returns.zero_()
        return self._observe()

    def step(self, action: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor,
                                                  dict[str, Any]]:  # fmt: skip
        a = torch.as_tensor(action, dtype=torch.float32).cpu()
        if a.shape != (self.num_envs, 3):
            raise ValueError(f"action must be ({self.num_envs}, 3), got {tuple(a.shape)}")
        if not bool(torch.isfinite(a).all()):
            raise ValueError("action has NaN or Inf")
        act = a.clamp(-1, 1).double().numpy()
        self.last_action[:] = act

        def run(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                d = self.datas[i]
                d.ctrl[:] = d.ctrl + act[i] * self.cfg.max_step_m
                self._mj.mj_step(self.models[i], d, FRAME_SKIP)

        self._parallel(run)
        self.steps += 1
        tip = self._tips()
        err = tip - (self.socket + np.r_[0.0, 0.0, SOCKET_DEPTH - self.cfg.insert_depth_m])
        inside = np.abs(tip[:, :2] - self.socket[:, :2]).max(1) < PEG_RADIUS + CLEARANCE / 2  # in the hole
        success = inside & (tip[:, 2] <= SOCKET_DEPTH - self.cfg.insert_depth_m)
        # reward: minus the tip's distance to its goal in cm, a bonus on success
        grasp = self._grasps()
        slip = grasp - self.in_hand  # how far the peg moved in the grasp
        lost = ~success & ((np.linalg.norm(slip[:, :2], axis=1) > self.cfg.max_slip_m) |
                           (np.abs(slip[:, 2]) > self.cfg.max_slip_tilt_rad))  # fmt: skip
        reward = torch.as_tensor(-100.0 * np.linalg.norm(err, axis=1) + self.cfg.success_bonus * success
                                 - self.cfg.lost_grasp_penalty * lost, dtype=torch.float32)  # fmt: skip
        terminated = torch.as_tensor(success | lost)
        truncated = (self.steps >= self.max_steps) & ~terminated
        self.returns += reward
        obs = self._observe(tip=tip, grasp=grasp)
        info: dict[str, Any] = {"success": torch.as_tensor(success), "final_obs": obs}
        done = terminated | truncated
        if bool(done.any()):
            idx = torch.nonzero(done).flatten()
            info["final_obs"] = {k: v.clone() for k, v in obs.items()}
            info["episode"] = {"return": self.returns[idx].clone(), "length": self.steps[idx].clone(),
                               "success": info["success"][idx].float()}  # fmt: skip
            for i in idx.tolist():
                self._reset_env(i)
            self.steps[idx], self.returns[idx] = 0, 0.0
            obs = self._observe()
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------------------------------ sensing
    def _parallel(self, fn: Any) -> None:
        n = self.num_envs
        if self.pool is None:
            fn(0, n)
            return
        k = self.cfg.num_threads
        bounds = [(n * j // k, n * (j + 1) // k) for j in range(k)]
        list(self.pool.map(lambda b: fn(*b), bounds))

    def _grasps(self) -> np.ndarray:
        """The peg's pose in the grasp ``(E, 3)``: ``qpos[3:6]`` = (slip_x, slip_z, tilt)."""
        return np.stack([d.qpos[3:6] for d in self.datas])

    def _tips(self) -> np.ndarray:
        """The peg tips' world positions ``(E, 3)``."""
        g = self.ids["peg"]
        return np.stack([d.geom_xpos[g] - PEG_HALF_LENGTH * d.geom_xmat[g].reshape(3, 3)[:, 2] for d in self.datas])

    def _bodies(self) -> tuple[RigidState, list[ContactShape]]:
        """Pads (their sensing faces) and the peg as the tactile sensor takes them, ``(E, 2)`` and ``(E, 1)``."""
        n, mj = self.num_envs, self._mj
        pos, rot, lin, ang = (np.zeros((n, 3, 3)), np.zeros((n, 3, 3, 3)), np.zeros((n, 3, 3)), np.zeros((n, 3, 3)))
        vel = np.zeros(6)
        for row, (m, d) in enumerate(zip(self.models, self.datas)):
            for k, name in enumerate(("pad0", "pad1", "peg")):
                g = self.ids[name]
                r = d.geom_xmat[g].reshape(3, 3)
                mj.mj_objectVelocity(m, d, mj.mjtObj.mjOBJ_GEOM, g, vel, 0)  # (angular, linear) at the geom, world
                offset = r[:, 2] * PAD_HALF[2] if k < 2 else np.zeros(3)  # a pad's face is its box's +z side
                pos[row, k], rot[row, k], ang[row, k] = d.geom_xpos[g] + offset, r, vel[:3]
                lin[row, k] = vel[3:] + np.cross(vel[:3], offset)
        pads = RigidState(_f32(pos[:, :2]), _f32(rot[:, :2]), _f32(lin[:, :2]), _f32(ang[:, :2]))
        peg = RigidState(_f32(pos[:, 2:]), _f32(rot[:, 2:]), _f32(lin[:, 2:]), _f32(ang[:, 2:]))
        return pads, [ContactShape(Cylinder(torch.tensor([PEG_RADIUS, PEG_HALF_LENGTH])), peg)]

    def _observe(self, tip: np.ndarray | None = None, grasp: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """The observation groups; ``tip``, ``grasp``: :meth:`_tips`, :meth:`_grasps` when the step already has them."""
        n, datas = self.num_envs, self.datas
        hand = np.stack([d.qpos[0:3] for d in datas])
        tip = self._tips() if tip is None else tip
        grasp = self._grasps() if grasp is None else grasp
        force = np.zeros((n, 3))
        for row, (m, d) in enumerate(zip(self.models, datas)):  # contact forces on the peg, world frame
            f6 = np.zeros(6)
            for c in range(d.ncon):
                con = d.contact[c]
                if self.peg_body in (m.geom_bodyid[con.geom1], m.geom_bodyid[con.geom2]):
                    self._mj.mj_contactForce(m, d, c, f6)
                    sign = -1.0 if m.geom_bodyid[con.geom1] == self.peg_body else 1.0
                    force[row] += sign * con.frame.reshape(3, 3).T @ f6[:3]
        groups, estimate, socket = self.spec.obs_groups, self.estimate, self.socket
        known = {"hand_to_socket_estimate": _f32(hand - estimate), "hand_velocity": _f32(np.stack([d.qvel[0:3] for d in datas])),
                 "last_action": _f32(self.last_action)}  # fmt: skip
        obs = {"policy": groups["policy"].concat(**known), "critic": groups["critic"].concat(
            **known, tip_to_socket=_f32(tip - socket), peg_in_hand=_f32(grasp),
            estimate_error=_f32(estimate - socket), peg_contact_force=_f32(force))}  # fmt: skip
        if self.cfg.tactile != "none":
            pads, shapes = self._bodies()
            if self.camera is not None:
                images = self.camera.render(pads, shapes)
                if self.augment:
                    images = self.camera.augment(images, self.cfg.augmentation)
                obs["tactile"] = (images / 255.0).reshape(n, -1)
            else:
                self.sensor.constants = TactileConstants(k_n=self.k_n.clone())
                obs["tactile"] = (self.sensor.read(pads, shapes).force * self.cfg.force_scale).reshape(n, -1)
        return {k: v.to(self.device) for k, v in obs.items()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
