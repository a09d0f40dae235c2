"""Small shared helpers: crash-safe file writes, checkpoint loading with clear errors, progress display."""

from __future__ import annotations

import contextlib
import os
import tempfile
import typing
from collections.abc import Iterator
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class CheckpointError(ValueError):
    """A checkpoint or exported file is missing, truncated, corrupt or from an incompatible run."""


def _atomic_write(path: Path, write: Any) -> None:
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
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    _atomic_write(Path(path), lambda f: f.write(data))


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` on the CPU; every failure becomes a :class:`CheckpointError`."""
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


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) dataclass from its ``asdict``/JSON form; lists become tuples where the field is one.

    Raises:
        ValueError: ``data`` names a setting the dataclass does not have.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)} for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if is_dataclass(hint) and isinstance(value, dict):
            value = dataclass_from_dict(hint, value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


@contextlib.contextmanager
def progress_bar(total: int, quiet: bool = False) -> Iterator[Any]:
    """A rich progress bar for env steps with live return, episode length, env-steps/s and updates/s."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Bar:
        def __init__(self, progress: Progress | None) -> None:
            self.progress, self.task = progress, None
            if progress is not None:
                self.task = progress.add_task("train", total=total, ret=float("nan"), length=float("nan"), sps=0.0, ups=0.0)

        def update(self, **kw: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, **kw)

    if quiet:
        yield _Bar(None)
        return
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("return {task.fields[ret]:7.1f}  len {task.fields[length]:5.0f}"),
        TextColumn("{task.fields[sps]:>7.0f} steps/s  {task.fields[ups]:>5.0f} upd/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, refresh_per_second=4) as progress:
        yield _Bar(progress)
