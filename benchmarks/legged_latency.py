"""Latency and sustained rate of ``legged_policy_node`` on the dds backend (Cyclone DDS over loopback).

The node runs as its own process, as ``sim2real launch`` starts it, with a humanoid policy (``--policy``; by
default a small policy exported here from 200 training steps: only its size matters). This script plays the robot
in a second process: it publishes ``sensor_msgs/Imu`` and ``sensor_msgs/JointState`` (17 joints, upright, at the
default pose) and receives ``joint_commands``.

* **Latency, JointState in -> command out** (``trigger:=joint_states``: the node runs the policy on every joint
  state). Each joint state carries its sequence number in the first joint's position (``default + k * 1e-6`` rad);
  the node's ``~/obs`` gives it back, and the command of the same tick (published first, same reliable writer
  order) is paired with it. Latency = command arrival - joint state publish time: two DDS hops, (de)serialisation,
  joint matching by name, observation assembly and onnxruntime.
* **Sustained rate** (``trigger:=timer`` at each rate): command intervals (p50/p99/max), achieved rate and missed
  ticks (intervals above 1.5 periods), with joint states streaming at the same rate.

    python benchmarks/legged_latency.py [--duration 30] [--rates 50 500] [--policy POLICY.onnx]

Writes ``benchmarks/results/legged_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

from sim2real.core.files import write_text_atomic  # noqa: E402
from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.transport import DEFAULT, SENSOR_DATA, create_node  # noqa: E402
from sim2real.sim import legged  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from ros_latency import latency_figures, stream, tick_figures  # noqa: E402  (the same figures as policy_node's)


def small_policy(out: Path) -> Path:
    """A humanoid policy of the task's default network size, exported after 200 env steps."""
    from sim2real.core.config import apply_overrides
    from sim2real.export.onnx import export_onnx
    from sim2real.policies.runner import Runner
    from sim2real.tasks.humanoid_walk import train_defaults

    cfg = apply_overrides(train_defaults(), {"num_envs": 2, "total_env_steps": 200, "warmup_env_steps": 100,
                                             "sac.batch_size": 32, "log_interval": 100, "env.num_threads": 1,
                                             "log_dir": str(out)})  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    return export_onnx(runner.run_dir)


def run(policy: Path, domain: int, rate_hz: float, duration: float, trigger: str) -> dict[str, Any]:
    """Stream joint states at ``rate_hz`` for ``duration`` s to a fresh legged node; figures of the run."""
    meta = OnnxPolicy(policy).metadata
    robot = meta.robot
    at = next(meta.obs_layout.start(t.name) for t in meta.obs_layout if t.source == legged.JOINT_POS)  # first joint
    names, default = list(robot["joint_names"]), np.asarray(robot["default_joint_pos"], np.float64)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), SIM2REAL_ROS_BACKEND="dds", PYTHONUNBUFFERED="1")
    params = [f"policy_path:={policy}", "autostart:=true", "start_duration_s:=0.0", "hold_s:=0.0",
              "watchdog_timeout_s:=0.5", f"trigger:={trigger}", f"control_rate_hz:={rate_hz}"]  # fmt: skip
    code = "import sys; from sim2real.ros_nodes.legged_policy_node import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/bench",
                             *[a for p in params for a in ("-p", p)]], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    sent: dict[int, float] = {}
    cmd_t: list[float] = []
    obs_k: list[tuple[float, int]] = []
    first = default[0]
    try:
        with create_node("bench", "/bench", argv=[], backend="dds", domain_id=domain) as node:
            js = node.create_publisher(m.JointState, "joint_states", SENSOR_DATA)
            imu = node.create_publisher(m.Imu, "imu", SENSOR_DATA)
            node.create_subscription(m.Float64MultiArray, "joint_commands", lambda _: cmd_t.append(time.perf_counter()),
                                     DEFAULT)  # fmt: skip
            node.create_subscription(m.Float32MultiArray, "legged_policy/obs", lambda msg: obs_k.append(
                (time.perf_counter(), round(msg.data[at] / 1e-6))), DEFAULT)  # fmt: skip
            zeros = [0.0] * len(names)

            def publish(k: int) -> None:
                q = default.copy()
                q[0] = first + k * 1e-6
                imu.publish(m.Imu(orientation=m.Quaternion(0.0, 0.0, 0.0, 1.0)))
                js.publish(m.JointState(name=names, position=q.tolist(), velocity=zeros))

            deadline = time.monotonic() + 60
            while not obs_k and time.monotonic() < deadline:  # discovery, the node's start-up, running
                publish(0)
                node.spin_once(0.02)
            if not obs_k:
                raise SystemExit(f"the legged node did not run: {proc.stderr.read() if proc.poll() else ''}")
            cmd_t.clear()
            obs_k.clear()
            sent.update(stream(node, publish, rate_hz, duration))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    out = {"rate_hz": rate_hz, "trigger": trigger, "duration_s": duration, "joint_states_sent": len(sent),
           **tick_figures(cmd_t, sent, rate_hz)}  # fmt: skip
    if trigger == "joint_states":
        out.update(latency_figures(cmd_t, obs_k, sent))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per measurement (default 30)")
    p.add_argument("--rates", type=float, nargs="+", default=[50.0, 500.0], help="rates in Hz (default 50 500)")
    p.add_argument("--policy", default=None, help="a legged policy.onnx (default: a small one exported here)")
    p.add_argument("--domain", type=int, default=81, help="ROS_DOMAIN_ID of the benchmark (default 81)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "legged_latency.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(args.policy) if args.policy else small_policy(Path(tmp))
        rows = []
        for i, (trigger, rate) in enumerate((t, r) for t in ("joint_states", "timer") for r in args.rates):
            rows.append(run(policy, args.domain + i, rate, args.duration, trigger))
            print(f"{trigger:12s} {rate:5.0f} Hz done", file=sys.stderr)
        obs_dim = OnnxPolicy(policy).obs_dim
    print(f"\nlegged_policy_node on the dds backend (Cyclone DDS, loopback), {args.duration:g} s per row, "
          f"{obs_dim} -> 17 policy")
    head = (f"{'trigger':13s} {'rate':>6s} {'achieved':>9s} {'interval p50/p99/max ms':>24s} {'missed':>6s} "
            f"{'latency p50/p99/max ms':>24s} {'dropped':>7s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        lat = (f"{r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} / {r['latency_ms_max']:.2f}"
               if "latency_ms_p50" in r else "-")  # fmt: skip
        iv = f"{r['interval_ms_p50']:.2f} / {r['interval_ms_p99']:.2f} / {r['interval_ms_max']:.2f}"
        print(f"{r['trigger']:13s} {r['rate_hz']:6.0f} {r['achieved_rate_hz']:9.1f} {iv:>24s} {r['missed_ticks']:6d} "
              f"{lat:>24s} {r.get('dropped', '-')!s:>7s}")
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "python": platform.python_version(), "rows": rows}
    write_text_atomic(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
