"""Finetuning through ROS 2 (dds backend): ``quadrotor_finetune.launch.xml`` end to end, and the robot variant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import PRETRAINED, REPO, TRAINED_POLICY

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from sim2real.ros_nodes.mcap_log import ReadReport, read_messages  # noqa: E402

# A loop that runs in seconds (2 iterations of 2 s). The gate asks for no improvement, so that the plumbing of a
# policy swap is exercised whatever a few updates do; the gate itself is tested in tests/policies/test_finetune.py.
TINY = """
seconds_per_iteration: 2.0
imagined_envs: 32
imagined_steps: 10
updates_per_step: 2
select_every: 5
select_episodes: 8
gate_episodes: 16
gate_seconds: 0.5
gate_improvement: -100.0
gate_min_margin: -100.0
rollback_threshold: 100.0
horizon: [5, 10]
world_model.iterations: 2
world_model.windows: 64
world_model.bootstrap: 2
world_model.burn_in_s: 0.5
"""


def _launch(tmp_path: Path, launch: str, domain: int, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "sim2real.cli.main", "launch", str(REPO / "launch" / launch),
           f"policy:={TRAINED_POLICY}", f"checkpoint:={PRETRAINED}", "max_real_s:=4", f"settings:={tmp_path / 'tiny.yaml'}",
           f"out:={tmp_path / 'out'}", f"record_dir:={tmp_path / 'rec'}", *args]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


class Output:
    """A process's output, read in a thread; :meth:`wait_for` a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines = proc, []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self._cond:
                self.lines.append(text)
                self._cond.notify_all()

    def wait_for(self, line: str, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(line in t for t in self.lines), timeout_s)

    def stop(self) -> str:
        """SIGINT, wait, everything it printed."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        time.sleep(0.5)
        return "".join(self.lines)


def _policy_diagnostics(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The policy node's diagnostics in a recording: (publish time [ns], key/values)."""
    return [(x.publish_time_ns, {kv.key: kv.value for kv in s.values}) for x in read_messages(path, {"/diagnostics"})
            for s in x.msg.status if s.name.endswith("policy: policy")]  # fmt: skip


def _no_tick_missed_by_a_swap(last: dict[str, str], out: str) -> None:
    """No control period was skipped while a policy loaded or was swapped in, and few were elsewhere.

    Elsewhere the control timer may skip a period when this 2-CPU virtual machine stalls (the host takes its
    CPUs: ``benchmarks/wake_latency.py``); a node that could not keep up would skip far more than 5 %.
    """
    assert last["missed_ticks_in_swaps"] == "0" and "during a policy swap" not in out, out[-3000:]
    assert int(last["missed_ticks"]) <= 0.05 * int(last["ticks"]), last


def _starved(path: Path) -> bool:
    """Whether the machine starved the policy node (over 1 % of its periods skipped): a run to judge again."""
    diag = _policy_diagnostics(path) if path.is_file() else []
    return bool(diag) and int(diag[-1][1]["missed_ticks"]) > 0.01 * int(diag[-1][1]["ticks"])


def test_finetune_launch_swaps_policies_without_missing_a_tick(tmp_path: Path) -> None:
    for attempt in range(2):  # a second run only when the host starved the first (see _starved)
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        launch = Output(_launch(run, "quadrotor_finetune.launch.xml", 150))
        launch.wait_for("finetuner: exited", 240)
        time.sleep(3.0)  # the policy node flies on after the finetuner is gone
        out = launch.stop()
        recordings = list((run / "rec").glob("*.mcap"))
        ok = "finetuner: exited with status 0" in out and "during a policy swap" not in out
        if attempt == 0 and not ok and recordings and _starved(recordings[0]):
            print(f"the machine starved the policy node ({_policy_diagnostics(recordings[0])[-1][1]['missed_ticks']}"
                  " periods skipped): running the launch again")  # fmt: skip
            continue
        break
    assert "finetuner: exited with status 0" in out, out[-3000:]
    report = json.loads((run / "out" / "finetune_report.json").read_text())
    assert report["real_s"] >= 3.6 and report["accepted"] >= 1
    (path,) = recordings
    read = ReadReport()
    list(read_messages(path, report=read))
    assert read.complete
    diag = _policy_diagnostics(path)
    last = diag[-1][1]
    assert int(last["reloads"]) >= 1 and last["reload_failures"] == "0" and last["state"] == "running"
    assert last["policy"] == str(Path(report["deployed"]).resolve())  # flying the last accepted policy
    _no_tick_missed_by_a_swap(last, out)
    assert last["setpoint"] == "[0.0, 0.0, 0.0]"  # back home
    # Every tick's command reached the recorder, across every swap: as many commands published between the first
    # and the last diagnostics as ticks counted between them (the publish times are the node's own)
    (t0, first), (t1, _) = diag[0], diag[-1]
    ticks = int(last["ticks"]) - int(first["ticks"])
    cmds = np.array([x.publish_time_ns for x in read_messages(path, {"/cf1/cmd_rpm"})])
    assert abs(int(((cmds > t0) & (cmds <= t1)).sum()) - ticks) <= 2, (ticks, len(cmds))
    assert int(last["rejected_setpoints"]) == 0  # the schedule stayed inside the set-point box


def test_robot_variant_finetunes_any_robot_speaking_odom_and_cmd_rpm(tmp_path: Path) -> None:
    """The robot launch file against a separately started simulated robot, armed through ``arm``."""
    domain = 151
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), SIM2REAL_ROS_BACKEND="dds", PYTHONUNBUFFERED="1")
    code = "import sys; from sim2real.ros_nodes.sim_robot_node import main; sys.exit(main())"
    shift = REPO / "config" / "shifts" / "wind.yaml"
    robot = subprocess.Popen([sys.executable, "-c", code, "--ros-args", "-r", "__ns:=/cf1", "-p", f"shift_file:={shift}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)  # fmt: skip
    launch = Output(_launch(tmp_path, "quadrotor_finetune_robot.launch.xml", domain))
    from sim2real.ros_nodes import messages as m
    from sim2real.ros_nodes.transport import LATCHED
    from sim2real.ros_nodes.transport.factory import create_node

    try:
        with create_node("operator", "/cf1", argv=[], backend="dds", domain_id=domain) as node:
            arm = node.create_publisher(m.Bool, "arm", LATCHED)
            launch.wait_for("waiting for the policy node to fly", 60)  # the finetuner waits for the operator
            for _ in range(20):  # who arms (again and again, until the policy node has surely heard it)
                arm.publish(m.Bool(True))
                node.spin_once(0.25)
            launch.wait_for("finetuner: exited", 240)
    finally:
        out = launch.stop()
        robot.send_signal(signal.SIGINT)
        robot.communicate(timeout=20)
    assert "finetuner: exited with status 0" in out, out[-3000:]
    report = json.loads((tmp_path / "out" / "finetune_report.json").read_text())
    assert report["real_s"] >= 3.6 and len(report["iterations"]) >= 2


def test_killing_the_finetuner_leaves_the_policy_node_flying_the_last_accepted_policy(tmp_path: Path) -> None:
    proc = _launch(tmp_path, "quadrotor_finetune.launch.xml", 152)
    launch = Output(proc)
    assert launch.wait_for("deployed /", 240), "".join(launch.lines)[-3000:]  # the first accepted policy was handed over
    (line,) = [t for t in launch.lines if "finetuner: started, pid" in t]
    os.kill(int(line.split("pid")[1]), signal.SIGKILL)
    launch.wait_for("finetuner: exited", 30)
    time.sleep(3.0)
    out = launch.stop()
    deployed = [t.split(": deployed ")[1].strip() for t in launch.lines if ": deployed /" in t]  # all before the kill
    assert "finetuner: exited with status -9" in out or "killed" in out, out[-2000:]
    (path,) = (tmp_path / "rec").glob("*.mcap")
    last = _policy_diagnostics(path)[-1][1]
    assert last["state"] == "running" and last["policy"] == str(Path(deployed[-1]).resolve()), (last, deployed)
    _no_tick_missed_by_a_swap(last, out)
