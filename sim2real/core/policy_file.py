"""The policy file ``policy.onnx``: its typed metadata, the one reader and the runtime.

The contract: input ``obs`` float32 ``(batch, obs_dim)``, output ``actions`` float32 ``(batch, act_dim)``,
deterministic, normaliser inside the graph, pinned opset. ``metadata_props`` hold a JSON description under the
key :data:`METADATA_KEY` (:class:`PolicyMetadata`: observation layout, action meaning and bounds, control rate,
task, robot, training run and checkpoint hash) plus flat copies of a few fields (:data:`FLAT_KEYS`). Everything
that runs a policy (evaluation, the ROS 2 nodes, HIL, the C export) reads it through :func:`read_metadata` or
:class:`OnnxPolicy`; the exporter (:mod:`sim2real.export.onnx`) is the one writer and builds the
``metadata_props`` with :func:`metadata_props`.

This module imports no training code and no torch: it is what a robot loads. ``onnx`` (protobuf parsing) and
``onnxruntime`` are imported when a file is read.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sim2real.core.files import CheckpointError
from sim2real.core.obs import HISTORY_TERM, ObsGroup

if TYPE_CHECKING:
    import onnx

FORMAT = "sim2real-policy"
FORMAT_VERSION = 1
METADATA_KEY = "sim2real"
INPUT_NAME = "obs"
OUTPUT_NAME = "actions"
#: Fields also stored as their own ``metadata_props`` entries (for tools that do not parse the JSON).
FLAT_KEYS = ("format_version", "task", "obs_group", "obs_dim", "act_dim", "control_rate_hz", "checkpoint_sha256")
_JSON_ORDER = (
    "format", "format_version", "task", "input", "output", "obs_group", "obs_dim", "obs_layout", "action_history_length",
    "obs_normalization", "act_dim", "action_meaning", "action_bounds", "policy", "control_dt", "control_rate_hz",
    "robot", "sensors", "max_episode_steps", "episode_length_s", "env_config", "train_config", "run_id", "checkpoint_file",
    "checkpoint_sha256", "env_steps", "opset", "exporter", "torch_version", "sim2real_version", "created_utc",
)  # fmt: skip


@dataclass(frozen=True)
class PolicyMetadata:
    """The JSON description of an exported policy (field order = the order in the file)."""

    task: str
    obs_dim: int
    obs_layout: ObsGroup
    act_dim: int
    control_dt: float
    obs_group: str = "policy"
    obs_normalization: str = "inside the graph"
    action_meaning: dict[str, Any] = field(default_factory=dict)
    """What an action means: ``type`` and, e.g., ``max_rpm``/``rotor_order`` (quadrotor), joint ``names``."""
    action_bounds: tuple[float, float] = (-1.0, 1.0)
    policy: str = "deterministic tanh(mu)"
    control_rate_hz: float = 0.0
    robot: dict[str, Any] = field(default_factory=dict)
    """The robot it was trained for (model, physical parameters, joint order, gains, ...)."""
    sensors: dict[str, Any] = field(default_factory=dict)
    """Structured sensors the input holds (``tactile``: ``kind``, ``term``, ``shape``, ``order``, ``channels``,
    ``normalization``, ``pads``); the env running the policy must describe them identically."""
    max_episode_steps: int = 0
    env_config: dict[str, Any] = field(default_factory=dict)
    """The task's env config (``asdict``) the policy was trained with: evaluation rebuilds the env from it."""
    train_config: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    checkpoint_file: str = ""
    checkpoint_sha256: str = ""
    env_steps: int = 0
    opset: int = 0
    exporter: str = ""
    torch_version: str = ""
    sim2real_version: str = ""
    created_utc: str = ""
    parity_max_abs_diff: float | None = None
    """``max |onnxruntime - torch|`` measured by the exporter over ``parity_samples`` observations."""
    parity_samples: int | None = None
    parity_atol: float | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.obs_layout.dim != self.obs_dim:
            raise ValueError(f"obs_layout covers {self.obs_layout.dim} values, obs_dim is {self.obs_dim}")
        if not (self.act_dim >= 1 and self.control_dt > 0):
            raise ValueError(f"need act_dim >= 1 and control_dt > 0, got {self.act_dim}, {self.control_dt}")
        if not self.control_rate_hz:
            object.__setattr__(self, "control_rate_hz", round(1.0 / self.control_dt, 9))
        elif not math.isclose(self.control_rate_hz, 1.0 / self.control_dt, rel_tol=1e-6):
            raise ValueError(f"control_rate_hz {self.control_rate_hz} does not match control_dt {self.control_dt}")

    # ------------------------------------------------------------------------------------------ derived
    @property
    def episode_length_s(self) -> float:
        return self.max_episode_steps * self.control_dt

    @property
    def action_history(self) -> tuple[int, int] | None:
        """``(offset, length)`` in floats of the action history when it ends the observation in whole actions."""
        if HISTORY_TERM not in self.obs_layout.names:
            return None
        sl = self.obs_layout.slice(HISTORY_TERM)
        size = sl.stop - sl.start
        if sl.stop != self.obs_dim or size % self.act_dim:
            return None
        return sl.start, size

    @property
    def action_history_length(self) -> int | None:
        """Past actions in the observation (None: no history term)."""
        hist = self.action_history
        return None if hist is None else hist[1] // self.act_dim

    # ------------------------------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """The JSON object stored under :data:`METADATA_KEY` (NaN/Inf become null)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(format=FORMAT, obs_layout=self.obs_layout.to_json(), action_history_length=self.action_history_length,
                 episode_length_s=self.episode_length_s,
                 input={"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", self.obs_dim]},
                 output={"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", self.act_dim]})  # fmt: skip
        out = {k: d[k] for k in _JSON_ORDER if k != "sensors" or d[k]}  # no sensors: as files without them were
        out.update({k: d[k] for k in ("parity_max_abs_diff", "parity_samples", "parity_atol") if d[k] is not None})
        return _jsonable(out)

    @classmethod
    def from_json(cls, d: Any, where: str = "<policy>") -> PolicyMetadata:
        """Parse and check the JSON object; every problem is a :class:`CheckpointError` naming ``where``."""
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: {METADATA_KEY!r} metadata is not a JSON object")
        missing = [k for k in ("format_version", "task", "obs_dim", "act_dim", "obs_layout", "control_dt") if k not in d]
        if missing:
            raise CheckpointError(f"{where}: {METADATA_KEY!r} metadata lacks {', '.join(missing)}")
        try:
            version = int(d["format_version"])
        except (TypeError, ValueError):
            raise CheckpointError(f"{where}: format_version {d['format_version']!r} is not a number") from None
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{where}: format version {version} is newer than {FORMAT_VERSION}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        try:
            kw["obs_layout"] = ObsGroup.from_json(d["obs_layout"])
            kw["format_version"] = version
            for name, conv in (("obs_dim", int), ("act_dim", int), ("control_dt", float), ("max_episode_steps", int),
                               ("env_steps", int), ("opset", int), ("control_rate_hz", float)):  # fmt: skip
                if kw.get(name) is not None:
                    kw[name] = conv(kw[name])
            if "action_bounds" in kw:
                lo, hi = kw["action_bounds"]
                kw["action_bounds"] = (float(lo), float(hi))
            for name in ("action_meaning", "robot", "sensors", "env_config", "train_config"):
                if not isinstance(kw.get(name, {}), dict):
                    raise ValueError(f"{name} must be an object, got {type(kw[name]).__name__}")
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: invalid {METADATA_KEY!r} metadata ({e})") from None


def _jsonable(x: Any) -> Any:
    """Plain-JSON copy: tuples/numpy become lists/numbers; NaN/Inf become None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, np.generic)):
        return _jsonable(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x if x is None or isinstance(x, (bool, int, str)) else str(x)


def metadata_props(meta: PolicyMetadata) -> dict[str, str]:
    """The ``metadata_props`` entries of a policy file: the JSON under :data:`METADATA_KEY`, plus :data:`FLAT_KEYS`."""
    d = meta.to_json()
    return {METADATA_KEY: json.dumps(d, allow_nan=False), **{k: str(d[k]) for k in FLAT_KEYS}}


# ----------------------------------------------------------------------------------------------- reading
def _read_bytes(source: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, "<in-memory ONNX model>"
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"ONNX policy not found: {path}")
    return path.read_bytes(), str(path)


def parse_model(data: bytes, where: str) -> onnx.ModelProto:
    """The ONNX model of ``data`` (:class:`CheckpointError` when it is not one)."""
    import onnx

    try:
        return onnx.load_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise CheckpointError(f"{where} is not a readable ONNX model ({type(e).__name__}: {e})") from None


def metadata_of(model: onnx.ModelProto, where: str, required: bool = True) -> PolicyMetadata | None:
    """The policy metadata of a parsed model; None when it has none and ``required`` is False."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        if not required:
            return None
        raise CheckpointError(f"{where} has no {METADATA_KEY!r} metadata: not exported by sim2real (or truncated)")
    try:
        d = json.loads(props[METADATA_KEY])
    except (json.JSONDecodeError, TypeError) as e:
        raise CheckpointError(f"{where}: {METADATA_KEY!r} metadata is not a JSON object ({e})") from None
    return PolicyMetadata.from_json(d, where)


def read_metadata(source: str | Path | bytes) -> PolicyMetadata:
    """The metadata of an exported policy (:class:`CheckpointError` if missing, absent or corrupt)."""
    data, where = _read_bytes(source)
    meta = metadata_of(parse_model(data, where), where)
    assert meta is not None
    return meta


def inference_session(data: bytes, where: str, intra_op_threads: int = 1) -> Any:
    """A sequential CPU onnxruntime session of the graph in ``data``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(intra_op_threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise CheckpointError(f"{where}: onnxruntime cannot load the graph ({type(e).__name__}: {e})") from None


class _NoTorch:
    """Stands in for the torch module before torch is imported: nothing is a tensor yet."""

    Tensor = ()


_NO_TORCH = _NoTorch()


class OnnxPolicy:
    """An exported ``policy.onnx`` run by onnxruntime on the CPU.

    ``policy(obs)`` maps ``(N, obs_dim)`` observations (numpy or torch, float32; other float dtypes are
    converted) to ``(N, act_dim)`` float32 actions of the same kind (torch outputs go back to the input's
    device).

    Args:
        source: the ``.onnx`` file (or its bytes).
        intra_op_threads: onnxruntime intra-op threads; 1 (default) is single-threaded, 0 lets onnxruntime decide.

    Raises:
        CheckpointError: missing or corrupt file, no or invalid ``sim2real`` metadata, or a graph whose inputs
            and outputs are not ``obs`` -> ``actions``.
    """

    def __init__(self, source: str | Path | bytes, intra_op_threads: int = 1) -> None:
        data, where = _read_bytes(source)
        self.path = None if isinstance(source, bytes) else Path(source)
        model = parse_model(data, where)
        meta = metadata_of(model, where)
        assert meta is not None
        self.metadata: PolicyMetadata = meta
        self.obs_dim, self.act_dim = meta.obs_dim, meta.act_dim
        ins, outs = [i.name for i in model.graph.input], [o.name for o in model.graph.output]
        if ins != [INPUT_NAME] or outs != [OUTPUT_NAME]:
            raise CheckpointError(f"{where}: graph I/O {ins} -> {outs}, expected [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]")
        self.session = inference_session(data, where, intra_op_threads)

    @property
    def control_dt(self) -> float:
        return self.metadata.control_dt

    @property
    def obs_layout(self) -> ObsGroup:
        return self.metadata.obs_layout

    @property
    def obs_group(self) -> str:
        """The observation group (or ``+``-joined groups) the policy reads."""
        return self.metadata.obs_group

    def __call__(self, obs: Any) -> Any:
        """Actions ``(N, act_dim)`` for observations ``(N, obs_dim)`` (numpy in -> numpy out, torch -> torch).

        Raises:
            TypeError: neither a numpy array nor a torch tensor.
            ValueError: non-float dtype, wrong shape, or NaN/Inf entries (the rows are named).
        """
        torch: Any = sys.modules.get("torch", _NO_TORCH)  # a torch tensor can only exist once torch is imported
        is_torch = isinstance(obs, torch.Tensor)
        if is_torch:
            if not obs.is_floating_point():
                raise ValueError(f"obs must be floating point, got dtype {obs.dtype}")
            arr = obs.detach().to("cpu", torch.float32).numpy()
        elif isinstance(obs, np.ndarray):
            if obs.dtype.kind != "f":
                raise ValueError(f"obs must be floating point, got dtype {obs.dtype}")
            arr = obs
        else:
            raise TypeError(f"obs must be a numpy array or torch tensor, got {type(obs).__name__}")
        if arr.ndim != 2 or arr.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}) (N, obs_dim), got {tuple(arr.shape)}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)  # after the cast: float64 beyond float32 range is Inf
        bad = ~np.isfinite(arr).all(1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(f"obs contains NaN/Inf in row(s) {rows[:8].tolist()}{'...' if len(rows) > 8 else ''}")
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: arr})[0] if len(arr) else np.zeros((0, self.act_dim), "f4")
        return torch.from_numpy(out).to(obs.device) if is_torch else out
