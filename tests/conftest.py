"""Shared pytest setup: lets the tests run from a plain checkout as well as from an installed package."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("sim2real") is None:
    sys.path.insert(0, str(REPO_ROOT))

# ROS 2 tests talk over Cyclone DDS: keep their traffic on this machine (set before any participant exists),
# so two test runs on one network cannot hear each other.
os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks on a 2-core machine: one intra-op thread is faster and steadier (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
