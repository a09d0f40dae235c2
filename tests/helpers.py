"""Assertions and fixtures shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def assert_tree_equal(a: Any, b: Any, path: str = "") -> None:
    """Bit-exact equality of nested dicts/lists/tensors/scalars (state dicts, optimizer state)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        assert torch.equal(a, b), f"{path}: max |diff| {float((a.double() - b.double()).abs().max())}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_tree_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def require_tools(*names: str) -> None:
    """Skip the calling test when a command-line tool is missing; fail instead under CI (``CI=true``).

    CI installs the ARM toolchain and QEMU (``make mcu-deps``), so a missing tool there is a setup bug, not
    a reason to skip.
    """
    import os
    import shutil

    import pytest

    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    msg = f"{', '.join(missing)} not installed (run `make mcu-deps`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must provide the MCU tools: {msg}")
    pytest.skip(msg)


class FakeDevice:
    """A scripted stand-in for the firmware on a local TCP port (a ``socket://`` URL for :class:`SerialLink`).

    A thread accepts one client, decodes its frames and sends back whatever ``handler(frame)`` returns (the
    bytes of zero or more frames; ``None`` = stay silent). Every decoded request is kept in ``requests``.
    Use as a context manager: the thread and sockets are closed on exit.
    """

    def __init__(self, handler) -> None:
        import socket
        import threading

        self.handler = handler
        self.requests: list = []
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(1)
        self._srv.settimeout(5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self._srv.getsockname()[1]}"

    def _run(self) -> None:
        from sim2real.mcu.serial_link import FrameDecoder

        try:
            conn, _ = self._srv.accept()
        except OSError:
            return
        decoder = FrameDecoder()
        with conn:
            conn.settimeout(0.02)
            while not self._stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for frame in decoder.feed(data):
                    self.requests.append(frame)
                    reply = self.handler(frame)
                    if reply:
                        conn.sendall(reply)

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._srv.close()
        self._thread.join(2)


def info_payload(obs_dim: int = 146, act_dim: int = 4, version: int = 2, history: tuple[int, int] | None = (18, 128),
                 board: bytes = b"fake", model_hash: bytes = b"0" * 16) -> bytes:
    """An INFO reply payload as the firmware lays it out (``history=None``: a version-1 device's, without it)."""
    import struct

    p = struct.pack("<HHIBBH", obs_dim, act_dim, 1_000_000, 0, version, 1024)
    p += bytes([len(board)]) + board + bytes([len(model_hash)]) + model_hash
    return p if history is None else p + struct.pack("<HH", *history)


REPO = Path(__file__).resolve().parents[1]
"""Root of the repository."""
TRAINED_POLICY = REPO / "tests" / "data" / "quadrotor_hover.onnx"
"""A trained quadrotor-hover policy (``sim2real train quadrotor-hover --seed 0``, its best validated checkpoint)."""
PRETRAINED = REPO / "tests" / "data" / "quadrotor_hover.pt"
"""The checkpoint TRAINED_POLICY was exported from (its critics are where finetuning starts)."""


def tiny_cfg(log_dir: Path, **overrides: Any) -> Any:
    """A quadrotor-hover TrainConfig for an 800-step run (dotted ``overrides`` on top)."""
    from sim2real.core.config import apply_overrides
    from sim2real.tasks.quadrotor_hover import train_defaults

    base = {
        "num_envs": 8,
        "total_env_steps": 800,
        "warmup_env_steps": 200,
        "sac.batch_size": 32,
        "log_interval": 400,
        "checkpoint_interval": 10_000_000,
        "log_dir": str(log_dir),
        # independent of the tuned defaults: one update per vector step, constant learning rates (a schedule
        # over total_env_steps makes a 400-step run differ from the first half of an 800-step run), no validation
        "updates_per_step": 1.0,
        "sac.lr_decay_to": 1.0,
        "eval_interval": 0,
    }
    return apply_overrides(train_defaults(), {**base, **overrides})


# rosbags packs ``byte`` as a signed char, we as an octet: the same bytes for 0..127 (diagnostic levels are 0..3).
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "byte": (0, 127), "uint8": (0, 255)}


def random_idl_value(tp: Any, rng: Any) -> Any:
    """A random value of an IDL field type (struct, annotated scalar, array, sequence, str, float, bool)."""
    import dataclasses
    import typing

    import cyclonedds.idl.types as t
    import numpy as np
    from cyclonedds.idl import IdlStruct

    if isinstance(tp, type) and issubclass(tp, IdlStruct):
        return tp(**{f.name: random_idl_value(f.type, rng) for f in dataclasses.fields(tp)})
    if typing.get_origin(tp) is typing.Annotated:
        base, meta = typing.get_args(tp)
        if isinstance(meta, t.array):
            return [random_idl_value(meta.subtype, rng) for _ in range(meta.length)]
        if isinstance(meta, t.sequence):
            return [random_idl_value(meta.subtype, rng) for _ in range(rng.randint(0, 5))]
        if meta in _INT_RANGES:
            return rng.randint(*_INT_RANGES[meta])
        if meta == "float32":
            return float(np.float32(rng.uniform(-1e3, 1e3)))
        raise AssertionError(f"unhandled annotation {meta!r}")
    if tp is float:
        return rng.uniform(-1e6, 1e6)
    if tp is str:
        return "".join(rng.choice("abcxyz_/ 0123") for _ in range(rng.randint(0, 12)))
    if tp is bool:
        return rng.random() < 0.5
    raise AssertionError(f"unhandled type {tp!r}")


# ----------------------------------------------------------------------------------------------- SAC
OBS_DIMS = {"policy": 6, "critic": 9}
ACT_DIM = 3


def make_agent(seed: int = 0, **cfg_overrides) -> Any:
    """A small SAC agent on OBS_DIMS/ACT_DIM."""
    from sim2real.policies.sac import SAC, SACConfig

    torch.manual_seed(seed)
    cfg = SACConfig(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=64, **cfg_overrides)
    return SAC(OBS_DIMS, ACT_DIM, cfg)


def make_batch(b: int = 64, seed: int = 0, terminated: float | None = None) -> dict[str, torch.Tensor]:
    """A random replay batch for :func:`make_agent`'s agent."""
    g = torch.Generator().manual_seed(seed)
    batch = {
        "obs_actor": torch.randn(b, OBS_DIMS["policy"], generator=g),
        "obs_critic": torch.randn(b, OBS_DIMS["critic"], generator=g),
        "action": 2 * torch.rand(b, ACT_DIM, generator=g) - 1,
        "reward": 1.0 + torch.randn(b, generator=g),
        "next_obs_actor": torch.randn(b, OBS_DIMS["policy"], generator=g),
        "next_obs_critic": torch.randn(b, OBS_DIMS["critic"], generator=g),
        "terminated": (torch.rand(b, generator=g) < 0.2).float(),
    }
    if terminated is not None:
        batch["terminated"] = torch.full((b,), terminated)
    return batch


def normalised(agent: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with the agent's observation normalisers applied."""
    out = dict(batch)
    for k in ("obs_actor", "next_obs_actor"):
        out[k] = agent.actor_norm(batch[k])
    for k in ("obs_critic", "next_obs_critic"):
        out[k] = agent.critic_norm(batch[k])
    return out


def small_humanoid_policy(log_dir: Path) -> Path:
    """A barely trained ``mujoco-humanoid-walk`` policy (200 env steps, 32 x 32 networks), exported: a real policy
    file whose metadata drives the legged deploy node; it is not expected to stand."""
    from sim2real.core.config import apply_overrides
    from sim2real.export.onnx import export_onnx
    from sim2real.policies.runner import Runner
    from sim2real.tasks.humanoid_walk import train_defaults

    cfg = apply_overrides(train_defaults(), {
        "num_envs": 2, "total_env_steps": 200, "warmup_env_steps": 100, "sac.batch_size": 32, "log_interval": 100,
        "sac.actor_hidden": [32, 32], "sac.critic_hidden": [32, 32], "env.num_threads": 1, "log_dir": str(log_dir)})  # fmt: skip
    runner = Runner(cfg, quiet=True)
    runner.train()
    return export_onnx(runner.run_dir)
