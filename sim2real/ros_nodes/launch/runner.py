"""Run the nodes of a launch file as processes: prefixed output, respawn, clean shutdown, exit statuses.

Each node is its own process (its own process group), started with ``--ros-args`` as ``ros2 launch`` would and
with ``SIM2REAL_ROS_BACKEND=dds`` and ``PYTHONUNBUFFERED=1`` in its environment. Output lines are prefixed with
``[name]`` (``output="screen"``; ``log`` sends stdout to a log file and stderr to both). On Ctrl-C, SIGTERM or
SIGHUP, after ``duration_s`` or (with ``exit_on_failure``) when a node fails, every node gets SIGINT, then SIGTERM
after ``grace_s``, then SIGKILL after ``kill_after_s`` more; a second Ctrl-C skips to the next step. A node that
exits by itself is reported and the others keep running (``respawn="true"`` restarts it); the launch ends when no
node is left. The exit status is 0 when every node stopped cleanly (exit 0, or death by the SIGINT it was sent).

Example::

    desc = load_launch("launch/quadrotor_sim.launch.xml", {"policy": "policy.onnx"})
    result = LaunchRunner(plan_processes(desc), duration_s=10).run()
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

from sim2real.ros_nodes.launch.package import PACKAGE, ExecutableResolver, entry_point_command
from sim2real.ros_nodes.launch.parser import LaunchDescription, NodeSpec, ParamFile
from sim2real.ros_nodes.launch.substitutions import LaunchError

__all__ = ["LaunchResult", "LaunchRunner", "NodeOutcome", "ProcessSpec", "format_plan", "plan_processes"]

BACKEND_ENV = "SIM2REAL_ROS_BACKEND"  # transport.base.BACKEND_ENV (not imported: that module needs cyclonedds)


# ------------------------------------------------------------------------------------------------ planning
@dataclass
class ProcessSpec:
    """One node's process: its ``[label]``, full command and environment additions."""

    label: str
    node: NodeSpec
    cmd: list[str]
    env: dict[str, str]


def plan_processes(desc: LaunchDescription, resolver: ExecutableResolver | None = None) -> list[ProcessSpec]:
    """The processes of a launch description (nothing is started).

    Args:
        desc: From :func:`~sim2real.ros_nodes.launch.parser.load_launch`.
        resolver: ``(package, executable) -> command``; default: the distribution's console scripts run with this
            interpreter (:func:`~sim2real.ros_nodes.launch.package.entry_point_command`).

    Raises:
        LaunchError: For a node of another package, or an executable that cannot be resolved.
    """
    resolve = resolver or entry_point_command
    labels = [n.name or n.executable for n in desc.nodes]
    labels = [n.fqn.lstrip("/") if labels.count(lab) > 1 else lab for n, lab in zip(desc.nodes, labels)]
    out = []
    for i, (node, label) in enumerate(zip(desc.nodes, labels)):
        if node.package != PACKAGE:
            raise LaunchError(f"sim2real launch runs sim2real's own nodes; use ros2 launch for <node pkg="
                              f"{node.package!r} exec={node.executable!r}>", node.where)  # fmt: skip
        if labels.count(label) > 1:
            label = f"{label}-{labels[:i].count(label) + 1}"
        try:
            cmd = resolve(node.package, node.executable)
        except LaunchError as e:
            raise LaunchError(str(e), node.where) from None
        env = {BACKEND_ENV: "dds", "PYTHONUNBUFFERED": "1", **node.env}
        out.append(ProcessSpec(label, node, [*node.launch_prefix, *cmd, *node.ros_argv()], env))
    return out


def format_plan(desc: LaunchDescription, processes: Sequence[ProcessSpec]) -> str:
    """A readable listing of the arguments and processes of a launch (``sim2real launch --print``)."""
    lines = [f"launch file: {desc.path}"]
    lines += [f"package {name}: share {loc.share} ({loc.source})" for name, loc in desc.packages.items()]
    lines.append("arguments:")
    width = max((len(a.name) for a in desc.arguments), default=0)
    for a in desc.arguments:
        origin = "given" if a.name in desc.given else "default"
        value = desc.values.get(a.name, "(not evaluated)")
        lines.append(f"  {a.name:<{width}} = {value}  [{origin}]" + (f"  {a.description}" if a.description else ""))
    lines.append(f"{len(processes)} node(s):")
    for p in processes:
        node = p.node
        respawn = f"  respawn after {node.respawn_delay:g} s" if node.respawn else ""
        lines.append(f"[{p.label}] {node.package}/{node.executable}  name {node.fqn}  output {node.output}{respawn}"
                     f"  ({node.where})")
        lines.append(f"  command: {shlex.join(p.cmd)}")
        for param in node.params:
            if isinstance(param, ParamFile):
                lines.append(f"  params file: {param.path}")
            else:
                lines.append(f"  param {param.name} = {param.value!r} ({type(param.value).__name__})")
        lines += [f"  remap {src} -> {dst}" for src, dst in node.remaps]
        lines.append("  env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in p.env.items()))
        if node.cwd:
            lines.append(f"  cwd: {node.cwd}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class NodeOutcome:
    """How one node ended: ``returncode`` (negative = killed by that signal; ``None`` = never started)."""

    label: str
    returncode: int | None
    starts: int
    clean: bool
    detail: str


@dataclass(frozen=True)
class LaunchResult:
    """The launch's exit status (0 = every node ended cleanly), why it stopped and each node's outcome."""

    exit_code: int
    reason: str
    nodes: list[NodeOutcome]
    start_s: float
    stop_s: float | None


@dataclass
class _Child:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    returncode: int | None = None
    start_error: str | None = None
    started_at: float = 0.0
    respawn_at: float | None = None
    signals: list[int] = field(default_factory=list)
    pumps: list[threading.Thread] = field(default_factory=list)
    logfile: IO[str] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.returncode is None


# ------------------------------------------------------------------------------------------------ runner
class LaunchRunner:
    """Start the processes, relay their output, respawn, stop them cleanly and report (see the module docstring).

    Args:
        processes: From :func:`plan_processes`.
        grace_s: Seconds between SIGINT and SIGTERM when stopping.
        kill_after_s: Seconds between SIGTERM and SIGKILL (default ``grace_s``).
        exit_on_failure: Stop everything when a node exits with a non-zero status (or cannot start).
        duration_s: Stop the launch after this many seconds (``None``: run until interrupted or no node is left).
        out: Stream for the nodes' stdout lines (default ``sys.stdout``).
        err: Stream for their stderr lines and the launcher's own ``[launch]`` messages (default ``sys.stderr``).
        log_dir: Directory of the ``output="log"``/``"both"`` files (default ``$ROS_LOG_DIR`` or ``~/.ros/log``,
            in a ``sim2real_launch_<time>_<pid>`` subdirectory).
        environ: Base environment of the processes (default ``os.environ``).
        poll_s: Supervision period.
    """

    def __init__(self, processes: Sequence[ProcessSpec], *, grace_s: float = 5.0, kill_after_s: float | None = None,
                 exit_on_failure: bool = False, duration_s: float | None = None, out: TextIO | None = None,
                 err: TextIO | None = None, log_dir: str | Path | None = None, environ: Mapping[str, str] | None = None,
                 poll_s: float = 0.02) -> None:  # fmt: skip
        if grace_s < 0 or (kill_after_s is not None and kill_after_s < 0):
            raise ValueError("grace periods must be >= 0 seconds")
        if duration_s is not None and not duration_s > 0:
            raise ValueError(f"duration must be > 0 seconds, got {duration_s}")
        self.children = [_Child(p) for p in processes]
        self.grace_s, self.kill_after_s = grace_s, grace_s if kill_after_s is None else kill_after_s
        self.exit_on_failure, self.duration_s, self.poll_s = exit_on_failure, duration_s, poll_s
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.environ = dict(os.environ if environ is None else environ)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop_reason: str | None = None
        self._escalations = 0
        self._stop_started: float | None = None
        self._step_at = 0.0
        self._step = 0  # 0 running, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent

    # ------------------------------------------------------------------ public
    def request_shutdown(self, reason: str = "shutdown requested") -> None:
        """Stop the launch (from any thread); nothing more happens if it is already stopping."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._wake.set()

    def _on_signal(self, name: str) -> None:
        """Signal handler: the first signal stops the launch, each further one skips to the next stop step.

        It takes no lock (a handler that waits for one the interrupted code holds would deadlock): the supervision
        loop sees the flags within ``poll_s``.
        """
        if self._stop_reason is None:
            self._stop_reason = name
        else:
            self._escalations += 1

    def run(self) -> LaunchResult:
        """Run until every node has ended; returns the :class:`LaunchResult` (``exit_code`` 0 or 1)."""
        t0 = time.monotonic()
        with self._signal_handlers():
            try:
                for child in self.children:
                    self._start(child)
                start_s = time.monotonic() - t0
                reason = self._supervise(t0)
            except BaseException:
                for child in self.children:  # never leave orphans behind, whatever went wrong here
                    self._signal(child, signal.SIGKILL)
                raise
        stop_s = None if self._stop_started is None else time.monotonic() - self._stop_started
        for child in self.children:
            for pump in child.pumps:
                pump.join(timeout=1.0)
            if child.logfile is not None:
                child.logfile.close()
        return self._report(reason, start_s, stop_s)

    def _supervise(self, t0: float) -> str:
        """The supervision loop: reap, respawn, stop; returns why the launch ended."""
        while True:
            now = time.monotonic()
            if self.duration_s is not None and self._stop_reason is None and now - t0 >= self.duration_s:
                self.request_shutdown(f"--duration {self.duration_s:g} s elapsed")
            self._reap(now)
            if self._stop_reason is not None:
                if not self._stop(now):
                    return self._stop_reason
            elif not self._respawn(now):
                return "every node exited"
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # ------------------------------------------------------------------ processes
    def say(self, message: str) -> None:
        """A ``[launch]`` line on the launcher's stream (dropped if that stream is broken)."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            self.err.write(f"[launch] {message}\n")
            self.err.flush()

    def _node_log(self, child: _Child) -> IO[str]:
        if self.log_dir is None:
            base = self.environ.get("ROS_LOG_DIR") or os.path.join(
                self.environ.get("ROS_HOME") or os.path.expanduser("~/.ros"), "log")
            self.log_dir = Path(base) / f"sim2real_launch_{time.strftime('%Y-%m-%d-%H-%M-%S')}_{os.getpid()}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        path = self.log_dir / f"{child.spec.label}.log"
        self.say(f"{child.spec.label}: output={child.spec.node.output}, stdout goes to {path}")
        return path.open("a", encoding="utf-8")

    def _start(self, child: _Child) -> None:
        spec, node = child.spec, child.spec.node
        child.respawn_at, child.returncode, child.signals = None, None, []
        child.starts += 1
        try:
            child.proc = subprocess.Popen(spec.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, env={**self.environ, **spec.env}, cwd=node.cwd,
                                          start_new_session=True)  # fmt: skip
        except OSError as e:
            child.proc, child.start_error = None, f"failed to start: {e}"
            self.say(f"{spec.label}: {child.start_error}")
            if self.exit_on_failure:
                self.request_shutdown(f"{spec.label} failed to start (--exit-on-failure)")
            return
        child.start_error, child.started_at = None, time.monotonic()
        if node.output in ("log", "both") and child.logfile is None:
            child.logfile = self._node_log(child)
        again = f" (start {child.starts})" if child.starts > 1 else ""
        self.say(f"{spec.label}: started{again}, pid {child.proc.pid}")
        screen_out = self.out if node.output in ("screen", "both") else None
        streams = ((child.proc.stdout, screen_out), (child.proc.stderr, self.err))
        pumps = [threading.Thread(target=self._pump, args=(s, spec.label, screen, child.logfile), daemon=True,
                                  name=f"launch-{spec.label}") for s, screen in streams]  # fmt: skip
        for pump in pumps:
            pump.start()
        child.pumps += pumps

    def _pump(self, stream: IO[bytes], label: str, screen: TextIO | None, logfile: IO[str] | None) -> None:
        """Copy a child's pipe line by line to the screen (prefixed) and/or its log file.

        The pipe is always drained (a node blocked on a full pipe would stall): a screen that breaks (``| head``)
        is dropped.
        """
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._lock:
                    try:
                        if screen is not None:
                            screen.write(f"[{label}] {line}\n")
                            screen.flush()
                    except (OSError, ValueError):
                        screen = None
                    if logfile is not None and not logfile.closed:
                        logfile.write(line + "\n")
                        logfile.flush()

    def _signal(self, child: _Child, sig: int) -> None:
        if child.proc is None or child.proc.poll() is not None:
            return
        child.signals.append(sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, sig)

    def _reap(self, now: float) -> None:
        for child in self.children:
            if not child.alive or child.proc is None or child.proc.poll() is None:
                continue
            child.returncode = child.proc.returncode
            label, node = child.spec.label, child.spec.node
            if self._step > 0:
                continue
            ran = f"after {now - child.started_at:.1f} s"
            self.say(f"{label}: {_describe(child.returncode)} {ran}, pid {child.proc.pid}")
            if node.respawn:
                child.respawn_at = now + node.respawn_delay
                self.say(f"{label}: respawning in {node.respawn_delay:g} s")
            elif child.returncode != 0 and self.exit_on_failure:
                self.request_shutdown(f"{label} failed (--exit-on-failure)")

    def _respawn(self, now: float) -> bool:
        """Restart the nodes whose respawn time has come; False when no node is running or waiting to respawn."""
        for child in self.children:
            if child.respawn_at is not None and now >= child.respawn_at:
                self._start(child)
        return any(c.alive or c.respawn_at is not None for c in self.children)

    def _stop(self, now: float) -> bool:
        """Advance the SIGINT -> SIGTERM -> SIGKILL sequence; False once every process has ended."""
        alive = [c for c in self.children if c.alive]
        if self._step == 0:
            self._stop_started, self._step, self._step_at = now, 1, now
            for c in self.children:
                c.respawn_at = None
            if alive:
                self.say(f"stopping ({self._stop_reason}): SIGINT to {', '.join(c.spec.label for c in alive)}")
            for c in alive:
                self._signal(c, signal.SIGINT)
            return bool(alive)
        if not alive:
            return False
        wait = self.grace_s if self._step == 1 else self.kill_after_s
        if self._step < 3 and (now - self._step_at >= wait or self._escalations > 0):
            self._escalations = max(0, self._escalations - 1)
            sig = signal.SIGTERM if self._step == 1 else signal.SIGKILL
            why = "second interrupt" if now - self._step_at < wait else f"still running after {wait:g} s"
            self.say(f"{why}: {sig.name} to {', '.join(c.spec.label for c in alive)}")
            self._step, self._step_at = self._step + 1, now
            for c in alive:
                self._signal(c, sig)
        return True

    # ------------------------------------------------------------------ report
    def _report(self, reason: str, start_s: float, stop_s: float | None) -> LaunchResult:
        outcomes = []
        for child in self.children:
            rc = child.returncode
            if child.proc is None:
                clean, detail = False, child.start_error or "not started"
            else:
                asked = bool(child.signals) and child.signals[0] == signal.SIGINT
                clean = rc == 0 or (asked and rc in (-signal.SIGINT, 128 + signal.SIGINT) and len(child.signals) == 1)
                sent = [signal.Signals(s).name for s in child.signals]
                if sent and rc == -child.signals[-1]:
                    detail = f"stopped by {sent[-1]}" + (f" (ignored {', '.join(sent[:-1])})" if len(sent) > 1 else "")
                else:
                    detail = _describe(rc) + (f" after {', '.join(sent)}" if sent else "")
            outcomes.append(NodeOutcome(child.spec.label, rc, child.starts, clean, detail))
        code = 0 if outcomes and all(o.clean for o in outcomes) else 1
        stopped = f", stopped in {stop_s:.2f} s" if stop_s is not None else ""
        self.say(f"launch ended ({reason}{stopped}); exit status {code}")
        width = max((len(o.label) for o in outcomes), default=0)
        for o in outcomes:
            starts = f", {o.starts} starts" if o.starts > 1 else ""
            self.say(f"  {o.label:<{width}}  {'ok  ' if o.clean else 'FAIL'}  {o.detail}{starts}")
        return LaunchResult(code, reason, outcomes, start_s, stop_s)

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        """SIGINT, SIGTERM and SIGHUP request the shutdown (main thread only; restored afterwards)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
        previous = {sig: signal.signal(sig, lambda s, _f: self._on_signal(names[signal.Signals(s)])) for sig in names}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"

