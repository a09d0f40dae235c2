"""Assertions shared by the tests."""

from __future__ import annotations

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
        from sim2real.firmware_export.serial_link import FrameDecoder

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
