"""The deploy nodes on the dds backend: safety faults in-process, the whole graph as separate processes."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from helpers import REPO

from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.mcap_log import ReadReport, read_messages, read_transitions  # noqa: E402
from sim2real.ros_nodes.policy_node import PolicyNode  # noqa: E402
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA, create_node  # noqa: E402

TRAINED = REPO / "tests" / "data" / "quadrotor_hover.onnx"
CONFIG = REPO / "config" / "quadrotor.yaml"
_DOMAINS = itertools.count(200)


class Graph:
    """A policy node spun in a thread plus a test node that plays the robot (same process, real DDS)."""

    def __init__(self, domain: int, *params: str) -> None:
        args = ["--ros-args", "-r", "__ns:=/cf", "--params-file", str(CONFIG), "-p", f"policy_path:={TRAINED}",
                *itertools.chain.from_iterable(("-p", p) for p in params)]  # fmt: skip
        self.node = create_node("policy", argv=args, backend="dds", domain_id=domain)
        self.policy = PolicyNode(self.node)
        self.test = create_node("tester", "/cf", argv=[], backend="dds", domain_id=domain)
        self.cmds: list[tuple[float, list[float]]] = []
        self.odom = self.test.create_publisher(m.Odometry, "odom", SENSOR_DATA)
        self.estop = self.test.create_publisher(m.Bool, "estop", DEFAULT)
        self.reload = self.test.create_publisher(m.String, "policy/reload", DEFAULT)
        self.test.create_subscription(m.Float32MultiArray, "cmd_rpm", lambda msg: self.cmds.append(
            (time.monotonic(), list(msg.data))), DEFAULT)  # fmt: skip
        self._thread = threading.Thread(target=self.node.spin, daemon=True)
        self._thread.start()

    def hover_odom(self, x: float = 0.02, frame: str = "world") -> m.Odometry:
        return m.Odometry(m.Header(frame_id=frame), pose=m.PoseWithCovariance(m.Pose(m.Point(x, 0.0, 0.0))))

    def run(self, seconds: float, odom: m.Odometry | None = None) -> None:
        """Spin the test node for ``seconds``, publishing ``odom`` at 100 Hz when given."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if odom is not None:
                self.odom.publish(odom)
            self.test.spin_once(0.01)

    def close(self) -> None:
        self.node.shutdown()
        self._thread.join(5)
        self.test.shutdown()


@pytest.fixture
def graph(request: pytest.FixtureRequest) -> Iterator[Graph]:
    g = Graph(next(_DOMAINS), "autoarm:=true", *getattr(request, "param", ()))
    yield g
    g.close()


def _idle(cmd: list[float]) -> bool:
    return all(v == 0.0 for v in cmd)


def test_stale_odometry_gives_safe_output_within_the_watchdog_period(graph: Graph) -> None:
    graph.run(1.0, graph.hover_odom())
    assert graph.cmds and not _idle(graph.cmds[-1][1])  # flying
    stop = time.monotonic()
    graph.run(0.5)  # odometry stops
    first_idle = next(t for t, cmd in graph.cmds if t > stop and _idle(cmd))
    assert first_idle - stop <= 0.05 + 0.03  # watchdog 0.05 s + one 10 ms tick + delivery
    assert graph.policy.ctl.counters.watchdog_trips == 1


def test_nan_odometry_is_rejected_with_safe_output(graph: Graph) -> None:
    graph.run(0.5, graph.hover_odom())
    bad = graph.hover_odom(math.nan)
    n = len(graph.cmds)
    graph.run(0.2, bad)
    assert all(_idle(cmd) for _, cmd in graph.cmds[n + 2 :]) and graph.policy.ctl.counters.rejected_inputs > 5
    assert graph.policy.ctl.diagnostics()["fault"] == "non-finite odometry"


def test_odometry_in_the_wrong_frame_is_rejected(graph: Graph) -> None:
    graph.run(0.5, graph.hover_odom())
    n = len(graph.cmds)
    graph.run(0.2, graph.hover_odom(frame="map"))
    assert all(_idle(cmd) for _, cmd in graph.cmds[n + 2 :]) and "expected 'world'" in graph.policy.ctl.diagnostics()["fault"]


def test_policy_for_another_robot_model_is_refused_at_start() -> None:
    from sim2real.core.files import CheckpointError

    args = ["--ros-args", "-p", f"policy_path:={TRAINED}", "-p", "robot_model:=crazyflie-newer"]
    with create_node("policy", argv=args, backend="dds", domain_id=next(_DOMAINS)) as node:
        with pytest.raises(CheckpointError, match="trained for robot model 'crazyflie-paper'"):
            PolicyNode(node)


def test_estop_latches_the_safe_output(graph: Graph) -> None:
    graph.run(0.5, graph.hover_odom())
    graph.estop.publish(m.Bool(True))
    graph.run(0.2, graph.hover_odom())
    graph.estop.publish(m.Bool(False))  # releasing does not clear it
    n = len(graph.cmds)
    graph.run(0.5, graph.hover_odom())
    assert len(graph.cmds) - n > 30 and all(_idle(cmd) for _, cmd in graph.cmds[n:])


def test_corrupt_policy_on_reload_is_refused_and_the_old_one_keeps_running(graph: Graph, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(TRAINED.read_bytes()[:3000])
    graph.run(0.5, graph.hover_odom())
    graph.reload.publish(m.String(str(corrupt)))
    n = len(graph.cmds)
    graph.run(1.0, graph.hover_odom())
    c = graph.policy.ctl.counters
    assert c.reload_failures == 1 and "corrupt.onnx" in c.last_reload_error and c.reloads == 0
    ticks = [t for t, _ in graph.cmds[n:]]
    assert len(ticks) >= 90 and np.diff(ticks).max() < 0.05  # no control tick dropped around the reload
    assert not any(_idle(cmd) for _, cmd in graph.cmds[n:])


def test_skipped_periods_are_charged_to_a_swap_only_while_it_is_under_way() -> None:
    """The accounting behind ``missed_ticks_in_swaps``: the node's timer callback driven by hand, skips injected."""
    args = ["--ros-args", "-p", f"policy_path:={TRAINED}"]
    with create_node("policy", argv=args, backend="dds", domain_id=next(_DOMAINS)) as node:
        p = PolicyNode(node)
        schedule = p.control_timer.schedule

        def tick(skipped: int = 0) -> int:
            schedule.overruns += skipped
            p._on_timer()
            return p.swap_missed_ticks

        assert tick(1) == 0  # no swap under way
        p.ctl.request_reload(TRAINED, wait=True)  # loaded: waits for the next tick to swap it in
        assert p.ctl.reloading and tick(1) == 1 and p.ctl.counters.reloads == 1 and not p.ctl.reloading
        assert tick(2) == 3  # the tick after the swap
        assert tick() == 3 and tick() == 3 and tick(1) == 3  # the window has closed


def test_realtime_priority_is_applied_or_says_why_not() -> None:
    from sim2real.ros_nodes.node_main import realtime_priority

    with pytest.raises(ValueError, match="0..99"):
        realtime_priority(100)
    code = ("import os; from sim2real.ros_nodes.node_main import realtime_priority; ok, msg = realtime_priority(10); "
            "print(ok, os.sched_getscheduler(0) == os.SCHED_FIFO, msg)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 2)
    assert out[0] == out[1]  # FIFO exactly when it says so
    assert ("SCHED_FIFO 10" if out[0] == "True" else "not permitted") in out[2]


# ------------------------------------------------------------------------------------------ processes
def _start(module: str, domain: int, *ros_args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), SIM2REAL_ROS_BACKEND="dds", PYTHONUNBUFFERED="1")
    code = f"import sys; from sim2real.ros_nodes.{module} import main; sys.exit(main())"
    args = ["--ros-args", "-r", "__ns:=/cf1", "--params-file", str(CONFIG), *ros_args]
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)  # fmt: skip


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=20)
    return out


def test_killing_the_policy_node_engages_the_robots_command_timeout(tmp_path: Path) -> None:
    domain = next(_DOMAINS)
    sim = _start("sim_robot_node", domain)
    pol = _start("policy_node", domain, "-p", f"policy_path:={TRAINED}", "-p", "autoarm:=true")
    status: list[dict[str, str]] = []
    with create_node("watcher", "/cf1", argv=[], backend="dds", domain_id=domain) as node:
        node.create_subscription(m.DiagnosticArray, "/diagnostics", lambda a: status.extend(
            {kv.key: kv.value for kv in s.values} for s in a.status if "sim robot" in s.name), DEFAULT)  # fmt: skip
        end = time.monotonic() + 60
        while not any(s.get("steps", "0") > "0" and int(s["steps"]) > 200 for s in status) and time.monotonic() < end:
            node.spin_once(0.1)  # wait until the policy has flown the robot for > 2 s
        assert status and status[-1]["command_timeouts"] == "0"
        pol.kill()  # SIGKILL mid-flight: no goodbye, no safe command
        pol.wait()
        n = len(status)
        end = time.monotonic() + 5
        while time.monotonic() < end and not any(s["motors_idle_by_timeout"] == "True" for s in status[n:]):
            node.spin_once(0.1)
    out = _stop(sim)
    assert any(s["motors_idle_by_timeout"] == "True" and s["command_timeouts"] == "1" for s in status[n:]), out
    assert "motors idle" in out


def test_quadrotor_hovers_20s_through_sim2real_launch(tmp_path: Path) -> None:
    """``sim2real launch launch/quadrotor_sim.launch.xml``: sim robot, policy node and recorder as separate
    processes; the quadrotor takes off from a perturbed start and hovers within 0.10 m for 20 s; the recording
    holds every control tick; Ctrl-C (SIGINT) stops everything cleanly."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(next(_DOMAINS)), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sim2real.cli.main", "launch", str(REPO / "launch" / "quadrotor_sim.launch.xml"),
           f"policy:={TRAINED}", f"record_dir:={tmp_path}", "seed:=3", "start:=nominal"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    time.sleep(28)
    out = _stop(proc)
    assert proc.returncode == 0, out
    for name in ("sim_robot", "policy", "recorder"):
        assert f"[{name}]" in out  # three processes, each with its prefixed output
    (path,) = tmp_path.glob("*.mcap")
    report = ReadReport()
    msgs = list(read_messages(path, report=report))
    assert report.complete  # SIGINT closed the file with its footer
    cmds = [x.log_time_ns for x in msgs if x.topic == "/cf1/cmd_rpm"]
    odom = [(x.log_time_ns, x.msg.pose.pose.position) for x in msgs if x.topic == "/cf1/odom"]
    t = (np.array([a for a, _ in odom]) - cmds[-1]) / 1e9  # 0 = the policy's last command
    err = np.linalg.norm([[p.x, p.y, p.z] for _, p in odom], axis=1)
    flying = (t >= -20.0) & (t <= 0.0)  # the last 20 s under the policy
    assert t[0] < -22 and err[flying].max() < 0.10, (err[flying].max(), t[0])
    assert err[0] > 0.05  # it took off from a perturbed start (the sim robot rests there until the motors spin)
    # Every tick of the flight is in the recording (the recorder drains after SIGINT): each tick that ran the
    # policy published one observation. The commands of the disarmed ticks at start-up, before the recorder's
    # subscription matched (nodes start in parallel, as under ros2 launch), may be missing.
    summary = out.split("stopped after ")[1]
    ticks, ran = int(summary.split(" ticks")[0]), int(summary.split("(")[1].split(" ran the policy")[0])
    obs = [x for x in msgs if x.topic == "/cf1/policy/obs"]
    assert len(obs) == ran > 2000 and ticks - 100 <= len(cmds) <= ticks
    gaps = np.diff(cmds) / 1e6
    assert np.percentile(gaps, 50) == pytest.approx(10.0, abs=0.5) and gaps.max() < 50  # 100 Hz, no stall


def test_recorder_killed_with_sigkill_leaves_a_readable_mcap(tmp_path: Path) -> None:
    domain = next(_DOMAINS)
    rec = _start("recorder_node", domain, "-p", f"output_dir:={tmp_path}", "-p", "flush_interval_s:=0.1")
    sent = 0
    with create_node("talker", "/cf1", argv=[], backend="dds", domain_id=domain) as node:
        pub = node.create_publisher(m.Float32MultiArray, "cmd_rpm", DEFAULT)
        end = time.monotonic() + 60
        while pub.subscription_count == 0 and time.monotonic() < end:  # the recorder has subscribed
            node.spin_once(0.05)
        for i in range(300):  # 3 s at 100 Hz
            pub.publish(m.Float32MultiArray.vector([float(i)] * 4))
            sent += 1
            node.spin_once(0.01)
        rec.kill()  # SIGKILL: no drain, no footer
        rec.wait()
    (path,) = tmp_path.glob("*.mcap")
    report = ReadReport()
    got = [int(x.msg.data[0]) for x in read_messages(path, report=report) if x.topic == "/cf1/cmd_rpm"]
    assert not report.complete  # the footer is missing ...
    assert got == list(range(len(got))) and len(got) >= sent - 20  # ... but all but the last ~0.1 s is there


def test_recorder_keeps_a_backlog_while_it_is_busy(tmp_path: Path) -> None:
    """Messages that arrive while the recorder is not taking them (writing a chunk) wait in its reader queue, and
    keep the time they were published: the transitions read back are paired and spaced as the ticks were sent."""
    from sim2real.ros_nodes.recorder_node import RecorderNode

    domain = next(_DOMAINS)
    args = ["--ros-args", "-r", "__ns:=/cf1", "-p", f"output_dir:={tmp_path}",
            "-p", "topics:=[policy/obs, policy/action]"]  # fmt: skip
    with create_node("recorder", argv=args, backend="dds", domain_id=domain) as rec_node, \
            create_node("policy", "/cf1", argv=[], backend="dds", domain_id=domain) as node:  # fmt: skip
        rec = RecorderNode(rec_node)
        obs = node.create_publisher(m.Float32MultiArray, "policy/obs", DEFAULT)
        act = node.create_publisher(m.Float32MultiArray, "policy/action", DEFAULT)
        end = time.monotonic() + 30
        while (obs.subscription_count == 0 or act.subscription_count == 0) and time.monotonic() < end:
            node.spin_once(0.05)
        for i in range(300):  # 1.5 s of 200 Hz ticks while the recorder's thread does not take any
            obs.publish(m.Float32MultiArray.vector([float(i)] * 3, "obs"))
            act.publish(m.Float32MultiArray.vector([-float(i)] * 4, "action"))
            time.sleep(0.005)
        time.sleep(0.5)
        while rec_node.spin_once(0.1):  # now it takes them all, one topic's queue after the other's
            pass
        rec.close()
    got = [int(x.msg.data[0]) for x in read_messages(rec.path) if x.topic == "/cf1/policy/obs"]
    assert got == list(range(300))
    tr = read_transitions(rec.path, "/cf1/policy/obs", "/cf1/policy/action")
    assert tr["obs"][:, 0].tolist() == list(range(299)) and (tr["action"][:, 0] == -tr["obs"][:, 0]).all()
    sent, logged = np.diff(tr["publish_time_ns"]) / 1e9, np.ptp(tr["log_time_ns"]) / 1e9
    assert sent.min() >= 0.004 and logged < 0.5 * sent.sum()  # spaced as sent; received in a burst


def test_setpoint_topic_moves_the_hover_point_and_refuses_leaving_the_box(graph: Graph) -> None:
    active: list[tuple[float, float, float]] = []
    graph.test.create_subscription(m.PointStamped, "policy/setpoint_active", lambda msg: active.append(
        (msg.point.x, msg.point.y, msg.point.z)), LATCHED)  # fmt: skip
    pub = graph.test.create_publisher(m.PointStamped, "policy/setpoint", DEFAULT)
    graph.run(0.5, graph.hover_odom())
    assert active and active[-1] == (0.0, 0.0, 0.0)  # latched: the configured set-point at start
    for point, frame in (((0.2, 0.0, 0.1), "world"), ((2.0, 0.0, 0.0), "world"), ((0.1, 0.1, 0.1), "map")):
        pub.publish(m.PointStamped(m.Header(frame_id=frame), m.Point(*point)))
        graph.run(0.3, graph.hover_odom())
    ctl = graph.policy.ctl
    assert active[-1] == pytest.approx((0.2, 0.0, 0.1)) and ctl.setpoint.tolist() == pytest.approx([0.2, 0.0, 0.1])
    assert ctl.counters.rejected_setpoints == 2 and "frame 'map'" in ctl.counters.last_setpoint_error
