"""An exported MLP policy as plain arrays: read from the ONNX graph, evaluated in numpy, quantised to int8.

The C generator works from this intermediate form, not from a checkpoint, so anything that produced a
``policy.onnx`` of the supported shape (our exporter, or another chain of the same ops) can go to a
microcontroller. The supported graph is a single chain from ``obs`` to ``actions``::

    x = clip((obs - mean) * scale, lo, hi)        # Sub, Mul, Clip    (each optional)
    x = act_k(W_k x + b_k)       for k = 0..L-1   # Gemm | MatMul+Add, then Relu | Tanh | none
    y = out_act(x[start:stop])                    # Slice (optional), Tanh (optional)
    actions = clip(y, a_lo, a_hi)                 # Clip (optional; the C code always clamps to [-1, 1] after tanh)

Everything is float32, as onnxruntime computes it; :meth:`MLPModel.forward` is the numpy reference with
the same operation order as the generated C (up to summation order inside a dot product).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from sim2real.core.policy_file import PolicyMetadata, metadata_of

#: Hidden/output activations with a libm-free C kernel.
ACTIVATIONS = ("none", "relu", "tanh")


class UnsupportedGraph(ValueError):
    """The ONNX graph is not a chain of the operations the C generator supports (the op is named)."""


@dataclass
class Dense:
    """``y = act(W x + b)``: ``weight`` ``(out, in)`` float32, ``bias`` ``(out,)`` float32.

    With int8 weights, ``weight`` holds the dequantised values ``q * scale[:, None]``, ``qweight`` the int8
    codes ``(out, in)`` and ``scale`` ``(out,)`` the per-output-channel scales.
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: str = "none"
    qweight: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weight.shape[0]), int(self.weight.shape[1])


@dataclass
class MLPModel:
    """The policy as arrays. ``mean``/``scale`` ``(obs_dim,)`` normalise the input, ``obs_clip`` bounds it.

    ``out_slice`` selects the actions from the last layer's outputs, ``out_activation`` squashes them
    (``tanh`` for SAC), ``action_clip`` bounds the result.
    """

    obs_dim: int
    layers: list[Dense]
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    obs_clip: tuple[float, float] | None = None
    out_slice: tuple[int, int] | None = None
    out_activation: str = "none"
    action_clip: tuple[float, float] | None = None
    source_sha256: str = ""
    metadata: PolicyMetadata | None = None
    """The sim2real metadata of the file (None for a graph exported by other tools)."""

    @property
    def act_dim(self) -> int:
        start, stop = self.out_slice if self.out_slice else (0, self.layers[-1].shape[0])
        return stop - start

    @property
    def macs(self) -> int:
        """Multiply-adds of one inference (the dense layers): the lower bound of any kernel's work."""
        return sum(o * i for o, i in (layer.shape for layer in self.layers))

    @property
    def int8(self) -> bool:
        return any(layer.qweight is not None for layer in self.layers)

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``(N, act_dim)`` float32 for observations ``(N, obs_dim)``, in float32 arithmetic."""
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"obs must have shape (N, {self.obs_dim}), got {x.shape}")
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x * self.scale
        if self.obs_clip is not None:
            x = np.clip(x, np.float32(self.obs_clip[0]), np.float32(self.obs_clip[1]))
        for layer in self.layers:
            x = _act(x @ layer.weight.T + layer.bias, layer.activation)
        if self.out_slice is not None:
            x = x[:, self.out_slice[0] : self.out_slice[1]]
        x = _act(x, self.out_activation)
        if self.action_clip is not None:
            x = np.clip(x, np.float32(self.action_clip[0]), np.float32(self.action_clip[1]))
        return x.astype(np.float32)

    def quantized(self) -> MLPModel:
        """A copy with per-output-channel symmetric int8 weights (biases, normaliser stay float32).

        ``scale_r = max_j |W_rj| / 127`` and ``q_rj = round(W_rj / scale_r)`` in ``[-127, 127]``, so each row
        keeps its own dynamic range; the kernel computes ``y_r = scale_r * sum_j q_rj x_j + b_r``.
        """
        layers = []
        for layer in self.layers:
            amax = np.abs(layer.weight).max(axis=1)
            scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.rint(layer.weight / scale[:, None]), -127, 127).astype(np.int8)
            deq = (q.astype(np.float32) * scale[:, None]).astype(np.float32)
            layers.append(replace(layer, weight=deq, qweight=q, scale=scale))
        return replace(self, layers=layers)

    def normalizer_samples(self, n: int, seed: int = 0) -> np.ndarray:
        """``(n, obs_dim)`` observations ``mean + N(0, 1) / scale``: typical inputs when no simulator is at hand."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((n, self.obs_dim)).astype(np.float32)
        mean = self.mean if self.mean is not None else np.zeros(self.obs_dim, np.float32)
        std = 1.0 / self.scale if self.scale is not None else np.ones(self.obs_dim, np.float32)
        return (mean + z * std).astype(np.float32)


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "relu":
        return np.maximum(x, np.float32(0))
    if kind == "tanh":
        return np.tanh(x)
    return x


# ----------------------------------------------------------------------------------------------- ONNX
_ACT_OPS = {"Relu": "relu", "Tanh": "tanh"}
_CONV_OPS = {"Conv", "ConvTranspose", "MaxPool", "AveragePool"}


def mlp_from_onnx(source: str | Path | bytes) -> MLPModel:
    """Read a chain-MLP ``policy.onnx`` (file or bytes) into an :class:`MLPModel`.

    Raises:
        FileNotFoundError: missing file.
        UnsupportedGraph: an op, attribute or topology outside the supported chain (named in the message).
        CheckpointError: the file has sim2real metadata, and it is corrupt.
    """
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX policy not found: {path}")
        data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise UnsupportedGraph(f"not a readable ONNX model ({type(e).__name__}: {e})") from None
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise UnsupportedGraph(f"expected one input and one output, got {len(g.input)} and {len(g.output)}")
    convs = sorted({n.op_type for n in g.node} & _CONV_OPS)
    if convs:
        raise UnsupportedGraph(f"the graph has {', '.join(convs)} layers (a convolutional encoder, e.g. of tactile images): "
                               "the C generator runs MLP policies only; deploy it with onnxruntime (ROS 2 node) instead")
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    dims = g.input[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].dim_value:
        raise UnsupportedGraph("input must have shape [batch, obs_dim] with a fixed obs_dim")
    m = MLPModel(obs_dim=int(dims[1].dim_value), layers=[], source_sha256=hashlib.sha256(data).hexdigest())
    cur = g.input[0].name
    pending_matmul = False  # a MatMul whose bias Add may follow
    for node in g.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            continue
        if not node.input or node.input[0] != cur:
            raise UnsupportedGraph(f"node {node.name or node.op_type} ({node.op_type}) does not continue the chain")
        args = [_const(consts, name, node) for name in node.input[1:]]
        _apply(m, node, args, pending_matmul)
        pending_matmul = node.op_type == "MatMul"
        cur = node.output[0]
    if cur != g.output[0].name:
        raise UnsupportedGraph(f"the chain ends at {cur!r}, not at the graph output {g.output[0].name!r}")
    if not m.layers:
        raise UnsupportedGraph("the graph has no dense layer")
    for layer in m.layers:
        if not (np.isfinite(layer.weight).all() and np.isfinite(layer.bias).all()):
            raise UnsupportedGraph("weights contain NaN/Inf")
    for i, (a, b) in enumerate(zip(m.layers, m.layers[1:])):
        if a.shape[0] != b.shape[1]:
            raise UnsupportedGraph(f"layer {i} has {a.shape[0]} outputs but layer {i + 1} takes {b.shape[1]}")
    if m.layers[0].shape[1] != m.obs_dim:
        raise UnsupportedGraph(f"first layer takes {m.layers[0].shape[1]} inputs, obs_dim is {m.obs_dim}")
    if m.out_slice is not None:  # rows the output slice drops (SAC's log-std head) are never computed
        last, (start, stop) = m.layers[-1], m.out_slice
        m.layers[-1] = replace(last, weight=last.weight[start:stop].copy(), bias=last.bias[start:stop].copy())
        m.out_slice = None
    m.metadata = metadata_of(model, "policy.onnx", required=False)
    return m


def _const(consts: dict[str, np.ndarray], name: str, node: onnx.NodeProto) -> np.ndarray | None:
    if name == "":  # optional input left out
        return None
    if name not in consts:
        raise UnsupportedGraph(f"{node.op_type} input {name!r} is computed, not a constant: not a chain MLP")
    return np.asarray(consts[name])


def _vec(x: np.ndarray | None, n: int, what: str) -> np.ndarray:
    if x is None:
        raise UnsupportedGraph(f"{what} is missing")
    v = np.broadcast_to(np.asarray(x, np.float32), (n,)) if np.asarray(x).size in (1, n) else None
    if v is None:
        raise UnsupportedGraph(f"{what} has {np.asarray(x).size} values, expected 1 or {n}")
    return np.ascontiguousarray(v, dtype=np.float32)


def _apply(m: MLPModel, node: onnx.NodeProto, args: list[np.ndarray | None], pending_matmul: bool) -> None:
    """Fold one node into ``m`` (mutated)."""
    op, attrs = node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    width = m.layers[-1].shape[0] if m.layers else m.obs_dim
    before_dense = not m.layers
    if op == "Sub" and before_dense and m.mean is None and m.scale is None:
        m.mean = _vec(args[0], width, "Sub constant")
    elif op == "Mul" and before_dense and m.scale is None:
        m.scale = _vec(args[0], width, "Mul constant")
    elif op == "Clip":
        lo = float(args[0]) if len(args) > 0 and args[0] is not None else -np.inf
        hi = float(args[1]) if len(args) > 1 and args[1] is not None else np.inf
        if before_dense:
            m.obs_clip = (lo, hi)
        elif m.out_slice is not None or m.out_activation != "none" or m.layers[-1].activation != "none":
            m.action_clip = (lo, hi)
        else:
            raise UnsupportedGraph("Clip between dense layers is not supported")
    elif op in ("Gemm", "MatMul"):
        if m.out_slice is not None or m.out_activation != "none":
            raise UnsupportedGraph(f"{op} after the output slice/activation")
        w = np.asarray(args[0], np.float32)
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise UnsupportedGraph("Gemm with transA=1")
            w = w if attrs.get("transB", 0) else w.T
            w = w * np.float32(attrs.get("alpha", 1.0))
            c = args[1] if len(args) > 1 and args[1] is not None else np.zeros(w.shape[0], np.float32)
            b = _vec(c, w.shape[0], "Gemm bias") * np.float32(attrs.get("beta", 1.0))
        else:
            w, b = w.T, np.zeros(w.shape[1], np.float32)
        if w.ndim != 2 or w.shape[1] != width:
            raise UnsupportedGraph(f"{op} weight of shape {w.shape} does not take {width} inputs")
        m.layers.append(Dense(np.ascontiguousarray(w, np.float32), np.ascontiguousarray(b, np.float32)))
    elif op == "Add" and pending_matmul:
        m.layers[-1].bias = (m.layers[-1].bias + _vec(args[0], width, "Add constant")).astype(np.float32)
    elif op in _ACT_OPS and not before_dense:
        kind = _ACT_OPS[op]
        if m.out_slice is not None:
            if m.out_activation != "none":
                raise UnsupportedGraph("two activations after the output slice")
            m.out_activation = kind
        elif m.layers[-1].activation == "none":
            m.layers[-1].activation = kind
        else:
            raise UnsupportedGraph(f"two activations in a row ({op})")
    elif op == "Slice" and not before_dense and m.out_slice is None:
        first, last = args[0] if args else None, args[1] if len(args) > 1 else None
        if first is None or last is None:
            raise UnsupportedGraph("Slice without constant starts/ends")
        starts, ends = int(first.ravel()[0]), int(last.ravel()[0])
        axes = int(args[2].ravel()[0]) if len(args) > 2 and args[2] is not None else 0  # type: ignore[union-attr]
        steps = int(args[3].ravel()[0]) if len(args) > 3 and args[3] is not None else 1  # type: ignore[union-attr]
        if axes not in (1, -1) or steps != 1 or first.size != 1:
            raise UnsupportedGraph(f"Slice must take a contiguous range of the last axis (axes={axes}, steps={steps})")
        start, stop, _ = slice(starts, ends).indices(width)
        if stop <= start:
            raise UnsupportedGraph(f"Slice selects nothing ({starts}:{ends} of {width})")
        m.out_slice = (start, stop)
    elif op == "Identity":
        pass
    else:
        raise UnsupportedGraph(
            f"op {op} at this position is not supported by the C generator (supported chain: Sub, Mul, Clip, "
            f"Gemm | MatMul+Add, {' | '.join(_ACT_OPS)}, Slice)"
        )
