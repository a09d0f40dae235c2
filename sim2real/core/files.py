"""Crash-safe file writes and checkpoint loading with clear errors.

Every checkpoint, export and log that sim2real writes goes through :func:`write_bytes_atomic` (temp file in the
same directory, ``fsync``, rename): a reader sees the old file or the new one, never half of one. torch is
imported only by the two functions that need it, so the robot side can use this module without it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class CheckpointError(ValueError):
    """A checkpoint or exported file is missing, truncated, corrupt or from an incompatible run."""


def _atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"output directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"output directory {path.parent} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` that never leaves a half-written file behind."""
    import torch

    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    _atomic_write(Path(path), lambda f: f.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def save_figure_atomic(fig: Any, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG atomically, then close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` on the CPU; every failure becomes a :class:`CheckpointError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on garbage (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict (got {type(obj).__name__})")
    return obj
