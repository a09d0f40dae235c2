"""The legged policy node's logic without ROS: joints by name, the observation from the policy file, safety.

:class:`LeggedController` is what ``legged_policy_node`` runs on every control tick, plain Python with an injected
clock so that every behaviour is testable without a middleware. Everything robot-specific comes from the policy's
metadata: the joint names, default pose, action scale, joint ranges and PD gains (``robot``), and the observation
layout whose terms name their sources (:mod:`sim2real.sim.legged`).

* **joints by name** (:class:`JointMap`): the policy's joints are found in each ``sensor_msgs/JointState`` by name,
  whatever its order; a policy joint the robot lacks, or a robot joint the policy does not drive (unless listed in
  ``ignore_joints``), is an error (the joint state is rejected); commands go out in ``command_joints`` order
  (default: the policy's).
* **staged start**: ``WAITING`` until armed (``arm`` topic, or ``autostart`` once inputs are fresh), then
  ``STARTING``: the targets move from the measured pose to the default pose over ``start_duration_s`` and hold it
  for ``hold_s``; then ``RUNNING``: the policy's targets ``clip(default + scale * a, range)``.
* **damping fallback** (``DAMPING``, latched until armed again): the tilt beyond ``max_tilt_deg``, a joint faster
  than ``max_joint_velocity``, stale joint states or IMU (older than ``watchdog_timeout_s``), a rejected input (NaN,
  missing joints) or non-finite actions. The targets are then the measured positions, so the robot's PD loop only
  damps (``tau = -kd qdot``).
* **e-stop** (``ESTOP``): latched; damping output; only :meth:`clear_estop` and a new arming leave it.
* ``cmd_vel`` older than ``cmd_timeout_s`` counts as a zero command (stand still), not as a fault.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sim2real.core.files import CheckpointError
from sim2real.core.policy_file import OnnxPolicy, PolicyMetadata
from sim2real.sim import legged
from sim2real.sim.quadrotor import quat_to_rotmat


class State(enum.Enum):
    WAITING = "waiting"
    STARTING = "starting"
    RUNNING = "running"
    DAMPING = "damping"
    ESTOP = "estop"


@dataclass
class LeggedSafetyConfig:
    """Behaviours of the legged safety layer (the node's parameters of the same names)."""

    watchdog_timeout_s: float = 0.1
    """Joint states and IMU older than this: damping."""
    cmd_timeout_s: float = 0.5
    """``cmd_vel`` older than this: a zero command."""
    start_duration_s: float = 2.0
    """Staged start: from the measured pose to the default pose in this time ..."""
    hold_s: float = 1.0
    """... then hold the default pose this long before the policy takes over."""
    max_tilt_deg: float = 45.0
    max_joint_velocity: float = 30.0
    """[rad/s] any joint faster: damping."""
    autostart: bool = False
    """Start as soon as joint states and IMU are fresh (simulation, tests); otherwise wait for ``arm``."""

    def __post_init__(self) -> None:
        for name in ("watchdog_timeout_s", "cmd_timeout_s", "max_tilt_deg", "max_joint_velocity"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.start_duration_s < 0 or self.hold_s < 0:
            raise ValueError("start_duration_s and hold_s must be >= 0")


class JointMap:
    """The policy's joints (its order) in a robot's joint list, and back, by name.

    Raises:
        ValueError: a policy joint the robot lacks, a robot joint that is neither the policy's nor ignored, or
            duplicate names.
    """

    def __init__(self, policy_joints: list[str], robot_joints: list[str], ignore: tuple[str, ...] = ()) -> None:
        if len(set(robot_joints)) != len(robot_joints):
            raise ValueError(f"duplicate joint names in {robot_joints}")
        missing = [j for j in policy_joints if j not in robot_joints]
        extra = [j for j in robot_joints if j not in policy_joints and j not in ignore]
        if missing or extra:
            raise ValueError(f"the robot's joints do not fit the policy: missing {missing}, not driven by the policy "
                             f"{extra} (list those in ignore_joints)")  # fmt: skip
        self.policy_joints, self.robot_joints = list(policy_joints), list(robot_joints)
        self.index = np.array([robot_joints.index(j) for j in policy_joints])
        """For each policy joint, its index in the robot's list: ``policy_values = robot_values[index]``."""

    def to_policy(self, robot_values: Any) -> np.ndarray:
        return np.asarray(robot_values, np.float64)[self.index]


@dataclass
class JointSample:
    """Joint positions and velocities in the policy's order, and the monotonic time they were received."""

    position: np.ndarray
    velocity: np.ndarray
    received_s: float


@dataclass
class ImuSample:
    """An IMU sample: body angular velocity, projected gravity and the time it was received.

    The gravity is computed once per message from the orientation (:func:`sim2real.sim.legged.projected_gravity`).
    """

    angular_velocity: np.ndarray
    gravity: torch.Tensor
    received_s: float


@dataclass
class TickResult:
    """One control tick: what to send, where it came from, the state and why.

    ``targets`` in ``command_joints`` order (None: send nothing); ``action`` and ``obs`` None when the policy did not
    run.
    """

    targets: np.ndarray | None
    action: np.ndarray | None
    obs: np.ndarray | None
    state: State
    reason: str = ""


@dataclass
class Counters:
    ticks: int = 0
    policy_ticks: int = 0
    rejected_inputs: int = 0
    watchdog_trips: int = 0
    dampings: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class LeggedAdapter:
    """The robot side of a legged policy, from its metadata: joints, default pose, scales, ranges, gains, layout."""

    def __init__(self, meta: PolicyMetadata) -> None:
        robot = meta.robot
        missing = [k for k in legged.ROBOT_KEYS if k not in robot]
        if missing:
            raise CheckpointError(f"not a legged policy: its robot metadata lacks {missing}")
        self.joints = [str(j) for j in robot["joint_names"]]
        n = len(self.joints)
        t = lambda x: torch.as_tensor(np.asarray(x, np.float64))  # noqa: E731
        self.default, self.scale = t(robot["default_joint_pos"]), t(robot["action_scale"])
        rng = np.asarray(robot["joint_range"], np.float64)
        self.low, self.high = t(rng[:, 0]), t(rng[:, 1])
        self.kp, self.kd = np.asarray(robot["kp"], np.float64), np.asarray(robot["kd"], np.float64)
        if meta.act_dim != n or any(len(x) != n for x in (self.default, self.scale, self.low, self.kp, self.kd)):
            raise CheckpointError(f"the policy's robot metadata does not describe its {meta.act_dim} actions")
        self.layout = meta.obs_layout
        unknown = [(term.name, term.source) for term in self.layout if term.source not in legged.SOURCES]
        if unknown:
            raise CheckpointError(f"observation terms without a known source {unknown}; known: {legged.SOURCES}")
        self.control_rate_hz = meta.control_rate_hz

    def observation(self, joints: JointSample, imu: ImuSample, command: np.ndarray, last_action: np.ndarray) -> np.ndarray:
        """``(obs_dim,)`` float32, every term from its source (the simulator's functions, :mod:`sim2real.sim.legged`)."""
        values = {
            legged.IMU_GYRO: torch.as_tensor(imu.angular_velocity, dtype=torch.float64),
            legged.IMU_GRAVITY: imu.gravity,
            legged.CMD_VEL: torch.as_tensor(command, dtype=torch.float64),
            legged.JOINT_POS: torch.as_tensor(joints.position) - self.default,
            legged.JOINT_VEL: torch.as_tensor(joints.velocity),
            legged.LAST_ACTION: torch.as_tensor(last_action, dtype=torch.float64),
        }
        obs = self.layout.concat(**{term.name: values[term.source][None] for term in self.layout})
        return obs[0].float().numpy()

    def targets(self, action: np.ndarray) -> np.ndarray:
        """Joint targets ``(J,)`` in the policy's order (:func:`sim2real.sim.legged.joint_targets`)."""
        return legged.joint_targets(action, self.default, self.scale, self.low, self.high).numpy()


class LeggedController:
    """Joints by name, observation, inference and the legged safety layer (see the module docstring).

    Args:
        policy: the loaded ``policy.onnx`` (a legged policy: :class:`LeggedAdapter`).
        cfg: the safety behaviours.
        command_joints: the joint order of the outgoing commands (the robot's controller); default: the policy's.
        ignore_joints: robot joints in the joint states that the policy does not drive (any other extra joint is an
            error).
    """

    def __init__(self, policy: OnnxPolicy, cfg: LeggedSafetyConfig | None = None,
                 command_joints: list[str] | None = None, ignore_joints: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.policy, self.adapter = policy, LeggedAdapter(policy.metadata)
        self.cfg = cfg or LeggedSafetyConfig()
        self.command_map = JointMap(self.adapter.joints, list(command_joints or self.adapter.joints))
        self.ignore_joints = tuple(ignore_joints)
        self.robot_map: JointMap | None = None  # from the first JointState
        self.counters = Counters()
        self.state, self.reason = State.WAITING, ""
        self._joints: JointSample | None = None
        self._imu: ImuSample | None = None
        self._command, self._command_s = np.zeros(3), -math.inf
        self._armed = self._estop = False
        self._start_s, self._start_pose = 0.0, np.zeros(len(self.adapter.joints))
        self._last_action = np.zeros(len(self.adapter.joints), np.float32)

    # ------------------------------------------------------------------------------------------ inputs
    def _reject(self, problem: str) -> bool:
        self.counters.rejected_inputs += 1
        self._damp(problem)
        return False

    def on_joint_state(self, names: list[str], position: Any, velocity: Any, received_s: float) -> bool:
        """Store a joint state (True), or reject it (False; damping if the robot was driven)."""
        try:
            if self.robot_map is None or self.robot_map.robot_joints != list(names):
                self.robot_map = JointMap(self.adapter.joints, list(names), self.ignore_joints)
        except ValueError as e:
            return self._reject(str(e))
        pos, vel = np.asarray(position, np.float64), np.asarray(velocity, np.float64)
        if pos.shape != (len(names),) or vel.shape != (len(names),):
            return self._reject(f"joint state with {len(names)} names, {pos.size} positions, {vel.size} velocities")
        p, v = self.robot_map.to_policy(pos), self.robot_map.to_policy(vel)
        if not (np.isfinite(p).all() and np.isfinite(v).all()):
            return self._reject("non-finite joint state")
        self._joints = JointSample(p, v, received_s)
        return True

    def on_imu(self, angular_velocity: Any, quaternion_wxyz: Any, received_s: float) -> bool:
        w, q = np.asarray(angular_velocity, np.float64), np.asarray(quaternion_wxyz, np.float64)
        if not (np.isfinite(w).all() and np.isfinite(q).all()):
            return self._reject("non-finite IMU")
        if not 0.5 < float(np.linalg.norm(q)) < 1.5:
            return self._reject("IMU orientation is not a unit quaternion")
        rot = quat_to_rotmat(torch.as_tensor(q / np.linalg.norm(q), dtype=torch.float64))
        self._imu = ImuSample(w, legged.projected_gravity(rot), received_s)
        return True

    def on_cmd_vel(self, vx: float, vy: float, yaw_rate: float, received_s: float) -> bool:
        """A velocity command (True), or a non-finite one refused (False: the command stays as it was)."""
        c = np.array([vx, vy, yaw_rate], np.float64)
        if not np.isfinite(c).all():
            self.counters.rejected_inputs += 1
            return False
        self._command, self._command_s = c, received_s
        return True

    def on_arm(self, armed: bool) -> None:
        """Arm: a staged start from the measured pose (also after damping); disarm: wait. Refused while e-stopped."""
        if armed and not self._estop and self.state in (State.WAITING, State.DAMPING):
            self._armed, self.state, self.reason = True, State.WAITING, ""
        elif not armed:
            self._armed, self.state = False, State.WAITING if self.state is not State.ESTOP else State.ESTOP

    def on_estop(self, stop: bool) -> None:
        if stop:
            self._estop, self._armed, self.state, self.reason = True, False, State.ESTOP, "e-stop latched"

    def clear_estop(self) -> None:
        """Release the e-stop latch; the controller waits until armed again."""
        if self._estop:
            self._estop, self.state, self.reason = False, State.WAITING, ""

    def inputs_fresh(self, now_s: float) -> bool:
        """Whether joint states and IMU both arrived within the watchdog period before ``now_s``."""
        j, i, dt = self._joints, self._imu, self.cfg.watchdog_timeout_s
        return j is not None and i is not None and now_s - j.received_s <= dt and now_s - i.received_s <= dt

    # ------------------------------------------------------------------------------------------ tick
    def _damp(self, reason: str) -> None:
        if self.state in (State.STARTING, State.RUNNING):
            self.counters.dampings += 1
            self.state, self.reason, self._armed = State.DAMPING, reason, False
        self.counters.reasons[reason] = self.counters.reasons.get(reason, 0) + 1

    def _out(self, policy_targets: np.ndarray) -> np.ndarray:
        """Targets in the policy's order -> the command order."""
        out = np.empty(len(self.command_map.robot_joints))
        out[self.command_map.index] = policy_targets
        return out

    def tick(self, now_s: float) -> TickResult:
        """One control period at monotonic time ``now_s``: what to send."""
        self.counters.ticks += 1
        fresh = self.inputs_fresh(now_s)
        if self.state in (State.STARTING, State.RUNNING) and not fresh:
            self.counters.watchdog_trips += 1
            self._damp("joint states or IMU stale (watchdog)")
        if self.state in (State.DAMPING, State.ESTOP):  # hold nothing: the PD loop damps around the measured pose
            if self._joints is None:
                return TickResult(None, None, None, self.state, self.reason)
            return TickResult(self._out(self._joints.position), None, None, self.state, self.reason)
        if self.state is State.WAITING:
            if not ((self._armed or self.cfg.autostart) and fresh):
                return TickResult(None, None, None, self.state, "waiting for arm" if fresh else "waiting for inputs")
            assert self._joints is not None
            self.state, self._start_s, self._start_pose = State.STARTING, now_s, self._joints.position.copy()
        assert self._joints is not None and self._imu is not None
        if problem := self._limits_problem():
            self._damp(problem)
            return TickResult(self._out(self._joints.position), None, None, self.state, self.reason)
        elapsed = now_s - self._start_s
        if self.state is State.STARTING:
            T = self.cfg.start_duration_s
            f = 1.0 if T == 0 else min(1.0, elapsed / T)
            target = self._start_pose + f * (self.adapter.default.numpy() - self._start_pose)
            self._last_action = np.zeros_like(self._last_action)  # the action of the default pose
            if elapsed < T + self.cfg.hold_s:
                return TickResult(self._out(target), None, None, self.state, f"staged start {min(f, 1.0):.0%}")
            self.state = State.RUNNING
        command = self._command if now_s - self._command_s <= self.cfg.cmd_timeout_s else np.zeros(3)
        obs = self.adapter.observation(self._joints, self._imu, command, self._last_action)
        raw = self.policy(obs[None])[0]
        if not np.isfinite(raw).all():
            self._damp("policy returned non-finite actions")
            return TickResult(self._out(self._joints.position), None, obs, self.state, self.reason)
        action = np.clip(raw, -1.0, 1.0).astype(np.float32)
        self._last_action = action
        self.counters.policy_ticks += 1
        return TickResult(self._out(self.adapter.targets(action)), action, obs, State.RUNNING)

    def _limits_problem(self) -> str:
        """Why the robot must be damped now (tilt, joint speed), or ``""``."""
        assert self._joints is not None and self._imu is not None
        if -float(self._imu.gravity[2]) < math.cos(math.radians(self.cfg.max_tilt_deg)):
            return f"tilt beyond max_tilt_deg ({self.cfg.max_tilt_deg})"
        if np.abs(self._joints.velocity).max() > self.cfg.max_joint_velocity:
            return f"joint velocity beyond max_joint_velocity ({self.cfg.max_joint_velocity} rad/s)"
        return ""

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """``(kp, kd)`` in the command order: what the robot's PD loop must use."""
        return self._out(self.adapter.kp), self._out(self.adapter.kd)

    def diagnostics(self) -> dict[str, str]:
        c = self.counters
        return {"state": self.state.value, "reason": self.reason, "policy": str(self.policy.path or "<bytes>"),
                "run_id": self.policy.metadata.run_id, "ticks": str(c.ticks), "policy_ticks": str(c.policy_ticks),
                "rejected_inputs": str(c.rejected_inputs), "watchdog_trips": str(c.watchdog_trips),
                "dampings": str(c.dampings)}  # fmt: skip
