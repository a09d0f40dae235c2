"""Shared pytest setup: lets the tests run from a plain checkout as well as from an installed package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

if importlib.util.find_spec("sim2real") is None:
    sys.path.insert(0, str(REPO_ROOT))
