"""Helpers shared by the command handlers: locating a run's policy file, printing a summary table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_policy(source: str) -> Path:
    """A ``policy.onnx`` path for a run directory (exporting it if needed) or an ``.onnx`` file."""
    path = Path(source)
    if path.is_dir():
        onnx_path = path / "exported" / "policy.onnx"
        if not onnx_path.exists():
            from sim2real.export.onnx import export_onnx

            onnx_path = export_onnx(path)
        return onnx_path
    if not path.exists():
        raise FileNotFoundError(f"no such run directory or policy file: {path}")
    if path.suffix != ".onnx":
        raise ValueError(f"expected a run directory or a .onnx file, got {path}")
    return path


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """A two-column rich table of ``summary``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    Console().print(table)
