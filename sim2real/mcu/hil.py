"""Hardware-in-the-loop: the simulator runs on the host, the microcontroller computes every action.

Each control tick the host sends the policy observation of the simulated quadrotor over the serial link
(:mod:`sim2real.mcu.serial_link`), the device answers with the action and the device ticks it
spent, and the simulator applies it. When the device stays silent or answers garbage beyond the link's
retries, the tick falls back to the safe action (motors idle by default) and the counters say so. The same
observation also goes through onnxruntime, so the run reports how far the device's actions are from the
exported policy's, tick by tick. This is the check a user runs before flying the firmware.

Compact frames (default): 128 of the quadrotor policy's 146 observation floats are its own last 32 actions,
which the device already knows. After one full OBS the device keeps that history and appends every action it
returns, so the following ticks send only the 18-float state (OBS_STATE: 79 bytes instead of 591 per tick,
which is what makes 100 Hz possible on a 115200-baud UART). The host sends a compact frame only when the
device's history, as the link has tracked it, equals the observation's history bit for bit, i.e. on every tick
after the first of an episode; any failure, fallback or reset of the simulator makes the next tick send a full
OBS. An OBS_STATE is never resent (a lost reply would shift the device's history twice): when one fails the
tick is retried at once with a full OBS (a *resync*), and only if that fails too does the safe action apply.
onnxruntime still evaluates the FULL observation every tick, so the reported difference also proves that the
device-side history equals the simulator's.

The figures and the pass criterion are the hover task's (:mod:`sim2real.tasks.quadrotor_hover.evaluation`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.core.policy_file import OnnxPolicy, PolicyMetadata
from sim2real.mcu.serial_link import InferReply, LinkError, SerialLink
from sim2real.sim.registry import policy_env_config
from sim2real.tasks.quadrotor_hover import TASK as HOVER
from sim2real.tasks.quadrotor_hover.env import HoverConfig
from sim2real.tasks.quadrotor_hover.evaluation import hover_metrics, rollout_hover


class HILError(RuntimeError):
    """The device does not run the policy it is meant to (dimensions or model hash differ) or is unusable."""


@dataclass
class HILConfig:
    """One HIL run: ``duration_s`` of simulated flight from the ``start`` distribution (seeded)."""

    duration_s: float = 10.0
    start: str = "nominal"
    seed: int = 0
    safe_action: float = -1.0  # every motor command on fallback; -1 = idle (0 RPM) for the quadrotor
    check_hash: bool = True  # refuse a device whose model hash differs from the ONNX file's
    compact: bool = True  # OBS_STATE frames with the device-side action history (False: a full OBS every tick)


@dataclass
class HILResult:
    """Figures of a HIL run (``metrics`` as the hover task's ``hover_metrics``, plus the link's view).

    ``full_frames``/``compact_frames`` count the OBS and OBS_STATE exchanges started (link retries not
    counted), ``resyncs`` the failed OBS_STATE exchanges repaired by a full OBS in the same tick,
    ``bytes_sent_per_tick`` everything written to the link during the flight over ``ticks``.
    ``reference_deviation_m`` is the largest distance between the HIL flight and the same episode flown by
    onnxruntime in the simulator: ~0 when the device computes the exported policy faithfully, whatever the
    policy's own precision (``passed`` is the hover criterion on this one episode).
    """

    metrics: dict[str, float]
    passed: bool
    ticks: int
    fallbacks: int
    compact: bool
    full_frames: int
    compact_frames: int
    resyncs: int
    bytes_sent_per_tick: float
    max_abs_diff_vs_onnx: float
    reference_deviation_m: float
    device_ticks_mean: float
    device_tick_hz: int
    rtt_ms: dict[str, float]
    wall_s: float
    counters: dict[str, Any]
    device: dict[str, Any]
    traj: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("traj")
        return out


class DevicePolicy:
    """A :data:`sim2real.tasks.quadrotor_hover.evaluation.PolicyFn` that asks the device for each row and records what happened.

    ``policy(obs)`` maps ``(N, obs_dim)`` to ``(N, act_dim)``; a row whose exchange fails after the link's
    retries gets ``safe_action`` in every component.

    With ``compact``, a row goes as an OBS_STATE (``obs[:history_offset]``) when the device holds exactly the
    row's history (:attr:`.SerialLink.device_history`): never on the first call (the episode's first tick),
    nor after a failed exchange, a fallback or an environment reset, nor for the second of two rows (the
    device keeps one history). Otherwise, and for a device without history, it goes as a full OBS.

    Attributes:
        fallbacks: rows that got the safe action.
        full_frames, compact_frames: OBS and OBS_STATE exchanges started.
        resyncs: OBS_STATE exchanges that failed and were replaced by a full OBS in the same tick.
        max_diff: largest ``|device - onnxruntime|`` over the actions, onnxruntime on the full observation.
        rtts: seconds per row the device answered (a resync's includes the failed OBS_STATE).
        device_ticks: device clock ticks of each answered inference.
    """

    def __init__(self, link: SerialLink, reference: OnnxPolicy, safe_action: float, compact: bool = True) -> None:
        self.link, self.reference, self.safe_action = link, reference, float(safe_action)
        self.compact = compact
        self.fallbacks, self.max_diff = 0, 0.0
        self.full_frames = self.compact_frames = self.resyncs = 0
        self.rtts: list[float] = []
        self.device_ticks: list[int] = []
        self._started = False

    def reset(self) -> None:
        """Start a new episode: the next row goes as a full OBS whatever the device holds."""
        self._started = False

    def _compact_ok(self, row: np.ndarray) -> bool:
        """Whether ``row`` ``(obs_dim,)`` can go as OBS_STATE: the device holds exactly its history."""
        history = self.link.device_history  # None: unknown (nothing sent yet, a failure, a device reset)
        if not (self.compact and self._started) or history is None or history.size == 0:
            return False
        return bool(np.array_equal(history, row[self.link.cached_info().history_offset :]))

    def _exchange(self, row: np.ndarray) -> InferReply:
        """The device's answer for ``row`` ``(obs_dim,)`` float32: compact if possible, else (or on failure) full.

        Raises:
            LinkError: the full OBS failed too.
        """
        if self._compact_ok(row):
            self.compact_frames += 1
            try:
                return self.link.infer_state(row[: self.link.cached_info().history_offset])
            except LinkError:
                self.resyncs += 1  # the device's history is unknown now: the full OBS below restarts it
        self.full_frames += 1
        return self.link.infer(row)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.detach().to("cpu", torch.float32).numpy()
        ref = self.reference(x)  # always on the full observation
        out = np.empty_like(ref)
        for i, row in enumerate(x):
            t0 = time.perf_counter()
            try:
                reply: InferReply | None = self._exchange(row)
            except LinkError:
                reply = None
            self._started = True
            if reply is None:
                self.fallbacks += 1
                out[i] = self.safe_action
                continue
            self.rtts.append(time.perf_counter() - t0)
            self.device_ticks.append(int(reply.ticks))
            out[i] = reply.actions
            self.max_diff = max(self.max_diff, float(np.abs(reply.actions - ref[i]).max()))
        return torch.from_numpy(out)


def _check_device(info: Any, meta: PolicyMetadata, onnx_sha256: str, check_hash: bool) -> None:
    if (info.obs_dim, info.act_dim) != (meta.obs_dim, meta.act_dim):
        raise HILError(f"device runs a {info.obs_dim} -> {info.act_dim} policy, the ONNX file is "
                       f"{meta.obs_dim} -> {meta.act_dim}: flash the firmware built from this policy")  # fmt: skip
    if check_hash and info.model_hash != onnx_sha256[:16]:
        raise HILError(f"device model hash {info.model_hash} differs from the policy's {onnx_sha256[:16]}: "
                       "the firmware was built from another policy.onnx (or pass check_hash=False)")  # fmt: skip
    if info.history_len:  # the device's history must be where the simulator writes the actions
        if meta.action_history != (info.history_offset, info.history_len):
            raise HILError(f"device keeps the action history in obs[{info.history_offset}:{info.obs_dim}], the "
                           f"policy's layout says (offset, length) {meta.action_history}: the firmware was built from "
                           "another policy")


def run_hil(link: SerialLink, policy_path: str | Path, cfg: HILConfig | None = None) -> HILResult:
    """Fly one simulated episode with every action computed by the device behind ``link``.

    Raises:
        HILError: the device's dimensions or model hash do not match ``policy_path``.
        LinkError: the device does not answer the initial info request.
    """
    import hashlib

    cfg = cfg or HILConfig()
    if not cfg.duration_s > 0:
        raise ValueError(f"duration_s must be > 0, got {cfg.duration_s}")
    path = Path(policy_path)
    reference = OnnxPolicy(path)
    meta = reference.metadata
    if meta.task != HOVER:
        raise HILError(f"{path}: HIL flies {HOVER} policies, this one is for {meta.task!r}")
    _, base = policy_env_config(meta, str(path))
    assert isinstance(base, HoverConfig)
    info = link.info()
    _check_device(info, meta, hashlib.sha256(path.read_bytes()).hexdigest(), cfg.check_hash)
    device = DevicePolicy(link, reference, cfg.safe_action, compact=cfg.compact)
    sent0 = link.counters.bytes_sent
    t0 = time.perf_counter()
    traj = rollout_hover(device, cfg.start, 1, cfg.seed, base, cfg.duration_s)
    wall = time.perf_counter() - t0
    ticks = int(traj["action"].shape[0])
    metrics = hover_metrics(traj)
    passed = metrics["left_box_fraction"] == 0.0 and metrics["pos_error_last2s_m"] < 0.10 and device.fallbacks == 0
    ref = rollout_hover(reference, cfg.start, 1, cfg.seed, base, cfg.duration_s)  # same episode, onnxruntime
    deviation = float((traj["pos"] - ref["pos"]).norm(dim=-1).max())
    rtt = np.array(device.rtts) * 1e3 if device.rtts else np.array([math.nan])
    return HILResult(
        metrics=metrics, passed=bool(passed), ticks=ticks, fallbacks=device.fallbacks, compact=cfg.compact,
        full_frames=device.full_frames, compact_frames=device.compact_frames, resyncs=device.resyncs,
        bytes_sent_per_tick=(link.counters.bytes_sent - sent0) / max(ticks, 1),
        max_abs_diff_vs_onnx=device.max_diff, reference_deviation_m=deviation,
        device_ticks_mean=float(np.mean(device.device_ticks)) if device.device_ticks else math.nan,
        device_tick_hz=int(info.tick_hz),
        rtt_ms={"p50": float(np.percentile(rtt, 50)), "p99": float(np.percentile(rtt, 99)), "max": float(rtt.max())},
        wall_s=wall, counters=asdict(link.counters), device=asdict(info), traj=traj,
    )  # fmt: skip
