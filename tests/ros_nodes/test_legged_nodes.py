"""The legged deployment on the dds backend: ``sim2real launch launch/humanoid_sim.launch.xml`` runs the simulated
humanoid, the legged policy node and the recorder as separate processes; the recording shows the staged start and
that every command is the policy's own output for the observation the node built."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")
pytest.importorskip("mujoco")

from helpers import REPO, small_humanoid_policy  # noqa: E402

from sim2real.core.policy_file import OnnxPolicy  # noqa: E402
from sim2real.ros_nodes.legged_core import LeggedAdapter  # noqa: E402
from sim2real.ros_nodes.mcap_log import ReadReport, read_messages  # noqa: E402

_DOMAINS = itertools.count(120)


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_humanoid_policy(tmp_path_factory.mktemp("runs"))


def test_humanoid_sim_launch_staged_start_and_command_parity(policy_path: Path, tmp_path: Path) -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=str(next(_DOMAINS)), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sim2real.cli.main", "launch", str(REPO / "launch" / "humanoid_sim.launch.xml"),
           f"policy:={policy_path}", f"record_dir:={tmp_path}"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    time.sleep(12)  # start-up, 2 s to the default pose, 1 s hold, then the policy
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    for name in ("legged_sim", "legged_policy", "recorder"):
        assert f"[{name}]" in out
    assert "state starting" in out and "state running" in out, out
    (path,) = tmp_path.glob("*.mcap")
    report = ReadReport()
    msgs = list(read_messages(path, report=report))
    assert report.complete
    by = lambda topic: [x for x in msgs if x.topic == f"/humanoid/{topic}"]  # noqa: E731
    commands = np.array([x.msg.data for x in by("joint_commands")])
    states = by("joint_states")
    obs = np.array([x.msg.data for x in by("legged_policy/obs")], np.float32)
    actions = np.array([x.msg.data for x in by("legged_policy/action")], np.float32)
    policy = OnnxPolicy(policy_path)
    adapter = LeggedAdapter(policy.metadata)
    # staged start: the first command is the measured pose (in the policy's joint order, matched by name) ...
    first = next(x for x in by("joint_commands"))
    before = [s for s in states if s.log_time_ns <= first.log_time_ns][-1].msg
    pose = dict(zip(before.name, before.position))
    np.testing.assert_allclose(commands[0], [pose[j] for j in adapter.joints], atol=0.02)
    # ... then, 2 s later (100 ticks at 50 Hz; the interpolation follows the clock), the default pose, held for 1 s
    at_default = np.flatnonzero(np.abs(commands - adapter.default.numpy()).max(axis=1) < 1e-9)
    assert 97 <= at_default[0] <= 103 and np.array_equal(at_default[:45], at_default[0] + np.arange(45)), at_default[:5]
    ramp = np.abs(commands[: at_default[0]] - adapter.default.numpy()).max(axis=1)
    assert np.all(np.diff(ramp) <= 1e-9)  # monotonically closer on the way
    # every action is the policy's output for the observation the node built, and every action became a command
    assert len(obs) == len(actions) > 20
    np.testing.assert_allclose(np.clip(policy(obs), -1, 1), actions, atol=1e-5)
    for a in actions:
        assert np.abs(commands - adapter.targets(a)).max(axis=1).min() < 1e-6


STANDING = REPO / "tests" / "data" / "humanoid_stand.onnx"


def test_the_trained_humanoid_stands_20s_through_sim2real_launch(tmp_path: Path) -> None:
    """The committed standing policy on the launched graph: staged start in the harness, then 20 s on its own feet
    at a zero command, never damped (torso height from the sim robot's diagnostics, tilt from its IMU)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(next(_DOMAINS)), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sim2real.cli.main", "launch", str(REPO / "launch" / "humanoid_sim.launch.xml"),
           f"policy:={STANDING}", f"record_dir:={tmp_path}"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    time.sleep(30)  # start-up, 3 s staged start, then > 20 s of the policy
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "state running" in out and "state damping" not in out, out
    (path,) = tmp_path.glob("*.mcap")
    msgs = list(read_messages(path))
    actions = [x.log_time_ns for x in msgs if x.topic == "/humanoid/legged_policy/action"]
    assert (actions[-1] - actions[0]) / 1e9 > 20.0  # the policy ran for more than 20 s
    heights = [float(kv.value) for x in msgs if x.topic == "/diagnostics" for s in x.msg.status
               if "legged sim" in s.name and x.log_time_ns > actions[0] for kv in s.values if kv.key == "torso_height"]
    assert len(heights) > 35 and min(heights) > 1.0, heights  # standing: 1.285 m at the default pose
    tilt = [np.degrees(np.arccos(np.clip(1 - 2 * (q.x**2 + q.y**2), -1, 1))) for q in
            (x.msg.orientation for x in msgs if x.topic == "/humanoid/imu" and x.log_time_ns > actions[0])]  # fmt: skip
    assert max(tilt) < 30.0
