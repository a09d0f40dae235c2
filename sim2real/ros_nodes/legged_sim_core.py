"""A simulated legged robot as the deploy node sees a real one: joint states and an IMU out, joint targets in.

:class:`LeggedSimRobot` runs ``mujoco-humanoid-walk``'s humanoid (one env, no domain randomisation, no sensor
noise, no resets) behind the ros2_control conventions of the legged node: ``sensor_msgs/JointState`` in the
model's own joint order (which is not the policy's: the node matches joints by name), ``sensor_msgs/Imu`` of the
torso (orientation, body angular velocity), and position targets in ``command_joints`` order that the joint servos
of the MJCF track with the policy's PD gains at every 5 ms physics step (the robot's own PD loop). Until the first
command the robot holds its targets at the start pose; a command older than ``command_timeout_s`` keeps the last
targets, as a ``forward_command_controller`` does. A harness (``harness_s``) can hold the torso in the air through
a staged start, as a gantry holds a real humanoid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim2real.sim.mujoco.env import MujocoDRConfig, require_mujoco
from sim2real.tasks.humanoid_walk.env import HumanoidWalkConfig, HumanoidWalkEnv, ObsNoiseConfig


@dataclass
class LeggedSimConfig:
    seed: int = 0
    command_timeout_s: float = 0.1
    """No command for this long: counted, the last targets are kept."""
    harness_s: float = 0.0
    """Hold the torso in place (a gantry) until this long after the first command, so a staged start happens in the
    air; 0: no harness (a point-footed humanoid then falls during a staged start)."""


class LeggedSimRobot:
    """The humanoid behind joint states, IMU and joint targets (see the module docstring)."""

    def __init__(self, cfg: LeggedSimConfig | None = None, env_cfg: HumanoidWalkConfig | None = None) -> None:
        self.cfg = cfg or LeggedSimConfig()
        base = env_cfg or HumanoidWalkConfig()
        self.env = HumanoidWalkEnv(replace(base, num_envs=1, num_threads=1, dr=MujocoDRConfig(enabled=False),
                                           noise=ObsNoiseConfig(enabled=False), episode_steps=10**9))  # fmt: skip
        self.env.reset(self.cfg.seed)
        m = self.env.model
        self.dt = self.env.dt
        self.joint_names = [m.joint(j).name for j in range(1, m.njnt)]  # the model's order (joint 0: the free joint)
        self._qadr = np.array([m.jnt_qposadr[j] for j in range(1, m.njnt)])
        self._dadr = np.array([m.jnt_dofadr[j] for j in range(1, m.njnt)])
        self.actuator_joints = list(self.env.joint_names)  # the servos' order (the policy's)
        d = self.env.datas[0]
        self._targets = d.qpos[self.env._qadr].copy()  # hold the start pose until commanded
        self._command_s: float | None = None
        self._first_command_s: float | None = None
        self._base = d.qpos[:7].copy()  # the torso's pose the harness holds
        self.steps = self.command_timeouts = self.rejected_commands = 0

    def command(self, names: list[str], targets: list[float] | np.ndarray, now_s: float) -> bool:
        """New position targets for joints ``names`` (all servos, any order); False (refused) on a bad command."""
        t = np.asarray(targets, np.float64)
        if sorted(names) != sorted(self.actuator_joints) or t.shape != (len(names),) or not np.isfinite(t).all():
            self.rejected_commands += 1
            return False
        order = {n: i for i, n in enumerate(names)}
        self._targets = t[[order[n] for n in self.actuator_joints]]
        self._command_s = now_s
        if self._first_command_s is None:
            self._first_command_s = now_s
        return True

    def harnessed(self, now_s: float) -> bool:
        """Whether the harness holds the torso at ``now_s``."""
        start = self._first_command_s
        return self.cfg.harness_s > 0 and (start is None or now_s - start < self.cfg.harness_s)

    def step(self, now_s: float) -> None:
        """One control period: the servos track the targets for ``frame_skip`` physics steps.

        While the harness holds, it puts the torso back after each physics step.
        """
        if self._command_s is not None and now_s - self._command_s > self.cfg.command_timeout_s:
            self.command_timeouts += 1
        mujoco, env = require_mujoco(), self.env
        m, d = env.models[0], env.datas[0]
        held = self.harnessed(now_s)
        d.ctrl[:] = self._targets
        for _ in range(env.frame_skip):
            mujoco.mj_step(m, d)
            if held:
                d.qpos[:7], d.qvel[:6] = self._base, 0.0
        mujoco.mj_rnePostConstraint(m, d)  # contact forces for the env's (critic) rows, as its own step does
        env._measure(m, d, env._obs[0], env._aux[0])  # the env's own observation stays that of this state
        self.steps += 1

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(names, positions, velocities)`` in the model's joint order."""
        d = self.env.datas[0]
        return self.joint_names, d.qpos[self._qadr].copy(), d.qvel[self._dadr].copy()

    def imu(self) -> tuple[np.ndarray, np.ndarray]:
        """The torso's body angular velocity ``(3,)`` and orientation ``(w, x, y, z)``.

        The orientation is the torso's ``xquat``, from the kinematics of the last physics substep, which is what the
        training env observes (its ``xmat``): one 5 ms substep older than ``qpos``.
        """
        d = self.env.datas[0]
        return d.qvel[3:6].copy(), d.xquat[self.env.root_body].copy()

    def torso_height(self) -> float:
        return float(self.env.datas[0].qpos[2])

    def close(self) -> None:
        self.env.close()
