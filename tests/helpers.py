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
