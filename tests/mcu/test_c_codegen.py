"""C code generation: host build (gcc + ctypes) against onnxruntime, golden pair, tanh accuracy, int8, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import TRAINED_POLICY, require_tools

from sim2real.core.obs import ObsGroup, ObsTerm
from sim2real.core.policy_file import OnnxPolicy, PolicyMetadata
from sim2real.export.onnx import DeployedPolicy, _export_graph
from sim2real.mcu.c_codegen import CodegenError, generate_c, history_layout, render
from sim2real.mcu.c_host import HostPolicy
from sim2real.mcu.mlp_ir import Dense, MLPModel, UnsupportedGraph, mlp_from_onnx
from sim2real.policies.networks import RunningNormalizer, SquashedGaussianActor

TRAINED = TRAINED_POLICY


@pytest.fixture(autouse=True)
def _gcc():
    require_tools("gcc")


def _ort(path: Path, obs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: obs.astype(np.float32)})[0]


def _random_onnx(path: Path, obs_dim: int, hidden: tuple[int, ...], act_dim: int, activation: str, normalize: bool,
                 seed: int) -> Path:  # fmt: skip
    """A randomly initialised actor (with random normaliser statistics) exported like a trained one."""
    torch.manual_seed(seed)
    actor = SquashedGaussianActor(obs_dim, act_dim, hidden, activation)
    norm = None
    if normalize:
        norm = RunningNormalizer(obs_dim)
        norm.mean.copy_(torch.randn(obs_dim) * 2)
        norm.var.copy_(torch.rand(obs_dim) * 4 + 0.01)
    model = _export_graph(DeployedPolicy(actor, norm).eval(), 17)
    onnx.save(model, path)
    return path


def _test_obs(model: MLPModel, n: int, seed: int) -> np.ndarray:
    """Random observations ``mean + N(0, 1) * std`` (the training distribution as the normaliser saw it)."""
    return model.normalizer_samples(n, seed)


def _float64_reference(m: MLPModel, x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64)
    z = np.clip((z - m.mean) * m.scale, *m.obs_clip) if m.mean is not None else z
    for lay in m.layers:
        z = z @ lay.weight.T.astype(np.float64) + lay.bias
        z = np.maximum(z, 0) if lay.activation == "relu" else np.tanh(z) if lay.activation == "tanh" else z
    return np.tanh(z)


def test_trained_policy_matches_onnxruntime_on_10k_obs(tmp_path):
    ex = generate_c(TRAINED, tmp_path, target="host")
    host = HostPolicy(tmp_path, 146, 4)
    x = _test_obs(ex.model, 10_000, seed=3)
    diff = np.abs(host(x) - OnnxPolicy(TRAINED)(x))
    assert diff.max() <= 1e-5, diff.max()
    # the golden pair in the header is reproduced by the C code and came from onnxruntime
    assert np.abs(host(host.golden_obs[None])[0] - host.golden_act).max() <= 1e-5
    assert np.array_equal(host.golden_act, _ort(TRAINED, host.golden_obs[None])[0])
    assert ex.manifest["macs"] == 146 * 64 + 64 * 64 + 64 * 4  # the unused log-std rows are dropped


def test_extreme_observations_are_as_accurate_as_onnxruntime(tmp_path):
    """20x outside the training range (the normaliser clip engages, pre-activations reach +-20): float32
    cancellation then costs ~1e-5 in any summation order, so both are compared with a float64 reference."""
    ex = generate_c(TRAINED, tmp_path, target="host")
    x = _test_obs(ex.model, 2000, seed=5) * 20
    ref = _float64_reference(ex.model, x)
    err_c = np.abs(HostPolicy(tmp_path, 146, 4)(x) - ref).max()
    err_ort = np.abs(OnnxPolicy(TRAINED)(x) - ref).max()
    assert err_c <= max(2 * err_ort, 1e-6) and err_c < 5e-5, (err_c, err_ort)


@pytest.mark.parametrize(
    "obs_dim,hidden,act_dim,activation,normalize",
    [(3, (8,), 2, "relu", True), (17, (30, 7), 3, "tanh", False), (146, (64, 64), 4, "relu", True),
     (5, (), 6, "relu", True), (40, (256, 128, 32), 12, "relu", False)],
)  # fmt: skip
def test_random_networks_match_onnxruntime(tmp_path, obs_dim, hidden, act_dim, activation, normalize):
    src = _random_onnx(tmp_path / "p.onnx", obs_dim, hidden, act_dim, activation, normalize, seed=obs_dim)
    ex = generate_c(src, tmp_path / "c", target="cortex-m4")
    host = HostPolicy(tmp_path / "c", obs_dim, act_dim)
    x = _test_obs(ex.model, 10_000, seed=1)
    assert np.abs(host(x) - _ort(src, x)).max() <= 1e-5
    fused = HostPolicy(tmp_path / "c", obs_dim, act_dim, ["-DPOLICY_USE_FMA"])  # the Cortex-M7 kernel variant
    assert np.abs(fused(x[:2000]) - _ort(src, x[:2000])).max() <= 1e-5


def test_fast_tanh_accuracy(tmp_path):
    """The libm-free tanh alone (1 -> 1 identity layer, tanh output) against float64 tanh on a dense grid."""
    one = np.ones((1, 1), np.float32)
    model = MLPModel(obs_dim=1, layers=[Dense(one, np.zeros(1, np.float32))], out_activation="tanh")
    h, c = render(model, np.zeros(1, np.float32), np.zeros(1, np.float32), target="host")
    (tmp_path / "policy.h").write_text(h)
    (tmp_path / "policy.c").write_text(c)
    x = np.linspace(-12, 12, 200_001, dtype=np.float32)[:, None]
    y = HostPolicy(tmp_path, 1, 1)(x)[:, 0]
    err = np.abs(y.astype(np.float64) - np.tanh(x[:, 0].astype(np.float64)))
    assert err.max() < 4e-7, err.max()
    assert np.all(np.abs(y) <= 1.0) and np.diff(y).min() >= -2 * 4e-7  # bounded; wiggles within the error bound


def test_generated_code_is_self_contained(tmp_path):
    ex = generate_c(TRAINED, tmp_path, target="cortex-m4")
    code = ex.source.read_text()
    assert not re.search(r"#include\s*<", code), "policy.c must not need the C library"
    assert not re.search(r"\b(malloc|tanhf|expf|isfinite|isnan)\s*\(", code)
    header = ex.header.read_text()
    for key in ("POLICY_OBS_DIM 146", "POLICY_ACT_DIM 4", f'POLICY_MODEL_HASH "{ex.manifest["onnx_sha256"][:16]}"',
                "position_error[0:3]", "action_history[18:146]", "100.0 Hz"):  # fmt: skip
        assert key in header, key
    # weights are exact: every float literal in the file is a hex float
    assert "static const float w0[9344]" in code and re.search(r"-?0x1\.[0-9a-f]+p[+-]\d+f", code)


def test_history_defines(tmp_path):
    """The device-side action history: obs[18:146] of the trained policy (32 x 4 past actions)."""
    ex = generate_c(TRAINED, tmp_path, target="cortex-m4")
    header = ex.header.read_text()
    assert "#define POLICY_HISTORY_OFFSET 18\n" in header and "#define POLICY_HISTORY_LEN 128\n" in header
    assert (ex.manifest["history_offset"], ex.manifest["history_len"]) == (18, 128)
    one = np.ones((4, 10), np.float32)

    def layout(*terms: tuple[str, int]) -> tuple[int, int]:
        group = ObsGroup.of(*(ObsTerm(name, size) for name, size in terms))
        meta = PolicyMetadata(task="t", obs_dim=group.dim, obs_layout=group, act_dim=4, control_dt=0.01)
        return history_layout(MLPModel(obs_dim=10, layers=[Dense(one, np.zeros(4, np.float32))], metadata=meta))

    assert layout(("state", 2), ("action_history", 8)) == (2, 8)
    assert layout(("action_history", 8), ("tail", 2)) == (10, 0)  # does not end the observation
    assert layout(("state", 4), ("action_history", 6)) == (10, 0)  # not whole actions
    assert layout(("state", 10)) == (10, 0)
    h, _ = render(MLPModel(obs_dim=10, layers=[Dense(one, np.zeros(4, np.float32))]), np.zeros(10), np.zeros(4))
    assert "#define POLICY_HISTORY_OFFSET 10\n" in h and "#define POLICY_HISTORY_LEN 0\n" in h


def test_nan_observation_is_rejected(tmp_path):
    generate_c(TRAINED, tmp_path, target="host")
    host = HostPolicy(tmp_path, 146, 4)
    x = np.zeros((3, 146), np.float32)
    x[1, 7], x[2, 100] = np.nan, np.inf
    y = host(x)
    assert np.isfinite(y[0]).all() and np.isnan(y[1:]).all()


def test_int8_export_is_smaller_and_reports_its_error(tmp_path):
    f32 = generate_c(TRAINED, tmp_path / "f32", target="host")
    i8 = generate_c(TRAINED, tmp_path / "i8", target="host", int8=True, validation_samples=2000)
    err = i8.manifest["int8_error"]
    assert 0 < err["mean_abs"] < 0.05 and err["max_abs"] >= err["mean_abs"] and err["samples"] == 2000
    assert i8.manifest["parameter_bytes"] < 0.3 * f32.manifest["parameter_bytes"]
    host = HostPolicy(tmp_path / "i8", 146, 4)
    x = _test_obs(f32.model, 2000, seed=4)
    assert np.abs(host(x) - i8.model.forward(x)).max() <= 1e-5  # C int8 kernel == numpy int8 reference
    assert np.abs(host(host.golden_obs[None])[0] - host.golden_act).max() <= 1e-5
    assert "int8 accuracy loss" in i8.header.read_text()


def test_graph_reader_refuses_unsupported_ops(tmp_path):
    model = onnx.load(TRAINED)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    bad = tmp_path / "sigmoid.onnx"
    onnx.save(model, bad)
    with pytest.raises(CodegenError, match="Sigmoid"):
        generate_c(bad, tmp_path / "out")
    assert not (tmp_path / "out" / "policy.c").exists()
    with pytest.raises(UnsupportedGraph, match="readable"):
        mlp_from_onnx(b"not an onnx file")
    with pytest.raises(FileNotFoundError):
        generate_c(tmp_path / "missing.onnx", tmp_path / "out")
    with pytest.raises(CodegenError, match="target"):
        generate_c(TRAINED, tmp_path / "out", target="avr")


def test_graph_reader_recovers_the_arrays():
    m = mlp_from_onnx(TRAINED)
    assert (m.obs_dim, m.act_dim, [lay.shape for lay in m.layers]) == (146, 4, [(64, 146), (64, 64), (4, 64)])
    assert [lay.activation for lay in m.layers] == ["relu", "relu", "none"] and m.out_activation == "tanh"
    assert m.out_slice is None and m.obs_clip == (-10.0, 10.0) and m.metadata is not None and m.metadata.task == "quadrotor-hover"
    x = m.normalizer_samples(512, 0)
    assert np.abs(m.forward(x) - OnnxPolicy(TRAINED)(x)).max() < 1e-5
