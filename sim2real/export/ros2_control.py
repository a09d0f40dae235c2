"""A legged policy's ros2_control configuration: the controller YAML that its deploy node talks to.

``sim2real export ros2-control POLICY.onnx`` writes ``ros2_control.yaml`` beside the policy, from its metadata
alone: a ``controller_manager`` with a ``joint_state_broadcaster`` and a ``forward_command_controller`` taking
position commands for the policy's joints in the policy's order (the order ``legged_policy_node`` sends by
default), and, under ``sim2real_pd_gains``, the PD gains, torque limits and default pose the policy was trained
with, joint by joint, for the robot's hardware interface or servo drivers (ros2_control has no standard place for
them; the node also publishes them on ``~/pd_gains``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sim2real.core.files import CheckpointError, write_text_atomic
from sim2real.core.policy_file import PolicyMetadata, read_metadata
from sim2real.sim.legged import ROBOT_KEYS


def ros2_control_config(meta: PolicyMetadata, controller: str = "position_controller",
                        update_rate_hz: int = 500) -> dict[str, Any]:  # fmt: skip
    """The configuration as a dict (see the module docstring).

    Raises:
        CheckpointError: the policy's metadata does not describe a legged robot (joints, gains, default pose).
    """
    robot = meta.robot
    missing = [k for k in ROBOT_KEYS if k not in robot]
    if missing:
        raise CheckpointError(f"not a legged policy: its robot metadata lacks {missing} (task {meta.task!r})")
    joints = [str(j) for j in robot["joint_names"]]
    per_joint = lambda key: [float(x) for x in robot[key]]  # noqa: E731
    gains: dict[str, Any] = {"joints": joints, "kp": per_joint("kp"), "kd": per_joint("kd"),
                             "default_joint_pos": per_joint("default_joint_pos")}  # fmt: skip
    if "torque_limit" in robot:
        gains["torque_limit"] = per_joint("torque_limit")
    return {
        "controller_manager": {"ros__parameters": {
            "update_rate": int(update_rate_hz),
            "joint_state_broadcaster": {"type": "joint_state_broadcaster/JointStateBroadcaster"},
            controller: {"type": "forward_command_controller/ForwardCommandController"},
        }},
        controller: {"ros__parameters": {"joints": joints, "interface_name": "position"}},
        "sim2real_pd_gains": gains,
    }  # fmt: skip


def export_ros2_control(policy: str | Path, out: str | Path | None = None, controller: str = "position_controller",
                        update_rate_hz: int = 500) -> Path:  # fmt: skip
    """Write the configuration of ``policy`` (``.onnx``) to ``out`` (default ``ros2_control.yaml`` beside it)."""
    policy = Path(policy)
    meta = read_metadata(policy)
    cfg = ros2_control_config(meta, controller, update_rate_hz)
    path = Path(out) if out else policy.with_name("ros2_control.yaml")
    header = (f"# ros2_control configuration of {policy.name} (run {meta.run_id}, task {meta.task}), written by "
              f"`sim2real export ros2-control`.\n# The policy node sends position targets at "
              f"{meta.control_rate_hz:g} Hz to {controller}/commands; the robot runs the PD at update_rate.\n")  # fmt: skip
    write_text_atomic(path, header + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=120))
    return path
