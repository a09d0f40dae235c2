"""``finetune_node``: finetune the deployed policy on the robot, exploring only in the world model.

The real system of :mod:`sim2real.policies.finetune` behind ROS 2 topics (relative to the node's namespace):

=======================  =======================  ==============================================================
``policy/setpoint``      PointStamped out         the excitation schedule (the policy node's ``~/setpoint``)
``policy/reload``        std_msgs/String out      path of each accepted policy (the policy node's ``~/reload``)
``policy/obs``           Float32MultiArray in     the policy node's ``~/obs``: a flight starts once they arrive
=======================  =======================  ==============================================================

What the robot flew comes from the recorder's newest MCAP file in ``recording_dir`` (closed chunks of the file
still being written): the policy node's ``~/obs``, ``~/action`` and ``~/setpoint_active`` from the moment each
iteration's schedule started. When ``max_real_s`` seconds are used, the set-point returns to ``setpoint`` (home),
``<out>/finetune_report.json`` is written and the node exits 0; the policy node keeps flying the last accepted
policy (and does so too when this node crashes or is killed: it only ever receives set-points and policy files).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim2real.ros_nodes import messages as m
from sim2real.ros_nodes.node_main import run_node
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA, Node


@dataclass
class FinetuneNodeConfig:
    """Parameters of ``finetune_node`` (same names)."""

    policy: str = ""
    checkpoint: str = ""
    max_real_s: float = 60.0
    out: str = "runs/finetune"
    recording_dir: str = "runs/recordings"
    setpoint: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    safety_limits: str = ""
    settings: str = ""
    obs_topic: str = "policy/obs"
    action_topic: str = "policy/action"
    setpoint_topic: str = "policy/setpoint_active"
    frame: str = "world"
    flush_wait_s: float = 1.0
    nice: int = 10
    threads: int = 1


_DESCRIPTIONS = {
    "policy": "the deployed policy.onnx (the policy node's policy_path)",
    "checkpoint": "the training checkpoint the policy was exported from (its critics start the finetuning)",
    "max_real_s": "seconds of real flight used for learning, in total",
    "out": "report directory (finetune_report.json, finetune.png, TensorBoard events, policies/)",
    "recording_dir": "the recorder's output_dir (its newest .mcap file is read)",
    "setpoint": "home: the hover position of the launch file (world frame, m); the schedule is around it",
    "safety_limits": "YAML of safety limits (position_box_m, setpoint_box_m, ...); '' = the built-in ones",
    "settings": "YAML mapping of finetuning settings by dotted key (e.g. seconds_per_iteration: 5); '' = defaults",
    "obs_topic": "the policy node's ~/obs as recorded (relative names resolve in this node's namespace)",
    "action_topic": "the policy node's ~/action as recorded",
    "setpoint_topic": "the policy node's ~/setpoint_active as recorded",
    "frame": "frame_id of the set-points sent",
    "flush_wait_s": "seconds to wait after a schedule before reading the recording (the recorder's flush interval)",
    "nice": "CPU priority the learner lowers itself by (os.nice) so it never starves the control loop on the same computer",
    "threads": "torch threads of the learner (the cores it may keep busy)",
}


class RosRobot:
    """:class:`~sim2real.policies.finetune.RealSystem` over the policy node's topics and the recorder's files."""

    def __init__(self, node: Node, cfg: FinetuneNodeConfig, dt: float) -> None:
        self.node, self.cfg, self.dt = node, cfg, dt
        self.setpoint_pub = node.create_publisher(m.PointStamped, "policy/setpoint", LATCHED)
        self.reload_pub = node.create_publisher(m.String, "policy/reload", DEFAULT)
        self.topics = {k: node.resolve_topic_name(getattr(cfg, k)) for k in ("obs_topic", "action_topic", "setpoint_topic")}
        self.deployments: list[Path] = []
        self.last_obs_s = -1.0
        node.create_subscription(m.Float32MultiArray, cfg.obs_topic, self._on_obs, SENSOR_DATA)

    def _on_obs(self, _msg: m.Float32MultiArray) -> None:
        self.last_obs_s = time.monotonic()

    def wait_until_flying(self) -> None:
        """Until the policy node runs its policy (armed, fresh odometry): its observations arrive."""
        t0 = last_note = time.monotonic()
        while time.monotonic() - self.last_obs_s > 0.2:
            if time.monotonic() - last_note > 5.0:
                self.node.logger.info("waiting for the policy node to fly (%.0f s; arm it on arm)", time.monotonic() - t0)
                last_note = time.monotonic()
            self.wait(0.05)

    def wait(self, seconds: float) -> None:
        """Spin the node for ``seconds`` (raises ``KeyboardInterrupt`` on shutdown)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not self.node.ok:
                raise KeyboardInterrupt
            self.node.spin_once(min(0.05, max(end - time.monotonic(), 0.0)))

    def send_setpoint(self, point: tuple[float, ...] | list[float]) -> None:
        x, y, z = (float(v) for v in point)
        self.setpoint_pub.publish(m.PointStamped(m.Header(self.node.now(), self.cfg.frame), m.Point(x, y, z)))

    def deploy(self, policy_file: Path) -> None:
        self.reload_pub.publish(m.String(str(Path(policy_file).resolve())))
        self.deployments.append(Path(policy_file))
        self.node.logger.info("deployed %s", policy_file)

    def fly(self, schedule: list[tuple[float, tuple[float, float, float]]]) -> list[Any]:
        from sim2real.ros_nodes.recordings import flights_from_recording

        self.wait_until_flying()
        start_ns = int(self.node.now_s() * 1e9)
        for seconds, point in schedule:
            self.send_setpoint(point)
            self.wait(seconds)
        end_ns = int(self.node.now_s() * 1e9)
        self.wait(self.cfg.flush_wait_s)  # the recorder closes its chunk
        files = sorted(Path(self.cfg.recording_dir).glob("*.mcap"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise RuntimeError(f"no recording (.mcap) in {self.cfg.recording_dir}: is the recorder running there?")
        flights, report = flights_from_recording(files[-1], self.topics["obs_topic"], self.topics["action_topic"],
                                                 self.dt, setpoint_topic=self.topics["setpoint_topic"],
                                                 since_ns=start_ns, until_ns=end_ns)  # fmt: skip
        self.node.logger.info("read %s: %d ticks in %d flight(s), %d cut at gaps", files[-1].name, report.transitions,
                              report.flights, report.gaps)  # fmt: skip
        return flights


def _settings(path: str) -> dict[str, Any]:
    """The dotted-key settings of a YAML file ('' = none)."""
    if not path:
        return {}
    from sim2real.core.config import read_yaml_mapping

    data = read_yaml_mapping(path, "finetuning settings by dotted key")
    return {str(k): (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}


def _yield_cpu(nice: int, threads: int) -> None:
    """Lower this process's CPU priority by ``nice`` and limit torch to ``threads`` threads.

    The learner shares the robot's computer with the policy node, whose control ticks come first.
    """
    import os

    import torch

    if not (isinstance(nice, int) and 0 <= nice <= 19 and isinstance(threads, int) and threads >= 1):
        raise ValueError(f"nice must be 0..19 and threads >= 1, got nice={nice!r}, threads={threads!r}")
    if nice:
        os.nice(nice)
    torch.set_num_threads(threads)


class FinetuneNode:
    """Runs the whole loop when built (the node exits when it is done)."""

    def __init__(self, node: Node) -> None:
        from sim2real.core.config import apply_overrides
        from sim2real.export.onnx import export_onnx
        from sim2real.policies.finetune import FinetuneConfig, Finetuner, load_pretrained
        from sim2real.sim.safety import SafetyLimits

        defaults = FinetuneNodeConfig()
        cfg = FinetuneNodeConfig(**{name: node.declare_parameter(name, getattr(defaults, name), _DESCRIPTIONS[name])
                                    for name in _DESCRIPTIONS})  # fmt: skip
        if not cfg.policy or not cfg.checkpoint:
            raise ValueError("parameters policy (the deployed .onnx) and checkpoint (its training checkpoint) are required")
        limits = SafetyLimits.from_yaml(cfg.safety_limits) if cfg.safety_limits else SafetyLimits()
        ft_cfg = apply_overrides(FinetuneConfig(max_real_s=cfg.max_real_s, limits=limits), _settings(cfg.settings))
        ft_cfg = replace(ft_cfg, seconds_per_iteration=min(ft_cfg.seconds_per_iteration, ft_cfg.max_real_s))
        _yield_cpu(cfg.nice, cfg.threads)
        home = tuple(float(v) for v in cfg.setpoint)
        if len(home) != 3:
            raise ValueError(f"setpoint must be 3 numbers, got {cfg.setpoint}")
        from sim2real.core.policy_file import read_metadata

        self.robot = RosRobot(node, cfg, read_metadata(cfg.policy).control_dt)
        out = Path(cfg.out)
        finetuner = Finetuner(ft_cfg, load_pretrained(cfg.checkpoint), self.robot, lambda c, o: export_onnx(c, o),
                              out, Path(cfg.policy), home, quiet=False)  # fmt: skip
        self.robot.send_setpoint(home)
        self.robot.wait(1.0)  # discovery: the policy node hears the latched set-point
        node.logger.info("finetuning with %.0f s of real flight, report in %s", ft_cfg.max_real_s, out)
        try:
            report = finetuner.run()
        finally:
            self.robot.send_setpoint(home)  # the robot hovers at home whatever happened
            self.robot.wait(0.2)
        node.logger.info("done: %d policies deployed, %d rollbacks, flying %s", report["accepted"], report["rollbacks"],
                         report["deployed"])  # fmt: skip
        node.shutdown()


def main(argv: list[str] | None = None) -> int:
    return run_node("finetune_node", FinetuneNode, argv)


if __name__ == "__main__":
    sys.exit(main())
