"""`sim2real launch`: XML launch files without ROS (parsing, substitutions, errors) and the process runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO

from sim2real.cli.main import main
from sim2real.ros_nodes.launch import runner as launch_runner
from sim2real.ros_nodes.launch.package import console_scripts, entry_point_command, locate_package
from sim2real.ros_nodes.launch.parser import (
    ParamFile,
    ParamValue,
    declared_arguments,
    load_launch,
    parse_launch_arguments,
)
from sim2real.ros_nodes.launch.runner import LaunchRunner, plan_processes
from sim2real.ros_nodes.launch.substitutions import LaunchError, parse_substitutions

SIM = REPO / "launch" / "quadrotor_sim.launch.xml"
ROBOT = REPO / "launch" / "quadrotor_robot.launch.xml"

# A stand-in node: prints its argv and environment, then sleeps; SIGINT -> exit 0. MODE (env) changes that:
# ignore_int (SIGTERM kills it), ignore_all (only SIGKILL does), exitN (exits with N after AFTER seconds).
NODE = textwrap.dedent("""
    import json, os, signal, sys, time
    mode = os.environ.get("MODE", "sleep")
    def on_int(*_):
        print("got SIGINT", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN if mode.startswith("ignore") else on_int)
    if mode == "ignore_all":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    env = {k: os.environ.get(k) for k in ("SIM2REAL_ROS_BACKEND", "PYTHONUNBUFFERED", "EXTRA")}
    print("START " + json.dumps({"exec": sys.argv[1], "argv": sys.argv[2:], "env": env, "pid": os.getpid()}))
    print("a line on stderr", file=sys.stderr)
    if mode.startswith("exit"):
        time.sleep(float(os.environ.get("AFTER", "0.05")))
        sys.exit(int(mode[4:]))
    while True:
        time.sleep(0.01)
""")


class Capture:
    """A text stream that keeps its lines and lets a test wait for some of them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def write(self, text: str) -> int:
        with self._cond:
            self.lines += [line for line in text.splitlines() if line]
            self._cond.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for(self, needle: str, count: int = 1, timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(needle in line for line in self.lines) >= count, timeout)
        assert ok, f"{count} x {needle!r} not seen in {timeout} s: {self.lines}"

    def starts(self) -> dict[str, dict]:
        """``{label: START record}`` of the stand-in nodes (the last one per label)."""
        out = {}
        for line in self.lines:
            label, sep, rest = line.partition("] START ")
            if sep:
                out[label.lstrip("[")] = json.loads(rest)
        return out


@pytest.fixture
def node_script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_node.py"
    path.write_text(NODE)
    return path


@pytest.fixture
def resolver(node_script: Path):
    return lambda package, executable: [sys.executable, str(node_script), executable]


def write_launch(tmp_path: Path, body: str, name: str = "test.launch.xml") -> Path:
    path = tmp_path / name
    path.write_text(f'<?xml version="1.0"?>\n<launch>\n{textwrap.dedent(body)}\n</launch>\n')
    return path


def run_launch(path: Path, resolver, args: dict[str, str] | None = None, stop_after: int | None = None, **kw):
    """Run a launch file in a thread; with ``stop_after``, request the shutdown once that many nodes started."""
    out, err = Capture(), Capture()
    kw.setdefault("log_dir", path.parent / "logs")  # output="log" files stay in the test's directory
    runner = LaunchRunner(plan_processes(load_launch(path, args), resolver), out=out, err=err, **kw)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=runner.run()))
    thread.start()
    if stop_after is not None:
        out.wait_for("START", stop_after)
        runner.request_shutdown("test")
    thread.join(30)
    assert not thread.is_alive(), "the launch did not end"
    return box["result"], out, err


# ------------------------------------------------------------------------------------------------ the real files
def test_sim_launch_file_resolves(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(SIM), "policy:=/tmp/p.onnx", "--print"]) == 0
    text = capsys.readouterr().out
    assert "3 node(s)" in text
    for label in ("[sim_robot]", "[policy]", "[recorder]"):
        assert label in text
    assert text.count("-r __ns:=/cf1") == 3
    assert f"--params-file {REPO / 'config' / 'quadrotor.yaml'}" in text
    assert "-p policy_path:=/tmp/p.onnx" in text and "-p autoarm:=true" in text
    assert "SIM2REAL_ROS_BACKEND=dds" in text


def test_robot_launch_file_with_overrides() -> None:
    desc = load_launch(ROBOT, {"policy": "/tmp/p.onnx", "namespace": "cf2", "odom_topic": "/mocap/odom"})
    assert [n.name for n in desc.nodes] == ["policy", "recorder"]
    policy = desc.nodes[0]
    assert policy.namespace == "/cf2"
    assert policy.remaps == [("odom", "/mocap/odom"), ("cmd_rpm", "cmd_rpm")]
    assert policy.params[0] == ParamFile(str(REPO / "config" / "quadrotor.yaml"))
    assert ParamValue("policy_path", "/tmp/p.onnx", "/tmp/p.onnx") in policy.params
    assert ParamValue("autoarm", False, "false") in policy.params
    assert policy.ros_argv() == [
        "--ros-args", "-r", "__node:=policy", "-r", "__ns:=/cf2", "--params-file", str(REPO / "config" / "quadrotor.yaml"),
        "-p", "policy_path:=/tmp/p.onnx", "-p", "autoarm:=false", "-p", "require_recorder:=true",
        "-r", "odom:=/mocap/odom", "-r", "cmd_rpm:=cmd_rpm",
    ]  # fmt: skip
    assert desc.values["namespace"] == "cf2" and desc.given == {"policy", "namespace", "odom_topic"}
    assert desc.packages["sim2real"].source in ("source checkout", "installed data files (sys.prefix)",
                                                "ament index (AMENT_PREFIX_PATH)")  # fmt: skip


def test_humanoid_robot_launch_file_speaks_to_ros2_control() -> None:
    desc = load_launch(REPO / "launch" / "humanoid_robot.launch.xml",
                       {"policy": "/tmp/p.onnx", "controller": "/legs/commands", "imu": "/imu"})  # fmt: skip
    policy = next(n for n in desc.nodes if n.name == "legged_policy")
    assert policy.remaps == [("joint_states", "/joint_states"), ("imu", "/imu"), ("joint_commands", "/legs/commands")]
    assert ParamValue("autostart", False, "false") in policy.params  # a robot starts on `arm`, never by itself
    assert policy.params[0] == ParamFile(str(REPO / "config" / "humanoid.yaml"))


def test_launch_files_name_installed_console_scripts() -> None:
    scripts = console_scripts()
    for path in (SIM, ROBOT, *(REPO / "launch").glob("humanoid_*.launch.xml")):
        for node in load_launch(path, {"policy": "p.onnx"}).nodes:
            assert node.executable in scripts, f"{node.executable} is not a console script (pip install -e .)"
    cmd = entry_point_command("sim2real", "policy_node")
    assert cmd[0] == sys.executable and "from sim2real.ros_nodes.policy_node import main" in cmd[2]


def test_launch_file_found_by_name_in_the_share_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", "quadrotor_robot.launch.xml", "policy:=p.onnx", "--print"]) == 0
    assert "2 node(s)" in capsys.readouterr().out
    assert locate_package().share.joinpath("launch", "quadrotor_robot.launch.xml").is_file()


# ------------------------------------------------------------------------------------------------ errors
def test_missing_required_argument_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(SIM), "--print"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing required launch argument(s): policy" in err
    assert "exported policy.onnx" in err and "quadrotor_sim.launch.xml:" in err


def test_unknown_argument_lists_the_declared_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(SIM), "policy:=p.onnx", "nmespace:=cf2", "--print"]) == 2
    err = capsys.readouterr().err
    assert "unknown launch argument(s) nmespace" in err
    for name in ("policy (required)", "namespace (default 'cf1')", "seed", "autoarm"):
        assert name in err
    assert main(["launch", str(SIM), "policy=p.onnx"]) == 2
    assert "NAME:=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('<nodes pkg="sim2real" exec="x"/>', "unknown tag <nodes>"),
        ('<include file="x.launch.xml"/>', "<include> is not supported by sim2real launch"),
        ('<node pkg="sim2real" exec="x" colour="red"/>', "unknown attribute(s) colour"),
        ('<node pkg="sim2real" exec="x"><arg name="a" default="1"/></node>', "<arg> is not allowed inside <node>"),
        ('<node pkg="sim2real" exec="x"><param name="a" value="1" if="true"/></node>', "unknown attribute(s) if"),
        ('<let name="a" value="$(foo bar)"/>', "unknown substitution $(foo)"),
        ('<let name="a" value="$(eval 1+1)"/>', "$(eval) is not supported by sim2real launch"),
        ('<let name="a" value="$(var nope)"/>', "no launch argument or <let> named 'nope'"),
        ('<let name="a" value="$(var x"/>', "unterminated substitution"),
        ('<let name="a" value="$(env SIM2REAL_SURELY_UNSET_VAR)"/>', "'SIM2REAL_SURELY_UNSET_VAR' is not set"),
        ('<node pkg="sim2real" exec="x" if="yes"/>', "if='yes' must be true/false/1/0"),
        ('<node pkg="sim2real" exec="x" if="1" unless="0"/>', "mutually exclusive"),
        ('<node pkg="sim2real" exec="x" name="bad name"/>', "invalid node name"),
        ('<node pkg="sim2real" exec="x" namespace="/a//b"/>', "invalid namespace"),
        ('<node pkg="sim2real" exec="x" output="own_log"/>', "output='own_log' is not supported"),
        ('<node pkg="sim2real" exec="x"><param from="/no/such/file.yaml"/></node>', "does not exist"),
        ('<node pkg="sim2real" exec="x"><param name="a" value="{b: 1}"/></node>', "is a mapping"),
        ('<node pkg="sim2real"/>', "needs a 'exec' attribute"),
        ('<node pkg="sim2real" exec="x">text</node>', "unexpected text 'text'"),
        ('<node pkg="sim2real" exec="x"', "not well-formed XML"),
    ],
)
def test_errors_name_the_problem_and_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = write_launch(tmp_path, body)
    with pytest.raises(LaunchError) as info:
        load_launch(path, environ={})
    assert message in str(info.value)
    assert f"{path}:3" in str(info.value) or "XML" in str(info.value)


def test_node_of_another_package_is_refused(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, '<node pkg="turtlesim" exec="turtlesim_node"/>')
    with pytest.raises(LaunchError, match="runs sim2real's own nodes; use ros2 launch"):
        plan_processes(load_launch(path), resolver)
    with pytest.raises(LaunchError, match="no executable 'no_such_node'"):
        entry_point_command("sim2real", "no_such_node")


def test_wrong_root_and_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.launch.xml"
    path.write_text("<launchfile/>")
    with pytest.raises(LaunchError, match="unknown tag <launchfile>"):
        load_launch(path)
    assert main(["launch", str(SIM), "policy:=p", "--duration", "0"]) == 2
    assert "--duration must be > 0" in capsys.readouterr().err
    with pytest.raises(LaunchError, match="NAME:=VALUE"):
        parse_launch_arguments([":=x"])


# ------------------------------------------------------------------------------------------------ semantics
def test_substitutions_groups_namespaces_and_conditions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "p.yaml").write_text("/**:\n  ros__parameters:\n    a: 1\n")
    path = write_launch(tmp_path, """
      <arg name="robot" default="cf1"/>
      <arg name="sim" default="true"/>
      <let name="cfg" value="$(dirname)/p.yaml"/>
      <group>
        <push_ros_namespace namespace="swarm"/>
        <let name="robot" value="inner"/>
        <node pkg="sim2real" exec="a" name="$(var robot)_node" namespace="$(var robot)" output="screen">
          <param from="$(var cfg)"/>
          <param name="n" value="3"/>
          <param name="x" value="0.5"/>
          <param name="flag" value="$(not $(var sim))"/>
          <param name="v" value="[1.0, 2.5]"/>
          <param name="s" value="$(env LAUNCH_TEST_WORD 'two words')"/>
          <param name="null_text" value="null"/>
          <param name="limits"><param name="max_rpm" value="20000"/></param>
          <param name="file" value="$(filename)"/>
          <param name="prefix" value="$(find-pkg-prefix sim2real)"/>
          <env name="EXTRA" value="$(anon x)"/>
          <env name="EXTRA2" value="$(anon x)"/>
        </node>
      </group>
      <node pkg="sim2real" exec="b" name="$(var robot)" namespace="/abs" if="$(var sim)"/>
      <node pkg="sim2real" exec="c" unless="$(and $(var sim) true)"/>
      <group if="$(or false $(var sim))" scoped="false">
        <push-ros-namespace namespace="outer"/>
      </group>
      <node pkg="sim2real" exec="d"/>
    """)
    monkeypatch.delenv("LAUNCH_TEST_WORD", raising=False)
    desc = load_launch(path, {"robot": "cf7"})
    assert [n.executable for n in desc.nodes] == ["a", "b", "d"]
    a, b, d = desc.nodes
    assert (a.name, a.namespace, a.output) == ("inner_node", "/swarm/inner", "screen")
    values = {p.name: p.value for p in a.params if isinstance(p, ParamValue)}
    assert values == {"n": 3, "x": 0.5, "flag": False, "v": [1.0, 2.5], "s": "two words", "null_text": "null",
                      "limits.max_rpm": 20000, "file": str(path), "prefix": str(locate_package().prefix)}  # fmt: skip
    assert a.params[0] == ParamFile(str(tmp_path / "p.yaml"))
    assert "null_text:='null'" in a.ros_argv() and "v:=[1.0, 2.5]" in a.ros_argv()
    assert a.env["EXTRA"] == a.env["EXTRA2"] and a.env["EXTRA"].startswith("x_")
    assert (b.name, b.namespace) == ("cf7", "/abs")  # the group's <let> and namespace did not leak
    assert (d.name, d.namespace, d.output) == (None, "/outer", "log")  # unscoped group: the push stays
    assert d.ros_argv() == ["--ros-args", "-r", "__ns:=/outer"]
    assert [a.name for a in declared_arguments(path)] == ["robot", "sim"]
    monkeypatch.setenv("LAUNCH_TEST_WORD", "set")
    assert ParamValue("s", "set", "set") in load_launch(path).nodes[0].params


def test_substitution_parser_nests_and_quotes() -> None:
    (sub,) = parse_substitutions("$(env 'A B' \"$(var x)/y\")")
    assert sub.name == "env" and len(sub.args) == 2
    assert sub.args[0] == ("A B",) and sub.args[1][0].name == "var" and sub.args[1][1] == "/y"
    assert parse_substitutions("no subst $ here") == ("no subst $ here",)


def test_node_attributes_args_and_prefix(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, """
      <node pkg="sim2real" exec="a" name="n" args="--flag 'x y'" ros_args="--log-level debug" launch-prefix="nice -n 1"
            respawn="true" respawn_delay="0.5" cwd="$(dirname)"/>
    """)
    (proc,) = plan_processes(load_launch(path), resolver)
    assert proc.cmd[:3] == ["nice", "-n", "1"]
    assert proc.cmd[6:] == ["--flag", "x y", "--ros-args", "--log-level", "debug", "--ros-args", "-r", "__node:=n"]
    assert proc.node.respawn and proc.node.respawn_delay == 0.5 and proc.node.cwd == str(tmp_path)


# ------------------------------------------------------------------------------------------------ running
TWO_NODES = """
  <node pkg="sim2real" exec="talker" name="talker" namespace="cf1" output="screen">
    <param from="$(dirname)/p.yaml"/>
    <param name="rate_hz" value="50.0"/>
    <remap from="odom" to="/mocap/odom"/>
    <env name="EXTRA" value="hello"/>
  </node>
  <node pkg="sim2real" exec="listener" name="listener" output="screen"/>
"""


def test_run_passes_ros_args_prefixes_output_and_stops_on_interrupt(tmp_path: Path, resolver) -> None:
    (tmp_path / "p.yaml").write_text("/**:\n  ros__parameters:\n    a: 1\n")
    path = write_launch(tmp_path, TWO_NODES)
    result, out, err = run_launch(path, resolver, stop_after=2, grace_s=5.0)
    starts = out.starts()
    assert starts["talker"]["exec"] == "talker"
    assert starts["talker"]["argv"] == ["--ros-args", "-r", "__node:=talker", "-r", "__ns:=/cf1", "--params-file",
                                        str(tmp_path / "p.yaml"), "-p", "rate_hz:=50.0", "-r", "odom:=/mocap/odom"]
    assert starts["listener"]["argv"] == ["--ros-args", "-r", "__node:=listener"]
    assert starts["talker"]["env"] == {"SIM2REAL_ROS_BACKEND": "dds", "PYTHONUNBUFFERED": "1", "EXTRA": "hello"}
    assert "[talker] got SIGINT" in out.lines and "[listener] got SIGINT" in out.lines
    assert "[talker] a line on stderr" in err.lines
    assert result.exit_code == 0 and result.reason == "test"
    assert [(o.label, o.returncode, o.clean) for o in result.nodes] == [("talker", 0, True), ("listener", 0, True)]
    assert result.stop_s is not None and result.stop_s < 2.0


DRIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sim2real.ros_nodes.launch.runner import LaunchRunner, plan_processes
    from sim2real.ros_nodes.launch.parser import load_launch
    procs = plan_processes(load_launch(sys.argv[1]), lambda p, e: [sys.executable, sys.argv[2], e])
    runner = LaunchRunner(procs, grace_s=float(sys.argv[3]), log_dir=Path(sys.argv[1]).parent / "logs")
    sys.exit(runner.run().exit_code)
""")


def start_launcher(tmp_path: Path, launch: Path, node_script: Path, grace_s: float, nodes: int):
    """The launcher as its own process (so it can get real signals), once ``nodes`` nodes have started."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(driver), str(launch), str(node_script), str(grace_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    while sum("START" in line for line in lines) < nodes:
        line = proc.stdout.readline()
        assert line, f"launcher ended early: {lines}"
        lines.append(line)
    pids = [json.loads(line.split("START ", 1)[1])["pid"] for line in lines if "START" in line]
    return proc, pids, "".join(lines)


def test_sigint_to_the_launcher_stops_every_node(tmp_path: Path, node_script: Path) -> None:
    path = write_launch(tmp_path, TWO_NODES.replace('<param from="$(dirname)/p.yaml"/>', ""))
    proc, pids, head = start_launcher(tmp_path, path, node_script, 5.0, 2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, head + rest
    assert time.monotonic() - t0 < 3.0
    assert "stopping (SIGINT)" in rest and rest.count("ok    exited with status 0 after SIGINT") == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_second_interrupt_skips_the_grace_period(tmp_path: Path, node_script: Path) -> None:
    path = write_launch(tmp_path, '<node pkg="sim2real" exec="a" name="stubborn" output="screen">'
                                  '<env name="MODE" value="ignore_int"/></node>')  # fmt: skip
    proc, _, head = start_launcher(tmp_path, path, node_script, 60.0, 1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=10)
    assert time.monotonic() - t0 < 5.0, head + rest
    assert proc.returncode == 1 and "second interrupt: SIGTERM to stubborn" in rest
    assert "FAIL  stopped by SIGTERM (ignored SIGINT)" in rest


def test_nodes_ignoring_sigint_get_sigterm_then_sigkill(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, """
      <node pkg="sim2real" exec="a" name="stubborn" output="screen"><env name="MODE" value="ignore_int"/></node>
      <node pkg="sim2real" exec="b" name="deaf" output="screen"><env name="MODE" value="ignore_all"/></node>
      <node pkg="sim2real" exec="c" name="polite" output="screen"/>
    """)
    t0 = time.monotonic()
    result, _, err = run_launch(path, resolver, stop_after=3, grace_s=0.5, kill_after_s=0.5)
    by_label = {o.label: o for o in result.nodes}
    assert by_label["stubborn"].returncode == -signal.SIGTERM and not by_label["stubborn"].clean
    assert by_label["deaf"].returncode == -signal.SIGKILL and by_label["deaf"].detail == (
        "stopped by SIGKILL (ignored SIGINT, SIGTERM)")
    assert by_label["polite"].returncode == 0 and by_label["polite"].clean
    assert result.exit_code == 1
    assert result.stop_s is not None and 0.9 < result.stop_s < 3.0
    assert any("still running after 0.5 s: SIGTERM to stubborn, deaf" in line for line in err.lines)
    assert time.monotonic() - t0 < 10


def test_a_failing_node_leaves_the_others_running_unless_exit_on_failure(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, """
      <node pkg="sim2real" exec="a" name="crash" output="screen">
        <env name="MODE" value="exit3"/>
        <env name="AFTER" value="0.5"/>
      </node>
      <node pkg="sim2real" exec="b" name="steady" output="screen"/>
    """)
    result, _, err = run_launch(path, resolver, duration_s=1.0, grace_s=2.0)
    assert result.reason == "--duration 1 s elapsed"
    assert [(o.label, o.returncode) for o in result.nodes] == [("crash", 3), ("steady", 0)]
    assert result.exit_code == 1 and any("crash: exited with status 3" in line for line in err.lines)

    t0 = time.monotonic()
    result, _, _ = run_launch(path, resolver, exit_on_failure=True, duration_s=20.0, grace_s=2.0)
    assert result.reason == "crash failed (--exit-on-failure)"
    assert [(o.label, o.returncode) for o in result.nodes] == [("crash", 3), ("steady", 0)]
    assert result.exit_code == 1 and time.monotonic() - t0 < 5.0


def test_all_nodes_exiting_zero_ends_the_launch_with_zero(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, """
      <node pkg="sim2real" exec="a" name="one" output="screen"><env name="MODE" value="exit0"/></node>
      <node pkg="sim2real" exec="a" name="two" output="screen"><env name="MODE" value="exit0"/></node>
    """)
    result, _, _ = run_launch(path, resolver, duration_s=20.0)
    assert result.exit_code == 0 and result.reason == "every node exited" and result.stop_s is None


def test_respawn_restarts_a_node_that_exits(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, """
      <node pkg="sim2real" exec="a" name="flaky" output="screen" respawn="true" respawn_delay="0.1">
        <env name="MODE" value="exit3"/>
      </node>
    """)
    result, out, err = run_launch(path, resolver, duration_s=1.5, grace_s=1.0)
    (outcome,) = result.nodes
    assert outcome.starts >= 3 and sum("START" in line for line in out.lines) >= 3
    assert any("flaky: respawning in 0.1 s" in line for line in err.lines)


def test_output_log_goes_to_a_file(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, '<node pkg="sim2real" exec="a" name="quiet"><env name="MODE" value="exit0"/></node>')
    result, out, err = run_launch(path, resolver, log_dir=tmp_path / "logs")
    text = (tmp_path / "logs" / "quiet.log").read_text()
    assert "START" in text and "a line on stderr" in text
    assert not any("START" in line for line in out.lines) and "[quiet] a line on stderr" in err.lines
    assert result.exit_code == 0


def test_a_node_that_cannot_start_is_a_failure(tmp_path: Path, resolver) -> None:
    path = write_launch(tmp_path, '<node pkg="sim2real" exec="a" name="ghost" launch-prefix="/no/such/program"/>')
    result, _, err = run_launch(path, resolver)
    assert result.exit_code == 1 and result.nodes[0].returncode is None
    assert "failed to start" in result.nodes[0].detail


def test_cli_duration_runs_and_stops(tmp_path: Path, resolver, monkeypatch: pytest.MonkeyPatch,
                                     capfd: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setattr(launch_runner, "entry_point_command", resolver)
    path = write_launch(tmp_path, '<node pkg="sim2real" exec="a" name="n" output="screen"/>')
    t0 = time.monotonic()
    assert main(["launch", str(path), "--duration", "0.5", "--grace", "2"]) == 0
    assert 0.5 <= time.monotonic() - t0 < 4.0
    captured = capfd.readouterr()
    assert "[n] START" in captured.out and "[n] got SIGINT" in captured.out
    assert "stopping (--duration 0.5 s elapsed)" in captured.err and "exit status 0" in captured.err
