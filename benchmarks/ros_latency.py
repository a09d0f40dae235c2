"""Latency and sustained rate of ``policy_node`` on the dds backend (Cyclone DDS over loopback).

The policy node runs as its own process, exactly as ``sim2real launch`` starts it. This script plays the
robot in a second process: it publishes ``nav_msgs/Odometry`` and receives the node's ``cmd_rpm``.

* **Latency, odometry in -> command out** (``trigger:=odometry``: the node runs the policy on every odometry
  message). Each odometry carries its sequence number in the position (``x = k * 1e-6`` m, far below anything
  that matters to the policy); the node's ``~/obs`` gives it back, and the command published in the same
  tick (same reliable writer order) is paired with it. Latency = command arrival - odometry publish time, so
  it includes two DDS hops, (de)serialisation, observation assembly and onnxruntime.
* **Sustained rate** (``trigger:=timer`` at 100 and 500 Hz): command intervals over the run (p50/p99/max),
  achieved rate, and missed ticks (intervals above 1.5 periods), with odometry streaming at the same rate.

    python benchmarks/ros_latency.py [--duration 60] [--rt-priority 0 50]

Writes ``benchmarks/results/ros_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tests" / "data" / "quadrotor_hover.onnx"
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")

from sim2real.core.files import write_text_atomic  # noqa: E402
from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.transport import DEFAULT, SENSOR_DATA, create_node  # noqa: E402


def start_policy_node(domain: int, *params: str) -> subprocess.Popen[str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), SIM2REAL_ROS_BACKEND="dds", PYTHONUNBUFFERED="1")
    args = ["--ros-args", "-r", "__ns:=/bench", "-p", f"policy_path:={POLICY}", "-p", "autoarm:=true",
            "-p", "watchdog_timeout_s:=0.5", *[a for p in params for a in ("-p", p)]]  # fmt: skip
    code = "import sys; from sim2real.ros_nodes.policy_node import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def run(domain: int, rate_hz: float, duration: float, trigger: str, rt_priority: int) -> dict[str, Any]:
    """Stream odometry at ``rate_hz`` for ``duration`` s to a fresh policy node; figures of the run."""
    proc = start_policy_node(domain, f"trigger:={trigger}", f"control_rate_hz:={rate_hz}", f"rt_priority:={rt_priority}")
    sent: dict[int, float] = {}
    cmd_t: list[float] = []
    obs_k: list[tuple[float, int]] = []  # (arrival time, sequence number of the odometry it came from)
    try:
        with create_node("bench", "/bench", argv=[], backend="dds", domain_id=domain) as node:
            odom = node.create_publisher(m.Odometry, "odom", SENSOR_DATA)
            node.create_subscription(m.Float32MultiArray, "cmd_rpm", lambda _: cmd_t.append(time.perf_counter()),
                                     DEFAULT)  # fmt: skip
            node.create_subscription(m.Float32MultiArray, "policy/obs",
                                     lambda msg: obs_k.append((time.perf_counter(), round(msg.data[0] / 1e-6))),
                                     DEFAULT)  # fmt: skip
            deadline = time.monotonic() + 60
            while not cmd_t and time.monotonic() < deadline:  # wait for discovery + the node's start-up
                odom.publish(m.Odometry())
                node.spin_once(0.05)
            if not cmd_t:
                raise SystemExit(f"the policy node did not answer: {proc.stderr.read() if proc.poll() else ''}")
            cmd_t.clear()
            obs_k.clear()
            sent.update(stream(node, lambda k: odom.publish(m.Odometry(pose=m.PoseWithCovariance(
                m.Pose(m.Point(k * 1e-6, 0.0, 0.0))))), rate_hz, duration))  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    out = {"rate_hz": rate_hz, "trigger": trigger, "duration_s": duration, "odometry_sent": len(sent),
           **tick_figures(cmd_t, sent, rate_hz)}  # fmt: skip
    if trigger == "odometry":
        out.update(latency_figures(cmd_t, obs_k, sent))
    return out


def stream(node: Any, publish: Any, rate_hz: float, duration: float) -> dict[int, float]:
    """Call ``publish(k)`` for k = 1, 2, ... at ``rate_hz`` for ``duration`` s while spinning ``node``.

    Then drains for 0.5 s; returns sequence number -> publish time [s].
    """
    sent: dict[int, float] = {}
    period, k = 1.0 / rate_hz, 1
    t_next = time.perf_counter()
    end = t_next + duration
    while t_next < end:
        if time.perf_counter() >= t_next:
            sent[k] = time.perf_counter()
            publish(k)
            k, t_next = k + 1, t_next + period
        node.spin_once(max(0.0, min(t_next - time.perf_counter(), 0.002)))
    drain = time.monotonic() + 0.5
    while time.monotonic() < drain:
        node.spin_once(0.01)
    return sent


def streaming_window(cmd_t: list[float], sent: dict[int, float]) -> list[float]:
    """The commands of the streaming window only (the watchdog's safe tick after it is not a tick interval)."""
    last = max(sent.values())
    return [t for t in cmd_t if t <= last + 0.05]


def tick_figures(cmd_t: list[float], sent: dict[int, float], rate_hz: float) -> dict[str, Any]:
    """Command count, achieved rate, interval p50/p99/max and missed ticks (> 1.5 periods) of a streaming window.

    ``cmd_t``: command arrival times [s]; ``sent``: sequence number -> publish time of the inputs [s].
    """
    cmds = streaming_window(cmd_t, sent)
    iv = np.diff(cmds) * 1e3
    return {"commands": len(cmds), "achieved_rate_hz": (len(cmds) - 1) / (cmds[-1] - cmds[0]),
            "interval_ms_p50": float(np.percentile(iv, 50)), "interval_ms_p99": float(np.percentile(iv, 99)),
            "interval_ms_max": float(iv.max()), "missed_ticks": int((iv > 1.5e3 / rate_hz).sum())}  # fmt: skip


def latency_figures(cmd_t: list[float], obs_k: list[tuple[float, int]], sent: dict[int, float]) -> dict[str, Any]:
    """Input-to-command latency p50/p99/max [ms].

    The node publishes a tick's command, then its observation, on reliable writers: the command of the tick that
    used input ``k`` is the last one that arrived before the observation carrying ``k`` (``obs_k``: arrival time, k).
    """
    cmds = np.array(streaming_window(cmd_t, sent))
    pairs = [(cmds[j - 1], sent[k]) for t_obs, k in obs_k
             if k in sent and (j := int(np.searchsorted(cmds, t_obs, side="right"))) > 0]  # fmt: skip
    lat = np.array([c - s for c, s in pairs]) * 1e3
    return {"latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p99": float(np.percentile(lat, 99)),
            "latency_ms_max": float(lat.max()), "latency_samples": int(len(lat)), "dropped": len(sent) - len(lat)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per measurement (default 60)")
    p.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0], help="rates in Hz")
    p.add_argument("--triggers", nargs="+", default=["odometry", "timer"], choices=["odometry", "timer"])
    p.add_argument("--rt-priority", type=int, nargs="+", default=[50],
                   help="the node's rt_priority, one row each (0 = normal scheduling; default 50, the node's default)")
    p.add_argument("--domain", type=int, default=91, help="ROS_DOMAIN_ID of the benchmark (default 91)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ros_latency.json"))
    args = p.parse_args()
    rows = []
    cases = [(t, r, q) for t in args.triggers for r in args.rates for q in args.rt_priority]
    for i, (trigger, rate, prio) in enumerate(cases):
        rows.append({**run(args.domain + i, rate, args.duration, trigger, prio), "rt_priority": prio})
        print(f"{trigger:8s} {rate:5.0f} Hz rt_priority {prio} done", file=sys.stderr)
    print(f"\npolicy_node on the dds backend (Cyclone DDS, loopback), {args.duration:g} s per row, policy {POLICY.name}")
    head = (f"{'trigger':9s} {'rate':>6s} {'rt':>3s} {'achieved':>9s} {'interval p50/p99/max ms':>24s} {'missed':>6s} "
            f"{'latency p50/p99/max ms':>24s} {'dropped':>7s}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in rows:
        lat = (f"{r['latency_ms_p50']:.2f} / {r['latency_ms_p99']:.2f} / {r['latency_ms_max']:.2f}"
               if "latency_ms_p50" in r else "-")  # fmt: skip
        iv = f"{r['interval_ms_p50']:.2f} / {r['interval_ms_p99']:.2f} / {r['interval_ms_max']:.2f}"
        print(f"{r['trigger']:9s} {r['rate_hz']:6.0f} {r['rt_priority']:3d} {r['achieved_rate_hz']:9.1f} {iv:>24s} "
              f"{r['missed_ticks']:6d} {lat:>24s} {r.get('dropped', '-')!s:>7s}")
    result = {"machine": f"{platform.machine()} {os.cpu_count()} cpus", "python": platform.python_version(), "rows": rows}
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
