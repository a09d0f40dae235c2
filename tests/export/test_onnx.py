"""ONNX export of trained policies: parity, metadata contract, dynamic batch, input checks, failure safety."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sim2real.core.config import apply_overrides
from sim2real.core.files import CheckpointError
from sim2real.core.policy_file import METADATA_KEY, OnnxPolicy, read_metadata
from sim2real.export import onnx as onnx_export
from sim2real.export.onnx import ExportError, export_onnx, load_trained_policy
from sim2real.policies.runner import Runner, config_from_dict
from sim2real.tasks.quadrotor_hover import train_defaults as quadrotor_hover_defaults
from sim2real.tasks.quadrotor_hover.env import HoverConfig, QuadrotorHoverEnv

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained hover run (400 env steps)."""
    cfg = apply_overrides(
        quadrotor_hover_defaults(),
        {"num_envs": 8, "total_env_steps": 400, "warmup_env_steps": 200, "sac.batch_size": 32, "log_interval": 200,
         "log_dir": str(tmp_path_factory.mktemp("runs"))},
    )  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    return runner.run_dir


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    return export_onnx(run_dir)


def test_export_default_location_parity_and_metadata(run_dir: Path, exported: Path) -> None:
    assert exported == run_dir / "exported" / "policy.onnx" and exported.is_file()
    typed = read_metadata(exported)
    meta = typed.to_json()  # the JSON contract in the file, key by key
    assert type(typed).from_json(meta) == typed  # the typed reader round-trips it
    assert typed.action_history == (18, 128) and typed.action_history_length == 32
    assert meta["parity_max_abs_diff"] <= 1e-5 and meta["parity_samples"] == 1024
    assert meta["task"] == "quadrotor-hover" and meta["obs_group"] == "policy"
    # Layout: contiguous slices that tile [0, obs_dim).
    pos = 0
    for term in meta["obs_layout"]:
        assert term["start"] == pos and term["size"] > 0 and {"name", "frame", "noise_std"} <= term.keys()
        pos += term["size"]
    assert pos == meta["obs_dim"] == 18 + 4 * HoverConfig().action_history
    assert [t["name"] for t in meta["obs_layout"]][:2] == ["position_error", "rotation_matrix"]
    assert meta["act_dim"] == 4 and meta["action_bounds"] == [-1.0, 1.0]
    assert meta["action_meaning"]["type"] == "motor_rpm" and meta["action_meaning"]["max_rpm"] > 0
    assert meta["control_rate_hz"] == 100.0 and meta["control_dt"] == pytest.approx(0.01)
    assert meta["robot"]["model"] and meta["max_episode_steps"] == 500 and meta["opset"] == 17
    # Provenance: the run, the checkpoint hash, the configs (the training config reloads).
    ckpt = run_dir / "checkpoint.pt"
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["run_id"] == run_dir.name and meta["env_steps"] == 400
    assert config_from_dict(meta["train_config"]).num_envs == 8
    assert meta["env_config"]["action_history"] == HoverConfig().action_history
    assert meta["sim2real_version"] and meta["created_utc"].endswith("+00:00")
    # The ONNX file itself: pinned opset, named I/O with a symbolic batch axis, flat metadata keys.
    model = onnx.load(exported)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    for value, name, width in ((model.graph.input[0], "obs", 146), (model.graph.output[0], "actions", 4)):
        dims = value.type.tensor_type.shape.dim
        assert value.name == name and dims[0].dim_param == "batch" and dims[1].dim_value == width
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    props = {p.key: p.value for p in model.metadata_props}
    assert METADATA_KEY in props and props["task"] == "quadrotor-hover" and float(props["control_rate_hz"]) == 100.0
    assert int(props["obs_dim"]) == 146 and int(props["act_dim"]) == 4


def test_onnx_matches_torch_on_env_observations(run_dir: Path, exported: Path) -> None:
    tp = load_trained_policy(run_dir)
    policy = OnnxPolicy(exported)
    env = QuadrotorHoverEnv(HoverConfig(num_envs=16))
    obs = env.reset(3)
    rot = policy.obs_layout.slice("rotation_matrix")
    for _ in range(20):
        x = obs["policy"]
        action = policy(x)
        assert isinstance(action, torch.Tensor) and action.dtype == torch.float32
        assert (action - tp.reference(x)).abs().max().item() <= 1e-5
        # The layout names real slices: the rotation block is (noisily) orthonormal.
        r = x[:, rot].reshape(-1, 3, 3)
        assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(16, 3, 3), atol=0.02)
        obs = env.step(action)[0]


def test_dynamic_batch_and_input_kinds(exported: Path) -> None:
    policy = OnnxPolicy(exported, intra_op_threads=1)
    rng = np.random.default_rng(0)
    for n in (1, 257):
        x = rng.normal(size=(n, policy.obs_dim)).astype(np.float32)
        a = policy(x)
        assert isinstance(a, np.ndarray) and a.shape == (n, 4) and a.dtype == np.float32
        assert np.all(np.abs(a) <= 1.0)
        np.testing.assert_array_equal(policy(x.astype(np.float64)), a)
        a_t = policy(torch.from_numpy(x))
        assert isinstance(a_t, torch.Tensor) and torch.equal(a_t, torch.from_numpy(a))
    assert policy(np.zeros((0, policy.obs_dim), np.float32)).shape == (0, 4)


def test_onnx_policy_rejects_bad_input(exported: Path) -> None:
    policy = OnnxPolicy(exported)
    d = policy.obs_dim
    for bad in (np.zeros((2, d - 1), np.float32), np.zeros(d, np.float32), np.zeros((1, 2, d), np.float32)):
        with pytest.raises(ValueError, match=r"shape \(N, 146\)"):
            policy(bad)
    with pytest.raises(ValueError, match="floating point"):
        policy(np.zeros((2, d), np.int64))
    with pytest.raises(ValueError, match="floating point"):
        policy(torch.zeros(2, d, dtype=torch.int32))
    x = np.zeros((4, d), np.float32)
    x[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"NaN/Inf in row\(s\) \[2\]"):
        policy(x)
    with pytest.raises(ValueError, match="NaN/Inf"):
        policy(torch.full((1, d), float("inf")))
    with pytest.raises(TypeError):
        policy([[0.0] * d])  # type: ignore[arg-type]


def test_onnx_policy_rejects_bad_files(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPolicy(tmp_path / "missing.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(2000))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    plain = tmp_path / "plain.onnx"
    model = onnx.load(exported)
    del model.metadata_props[:]
    onnx.save(model, plain)
    for path in (garbage, truncated, plain):
        with pytest.raises(CheckpointError):
            OnnxPolicy(path)
        with pytest.raises(CheckpointError):
            read_metadata(path)
    with pytest.raises(CheckpointError, match="no 'sim2real' metadata"):
        OnnxPolicy(plain)


def test_parity_failure_writes_nothing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that differs from the trained policy by 1e-3 is refused and an existing file is left untouched."""
    out = tmp_path / "policy.onnx"
    out.write_bytes(b"previous export")
    forward = onnx_export.DeployedPolicy.forward
    monkeypatch.setattr(onnx_export.DeployedPolicy, "forward", lambda self, obs: forward(self, obs) + 1e-3)
    with pytest.raises(ExportError, match=r"parity failed: max \|onnxruntime - torch\| = 1\.0\d*e-03"):
        export_onnx(run_dir, out, parity_samples=64)
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.onnx"]  # no temp file left behind


def test_export_to_directory_overwrites_on_success(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "policy.onnx").write_bytes(b"old")
    path = export_onnx(run_dir / "checkpoint.pt", tmp_path, parity_samples=64, atol=1e-4)
    assert path == tmp_path / "policy.onnx"
    meta = OnnxPolicy(path).metadata
    assert meta.parity_samples == 64 and meta.parity_atol == 1e-4


def test_bad_arguments_and_output_locations(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="atol"):
        export_onnx(run_dir, tmp_path / "p.onnx", atol=-1.0)
    with pytest.raises(ValueError, match="parity_samples"):
        export_onnx(run_dir, tmp_path / "p.onnx", parity_samples=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(run_dir, tmp_path / "missing" / "p.onnx")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export_onnx(run_dir, tmp_path / "a_file" / "p.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_directory(run_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            export_onnx(run_dir, locked / "p.onnx")
    finally:
        locked.chmod(0o700)


def test_corrupt_or_mismatched_checkpoints(run_dir: Path, tmp_path: Path) -> None:
    good = (run_dir / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="not found"):
        export_onnx(tmp_path)  # a directory without checkpoint.pt
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.pt").write_bytes(os.urandom(4096))
    for name in ("truncated.pt", "garbage.pt"):
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            export_onnx(tmp_path / name)
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    ckpt["config"]["sac"]["actor_hidden"] = [32, 32]
    torch.save(ckpt, tmp_path / "other_net.pt")
    with pytest.raises(CheckpointError, match=r"(?s)actor tensors do not fit .*size mismatch for net.layers.0.weight"):
        export_onnx(tmp_path / "other_net.pt")
    ckpt["config"]["sac"]["actor_hidden"] = [64, 64]
    ckpt["config"]["env"]["action_history"] = 8  # obs width 50 instead of 146
    torch.save(ckpt, tmp_path / "other_obs.pt")
    with pytest.raises(CheckpointError, match="obs group 'policy' of width 50"):
        export_onnx(tmp_path / "other_obs.pt")
    assert not (tmp_path / "exported").exists()
