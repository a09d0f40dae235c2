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
