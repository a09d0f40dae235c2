"""What a legged robot senses and how it is commanded, defined once for the simulator and the deploy node.

Observation sources (:attr:`~sim2real.core.obs.ObsTerm.source`): a legged task names, for each term of its policy
group, where a robot measures it; the ROS 2 node (:mod:`sim2real.ros_nodes.legged_core`) assembles the observation
from its topics by these names, with the functions below that the simulator uses too.

============================ ====== ============================================================================
source                       size   meaning
============================ ====== ============================================================================
``imu.angular_velocity``     3      body angular velocity [rad/s] (``sensor_msgs/Imu.angular_velocity``)
``imu.projected_gravity``    3      gravity's direction in the body frame, ``R^T (0, 0, -1)``, from the IMU's
                                    orientation (:func:`projected_gravity`)
``cmd_vel``                  3      the command ``(vx, vy, yaw_rate)`` (``geometry_msgs/Twist``: ``linear.x``,
                                    ``linear.y``, ``angular.z``)
``joint_state.position``     J      joint positions minus ``robot.default_joint_pos``, in the policy's joint order
                                    (``sensor_msgs/JointState``, matched by name)
``joint_state.velocity``     J      joint velocities in the policy's joint order
``last_action``              J      the action the controller last committed (clamped to [-1, 1])
============================ ====== ============================================================================

Actions are joint position targets (:func:`joint_targets`): ``clip(default + scale * clip(a, -1, 1), range)`` with
``default_joint_pos``, ``action_scale`` and ``joint_range`` from the policy's ``robot`` metadata.
"""

from __future__ import annotations

import numpy as np
import torch

IMU_GYRO = "imu.angular_velocity"
IMU_GRAVITY = "imu.projected_gravity"
CMD_VEL = "cmd_vel"
JOINT_POS = "joint_state.position"
JOINT_VEL = "joint_state.velocity"
LAST_ACTION = "last_action"
SOURCES = (IMU_GYRO, IMU_GRAVITY, CMD_VEL, JOINT_POS, JOINT_VEL, LAST_ACTION)
"""Every observation source a legged deploy node knows."""

ROBOT_KEYS = ("joint_names", "default_joint_pos", "action_scale", "joint_range", "kp", "kd")
"""What a legged policy's ``robot`` metadata must hold."""


def projected_gravity(rot: torch.Tensor) -> torch.Tensor:
    """Gravity's direction in the body frame ``(..., 3)`` from body-to-world rotations ``R`` ``(..., 3, 3)``.

    ``R^T (0, 0, -1) = -(row 2 of R)``; an upright body gives ``(0, 0, -1)``, ``-g_z`` is the cosine of the tilt.
    """
    return -rot[..., 2, :]


def joint_targets(action: np.ndarray | torch.Tensor, default: torch.Tensor, scale: torch.Tensor,
                  low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Joint position targets ``(..., J)`` for actions ``(..., J)``: ``clip(default + scale * clip(a, -1, 1), low, high)``."""
    a = torch.as_tensor(action, dtype=default.dtype).clamp(-1.0, 1.0)
    return torch.clamp(default + scale * a, low, high)
