"""sim2real: train robot policies in batched simulators, export them (ONNX, C), run them on robots."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("sim2real")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
