"""The rich progress bar of long jobs (training): live return, episode length, env steps/s and updates/s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


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
            if self.progress is not None and self.task is not None:
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
