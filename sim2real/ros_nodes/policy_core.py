"""The policy node's logic without ROS: observation assembly, inference, and the safety layer.

:class:`PolicyController` is what ``policy_node`` runs on every control tick; it is plain Python with an
injected clock so that every safety behaviour is testable without a middleware:

* **staged start**: ``DISARMED`` until armed (``arm`` topic, or ``autoarm`` once inputs are fresh);
* **watchdog**: no valid odometry for ``watchdog_timeout_s`` -> ``STALE``, safe output; resumes by itself
  when fresh data returns (the e-stop is the latched one);
* **input validation**: NaN/Inf odometry, or odometry beyond the :class:`~sim2real.sim.safety.SafetyLimits`
  (position outside the box around home, tilt, speed, body rate) is rejected and the controller goes to ``FAULT``
  (safe output) until a valid message arrives; set-points outside the limits' set-point box are refused;
* **e-stop**: ``ESTOP`` is latched: only :meth:`clear_estop` followed by a new arming leaves it;
* **output limits**: actions rate-limited to ``max_action_step`` per tick relative to the last command,
  then clamped to the limits' ``[action_min, action_max]`` (the clamp always holds); the command is
  ``rpm = (a + 1) / 2 * max_rpm`` from the policy metadata;
* **hot reload**: :meth:`request_reload` loads and checks a new ``policy.onnx`` in a background thread and
  the next tick swaps it in (a reference assignment), so no tick is dropped or delayed by the load; a file
  that does not load, or whose metadata does not fit the running robot, is refused and the old policy
  keeps running.

Safe output: ``idle`` (all motors 0 RPM, action -1; what the Crazyflie firmware does when its commander
times out) or ``hover`` (every motor at the hover set-point from the policy metadata: an open-loop hold).
The action history in the observation is what was actually commanded, safe outputs included, exactly as
the simulator records it.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.core.files import CheckpointError
from sim2real.core.obs import HISTORY_TERM
from sim2real.core.policy_file import OnnxPolicy, PolicyMetadata
from sim2real.sim.quadrotor import quat_to_rotmat
from sim2real.sim.quadrotor_obs import build_policy_obs, policy_group
from sim2real.sim.safety import SafetyLimits


class State(enum.Enum):
    DISARMED = "disarmed"
    RUNNING = "running"
    STALE = "stale"
    FAULT = "fault"
    ESTOP = "estop"


@dataclass
class SafetyConfig:
    """Behaviours of the safety layer (the node's parameters of the same names).

    The limits themselves are a :class:`~sim2real.sim.safety.SafetyLimits` (the node's ``safety_limits`` file).
    """

    watchdog_timeout_s: float = 0.05  # 5 control periods at 100 Hz
    max_action_step: float = 2.0  # per tick; 2 = no rate limit for actions in [-1, 1]
    safe_mode: str = "idle"  # idle | hover
    autoarm: bool = False  # arm as soon as inputs are fresh (simulation, tests)

    def __post_init__(self) -> None:
        if self.safe_mode not in ("idle", "hover"):
            raise ValueError(f"safe_mode must be 'idle' or 'hover', got {self.safe_mode!r}")
        for name in ("watchdog_timeout_s", "max_action_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class OdometrySample:
    """What the controller keeps of a ``nav_msgs/Odometry``.

    World position, quaternion ``(w, x, y, z)``, body-frame linear and angular velocity (ROS puts the twist
    in ``child_frame_id``, the body), and the monotonic time it was received.
    """

    position: np.ndarray
    quaternion_wxyz: np.ndarray
    linear_velocity_body: np.ndarray
    angular_velocity_body: np.ndarray
    received_s: float

    @classmethod
    def from_msg(cls, msg: Any, received_s: float) -> OdometrySample:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        v, w = msg.twist.twist.linear, msg.twist.twist.angular
        return cls(np.array([p.x, p.y, p.z]), np.array([q.w, q.x, q.y, q.z]), np.array([v.x, v.y, v.z]),
                   np.array([w.x, w.y, w.z]), received_s)  # fmt: skip


class QuadrotorHoverAdapter:
    """Observation and command mapping of ``quadrotor-hover`` policies (layout from the ONNX metadata)."""

    task = "quadrotor-hover"

    def __init__(self, meta: PolicyMetadata) -> None:
        self.obs_dim, self.act_dim = meta.obs_dim, meta.act_dim
        layout = meta.obs_layout
        if meta.task != self.task or self.act_dim != 4 or HISTORY_TERM not in layout.names:
            raise CheckpointError(f"not a quadrotor-hover policy (task {meta.task!r}, act_dim {self.act_dim})")
        self.history_len = layout.term(HISTORY_TERM).size // 4
        if layout.noise_free() != policy_group(self.history_len):  # the builder below must make this vector
            raise CheckpointError(f"the policy's observation layout {layout.names} is not the quadrotor one")
        if "max_rpm" not in meta.action_meaning:
            raise CheckpointError("the policy's action_meaning has no max_rpm (not a motor-RPM policy)")
        self.max_rpm = float(meta.action_meaning["max_rpm"])
        self.hover_action = float(meta.action_meaning.get("hover_action", 0.0))
        self.control_rate_hz = meta.control_rate_hz

    def observation(self, odom: OdometrySample, setpoint: np.ndarray, history: np.ndarray) -> np.ndarray:
        """``(obs_dim,)`` float32 with the simulator's builder: position error, R, world velocity, body rate, history."""
        q = torch.as_tensor(odom.quaternion_wxyz, dtype=torch.float32)
        q = q / q.norm()
        rot = quat_to_rotmat(q)  # v_world = R v_body
        v_world = rot @ torch.as_tensor(odom.linear_velocity_body, dtype=torch.float32)
        obs = build_policy_obs(
            torch.as_tensor(odom.position - setpoint, dtype=torch.float32)[None], rot.reshape(1, 9), v_world[None],
            torch.as_tensor(odom.angular_velocity_body, dtype=torch.float32)[None],
            torch.as_tensor(history, dtype=torch.float32)[None],
        )  # fmt: skip
        return obs[0].numpy()

    def rpm(self, action: np.ndarray) -> np.ndarray:
        """Motor set-points ``(4,)`` RPM for normalised actions: ``(a + 1) / 2 * max_rpm``."""
        return ((np.asarray(action, np.float64) + 1.0) * 0.5 * self.max_rpm).astype(np.float32)


@dataclass
class TickResult:
    """One control tick: the command sent, the action it came from, the observation (None when not run)."""

    rpm: np.ndarray
    action: np.ndarray
    obs: np.ndarray | None
    state: State
    reason: str = ""


@dataclass
class Counters:
    ticks: int = 0
    policy_ticks: int = 0
    safe_ticks: int = 0
    rejected_inputs: int = 0
    watchdog_trips: int = 0
    rate_limited: int = 0
    clamped: int = 0
    reloads: int = 0
    reload_failures: int = 0
    last_reload_error: str = ""
    setpoints: int = 0
    rejected_setpoints: int = 0
    last_setpoint_error: str = ""
    reasons: dict[str, int] = field(default_factory=dict)


class PolicyController:
    """Assemble observations, run the policy, apply the safety layer (see the module docstring).

    Args:
        policy: the loaded ``policy.onnx``.
        cfg: behaviours of the safety layer.
        setpoint: ``(3,)`` hover position in the odometry's world frame (home: the centre of the safety box).
        limits: the safety limits (default: the built-in ones).
        expected_robot: if given, a reloaded policy's ``robot`` metadata must equal it (default: the first
            policy's), as must task, dimensions, control rate and ``max_rpm``.
    """

    def __init__(self, policy: OnnxPolicy, cfg: SafetyConfig | None = None, setpoint: tuple[float, ...] = (0, 0, 0),
                 expected_robot: dict[str, Any] | None = None, limits: SafetyLimits | None = None) -> None:  # fmt: skip
        self.cfg = cfg or SafetyConfig()
        self.limits = limits or SafetyLimits()
        self.setpoint = np.asarray(setpoint, np.float64)
        if self.setpoint.shape != (3,) or not np.isfinite(self.setpoint).all():
            raise ValueError(f"setpoint must be 3 finite numbers, got {setpoint}")
        self.home = self.setpoint.copy()
        """The configured set-point: the centre of the safety box and of the box set-point inputs must stay in."""
        self.policy, self.adapter = policy, QuadrotorHoverAdapter(policy.metadata)
        self.robot = expected_robot if expected_robot is not None else policy.metadata.robot
        self.counters = Counters()
        self.state = State.DISARMED
        self._armed = False
        self._estop = False
        self._odom: OdometrySample | None = None
        self._fault = ""
        self._last_action = np.full(4, self.safe_action, np.float32)
        self.history = np.tile(self._last_action, (self.adapter.history_len, 1))
        self.arm_inhibit = ""  # non-empty: arming is refused for this reason (e.g. no recorder listening yet)
        self._pending: OnnxPolicy | None = None
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ inputs
    @property
    def safe_action(self) -> float:
        """Every motor's action on a safe tick: -1 (idle) or the policy metadata's hover action."""
        return -1.0 if self.cfg.safe_mode == "idle" else float(np.clip(self.adapter.hover_action, -1.0, 1.0))

    def input_problem(self, odom: OdometrySample) -> str:
        """Why ``odom`` must be rejected, or ``""``."""
        values = np.concatenate((odom.position, odom.quaternion_wxyz, odom.linear_velocity_body, odom.angular_velocity_body))
        if not np.isfinite(values).all():
            return "non-finite odometry"
        if not 0.5 < float(np.linalg.norm(odom.quaternion_wxyz)) < 1.5:
            return "orientation is not a unit quaternion"
        lim = self.limits
        if np.abs(odom.position - self.home).max() > lim.position_box_m:
            return f"position beyond position_box_m ({lim.position_box_m} m) of home"
        w, x, y, z = odom.quaternion_wxyz / np.linalg.norm(odom.quaternion_wxyz)
        if np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1.0, 1.0))) > lim.max_tilt_deg:
            return f"tilt beyond max_tilt_deg ({lim.max_tilt_deg})"
        if np.linalg.norm(odom.linear_velocity_body) > lim.max_speed_mps:
            return f"speed beyond max_speed_mps ({lim.max_speed_mps})"
        if np.abs(odom.angular_velocity_body).max() > lim.max_body_rate_radps:
            return f"body rate beyond max_body_rate_radps ({lim.max_body_rate_radps})"
        return ""

    def reject_input(self, problem: str) -> None:
        """Count a rejected input and enter ``FAULT`` (safe output) until the next valid sample."""
        self.counters.rejected_inputs += 1
        self._fault = problem

    def on_odometry(self, odom: OdometrySample) -> bool:
        """Store a valid sample (True) or reject it and enter ``FAULT`` until the next valid one (False)."""
        problem = self.input_problem(odom)
        if problem:
            self.reject_input(problem)
            return False
        self._odom, self._fault = odom, ""
        return True

    def on_setpoint(self, point: tuple[float, float, float] | np.ndarray) -> bool:
        """Move the set-point (True), or refuse one that is not finite or leaves the box around :attr:`home`."""
        p = np.asarray(point, np.float64)
        problem = self.limits.setpoint_problem(torch.as_tensor(p), torch.as_tensor(self.home))
        if problem:
            self.counters.rejected_setpoints += 1
            self.counters.last_setpoint_error = problem
            return False
        self.setpoint = p
        self.counters.setpoints += 1
        return True

    def on_arm(self, armed: bool) -> None:
        """Arm (True) or disarm (False); arming is refused while the e-stop is latched or :attr:`arm_inhibit` is set."""
        self._armed = bool(armed) and not self._estop and not self.arm_inhibit

    def on_estop(self, stop: bool) -> None:
        """A True e-stop latches the safe output; False does not clear it (see :meth:`clear_estop`)."""
        if stop:
            self._estop, self._armed = True, False

    def clear_estop(self) -> None:
        """Release the e-stop latch; the controller stays disarmed until armed again."""
        self._estop, self._armed = False, False

    def is_stale(self, now_s: float) -> bool:
        """Whether no valid odometry arrived within the watchdog period before ``now_s``."""
        return self._odom is None or now_s - self._odom.received_s > self.cfg.watchdog_timeout_s

    # ------------------------------------------------------------------------------------------ reload
    def check_policy(self, new: OnnxPolicy) -> None:
        """Raise :class:`CheckpointError` unless ``new`` fits the running robot and observation layout."""
        cur, meta = self.policy.metadata, new.metadata
        adapter = QuadrotorHoverAdapter(meta)
        same = {
            "task": (cur.task, meta.task), "obs_dim": (self.adapter.obs_dim, adapter.obs_dim),
            "act_dim": (self.adapter.act_dim, adapter.act_dim), "max_rpm": (self.adapter.max_rpm, adapter.max_rpm),
            "control_rate_hz": (self.adapter.control_rate_hz, adapter.control_rate_hz),
            "robot": (self.robot, meta.robot),
        }  # fmt: skip
        bad = [f"{k} {a!r} != {b!r}" for k, (a, b) in same.items() if a != b]
        if bad:
            raise CheckpointError("policy does not fit the configured robot: " + "; ".join(bad))

    def load_checked(self, path: str | Path) -> OnnxPolicy:
        """Load ``path`` and check it (:class:`CheckpointError` on any problem)."""
        new = OnnxPolicy(path)
        self.check_policy(new)
        probe = new(np.zeros((1, new.obs_dim), np.float32))
        if probe.shape != (1, 4) or not np.isfinite(probe).all():
            raise CheckpointError(f"{path}: the policy returns {probe.shape} / non-finite actions on a zero observation")
        return new

    def request_reload(self, path: str | Path, wait: bool = False) -> None:
        """Load ``path`` in a background thread; the first tick after it succeeds swaps it in.

        Failures are counted (``counters.reload_failures``, ``last_reload_error``); the old policy keeps running.
        """

        def work() -> None:
            try:
                new = self.load_checked(path)
            except (CheckpointError, OSError, ValueError) as e:
                with self._lock:
                    self.counters.reload_failures += 1
                    self.counters.last_reload_error = f"{path}: {e}"
                return
            with self._lock:
                self._pending = new

        self._loader = threading.Thread(target=work, name="policy-reload", daemon=True)
        self._loader.start()
        if wait:
            self._loader.join()

    @property
    def reloading(self) -> bool:
        """A reload is being loaded and checked, or loaded and waiting for the next tick to swap it in."""
        with self._lock:
            return self._pending is not None or (self._loader is not None and self._loader.is_alive())

    # ------------------------------------------------------------------------------------------ tick
    def _safe(self, reason: str, state: State) -> TickResult:
        self.counters.safe_ticks += 1
        self.counters.reasons[reason] = self.counters.reasons.get(reason, 0) + 1
        action = np.full(4, self.safe_action, np.float32)
        self._commit(action)
        return TickResult(self.adapter.rpm(action), action, None, state, reason)

    def _commit(self, action: np.ndarray) -> None:
        self._last_action = action
        self.history = np.concatenate((self.history[1:], action[None]), 0)

    def tick(self, now_s: float) -> TickResult:
        """One control period at monotonic time ``now_s``: the command to publish."""
        self.counters.ticks += 1
        with self._lock:
            if self._pending is not None:  # swap between ticks: a reference assignment
                self.policy, self._pending = self._pending, None
                self.counters.reloads += 1
        fresh = not self.is_stale(now_s)
        if self.cfg.autoarm and fresh and not self._estop and not self._fault and not self.arm_inhibit:
            self._armed = True
        if self._estop:
            self.state = State.ESTOP
            return self._safe("e-stop latched", State.ESTOP)
        if self._fault:
            self.state = State.FAULT
            return self._safe(self._fault, State.FAULT)
        if not self._armed:
            self.state = State.DISARMED
            return self._safe(f"disarmed ({self.arm_inhibit})" if self.arm_inhibit else "disarmed", State.DISARMED)
        if not fresh:
            if self.state is not State.STALE:
                self.counters.watchdog_trips += 1
            self.state = State.STALE
            return self._safe("odometry stale (watchdog)", State.STALE)
        assert self._odom is not None
        obs = self.adapter.observation(self._odom, self.setpoint, self.history)
        raw = self.policy(obs[None])[0]
        if not np.isfinite(raw).all():
            self.state = State.FAULT
            return self._safe("policy returned non-finite actions", State.FAULT)
        # rate limit relative to the last command, then the hard clamp (which therefore always holds, e.g.
        # right after a safe output below action_min)
        step = np.clip(raw - self._last_action, -self.cfg.max_action_step, self.cfg.max_action_step)
        stepped = self._last_action + step
        self.counters.rate_limited += int(not np.array_equal(stepped, raw))
        limited = np.clip(stepped, self.limits.action_min, self.limits.action_max).astype(np.float32)
        self.counters.clamped += int(not np.array_equal(limited, stepped))
        self._commit(limited)
        self.state = State.RUNNING
        self.counters.policy_ticks += 1
        return TickResult(self.adapter.rpm(limited), limited, obs, State.RUNNING)

    def diagnostics(self) -> dict[str, str]:
        """Key/values for a ``diagnostic_msgs/DiagnosticStatus``."""
        c = self.counters
        meta = self.policy.metadata
        return {
            "state": self.state.value, "policy": str(self.policy.path or "<bytes>"), "run_id": meta.run_id,
            "ticks": str(c.ticks), "policy_ticks": str(c.policy_ticks), "safe_ticks": str(c.safe_ticks),
            "rejected_inputs": str(c.rejected_inputs), "watchdog_trips": str(c.watchdog_trips),
            "clamped": str(c.clamped), "rate_limited": str(c.rate_limited), "reloads": str(c.reloads),
            "reload_failures": str(c.reload_failures), "last_reload_error": c.last_reload_error,
            "fault": self._fault, "safe_mode": self.cfg.safe_mode,
            "setpoint": str(np.round(self.setpoint, 4).tolist()), "rejected_setpoints": str(c.rejected_setpoints),
            "last_setpoint_error": c.last_setpoint_error,
        }  # fmt: skip

