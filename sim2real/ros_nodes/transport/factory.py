"""``create_node``: a :class:`~sim2real.ros_nodes.transport.base.Node` on the selected backend.

Apart from :mod:`.base` so that the backends, which build on the base, are imported only by this factory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim2real.ros_nodes.transport.base import Node, select_backend


def create_node(
    name: str,
    namespace: str = "",
    argv: Sequence[str] | None = None,
    backend: str = "auto",
    **kwargs: Any,
) -> Node:
    """Create a node on the selected backend (see :func:`select_backend`).

    Args:
        name: Node name.
        namespace: Node namespace.
        argv: Program arguments (``sys.argv[1:]`` when ``None``), for ``--ros-args``.
        backend: ``auto``, ``rclpy`` or ``dds``.
        **kwargs: Backend options (``on_callback_error``; ``domain_id`` for dds).

    Returns:
        The node; use it as a context manager or call :meth:`Node.shutdown`.

    Raises:
        RuntimeError: If rclpy is asked for but missing.
        InvalidNameError: On an invalid name or namespace.
    """
    if select_backend(backend) == "rclpy":
        from sim2real.ros_nodes.transport.rclpy_backend import RclpyNode

        return RclpyNode(name, namespace, argv, **kwargs)
    from sim2real.ros_nodes.transport.dds import DdsNode

    return DdsNode(name, namespace, argv, **kwargs)
