"""Shared pytest setup: lets the tests run from a plain checkout as well as from an installed package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("sim2real") is None:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks on a 2-core machine: one intra-op thread is faster and steadier (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
