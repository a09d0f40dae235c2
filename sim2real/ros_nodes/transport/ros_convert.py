"""Pure-Python mapping between this package's types and rclpy's, for the ``rclpy`` backend (no rclpy import here).

* messages: our :mod:`~sim2real.ros_nodes.messages` classes <-> the ROS Python message classes that ``rosidl``
  generates (``nav_msgs.msg.Odometry``), field by field and recursively, following ``rosidl_generator_py``'s
  conventions: ``float64``/``float32`` fields take ``float`` (not ``int``), unbounded numeric sequences are
  ``array.array`` (typecode ``d``, ``f``, ``i``...), fixed numeric arrays ``numpy.ndarray`` of the exact dtype,
  ``byte`` fields a 1-byte ``bytes``, strings ``str``, nested messages instances;
* QoS profiles and parameter types as the names of rclpy's enum members.
"""

from __future__ import annotations

import array
import functools
import importlib
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct
from cyclonedds.idl import types as idl

from sim2real.ros_nodes import messages
from sim2real.ros_nodes.transport.base import QoS

__all__ = ["from_ros", "import_ros_class", "param_type_name", "qos_profile_fields", "to_ros"]

# IDL scalar name -> (array.array typecode, numpy dtype); Python ``float`` is float64, ``int`` int64.
_NUMERIC = {
    "float64": ("d", np.float64), "float32": ("f", np.float32),
    "int8": ("b", np.int8), "uint8": ("B", np.uint8), "int16": ("h", np.int16), "uint16": ("H", np.uint16),
    "int32": ("i", np.int32), "uint32": ("I", np.uint32), "int64": ("q", np.int64), "uint64": ("Q", np.uint64),
}  # fmt: skip


@dataclass(frozen=True)
class FieldKind:
    """How one field is represented.

    Attributes:
        container: ``scalar``, ``array`` (fixed length) or ``sequence``.
        element: ``float64``, ``int32``..., ``byte``, ``bool``, ``string`` or ``struct``.
        struct: The message class when ``element == "struct"``.
        length: Array length.
    """

    container: str
    element: str
    struct: type[IdlStruct] | None = None
    length: int = 0


def _element(tp: Any) -> tuple[str, type[IdlStruct] | None]:
    if isinstance(tp, type) and issubclass(tp, IdlStruct):
        return "struct", tp
    if typing.get_origin(tp) is typing.Annotated:
        meta = typing.get_args(tp)[1]
        if isinstance(meta, str):
            return meta, None
    simple = {float: "float64", int: "int64", bool: "bool", str: "string"}
    if tp in simple:
        return simple[tp], None
    raise TypeError(f"unsupported IDL field type {tp!r}")


@functools.cache
def field_kinds(cls: type[IdlStruct]) -> tuple[tuple[str, FieldKind], ...]:
    """The fields of a message class, in declaration order, with their :class:`FieldKind`."""
    out = []
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        meta = typing.get_args(tp)[1] if typing.get_origin(tp) is typing.Annotated else None
        if isinstance(meta, idl.array):
            element, struct = _element(meta.subtype)
            out.append((name, FieldKind("array", element, struct, meta.length)))
        elif isinstance(meta, idl.sequence):
            element, struct = _element(meta.subtype)
            out.append((name, FieldKind("sequence", element, struct)))
        else:
            element, struct = _element(tp)
            out.append((name, FieldKind("scalar", element, struct)))
    return tuple(out)


@functools.cache
def import_ros_class(ros_name: str) -> type:
    """The rosidl-generated Python class of ``pkg/msg/Name`` (``from pkg.msg import Name``).

    Raises:
        ImportError: If the message package is not installed (the message names the Debian package).
    """
    pkg, kind, name = ros_name.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as e:
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        raise ImportError(
            f"ROS message {ros_name} is not available ({e}): install ros-{distro}-{pkg.replace('_', '-')} "
            "and source the ROS 2 setup file"
        ) from e


def _scalar_to_ros(element: str, value: Any) -> Any:
    if element in ("float64", "float32"):
        return float(value)
    if element == "byte":
        return bytes([int(value) & 0xFF])
    if element == "bool":
        return bool(value)
    if element == "string":
        return str(value)
    return int(value)


def _scalar_from_ros(element: str, value: Any) -> Any:
    if element in ("float64", "float32"):
        return float(value)
    if element == "byte":
        return value[0] if isinstance(value, (bytes, bytearray)) else int(value)
    if element == "bool":
        return bool(value)
    if element == "string":
        return str(value)
    return int(value)


def to_ros(msg: IdlStruct, resolve: Callable[[str], type] = import_ros_class) -> Any:
    """Convert one of our messages to the ROS Python message (recursively).

    Args:
        msg: An instance of a :data:`messages.MESSAGE_TYPES` class.
        resolve: ``pkg/msg/Name`` -> ROS class (default: import it).

    Returns:
        An instance of the ROS class, built with keyword arguments.
    """
    kwargs: dict[str, Any] = {}
    for name, kind in field_kinds(type(msg)):
        value = getattr(msg, name)
        if kind.element == "struct":
            kwargs[name] = to_ros(value, resolve) if kind.container == "scalar" else [to_ros(v, resolve) for v in value]
        elif kind.container == "scalar":
            kwargs[name] = _scalar_to_ros(kind.element, value)
        elif kind.element in _NUMERIC:
            code, dtype = _NUMERIC[kind.element]
            if kind.container == "array":
                kwargs[name] = np.asarray(value, dtype=dtype)
            else:
                kwargs[name] = array.array(code, [_scalar_to_ros(kind.element, v) for v in value])
        else:
            kwargs[name] = [_scalar_to_ros(kind.element, v) for v in value]
    return resolve(messages.ros_type_name(type(msg)))(**kwargs)


def from_ros(ros_msg: Any, cls: type[IdlStruct]) -> IdlStruct:
    """Convert a ROS Python message to our class ``cls`` (recursively; arrays become lists).

    Args:
        ros_msg: The ROS message (any object with the same attribute names).
        cls: Our message class.

    Returns:
        An instance of ``cls``.
    """
    kwargs: dict[str, Any] = {}
    for name, kind in field_kinds(cls):
        value = getattr(ros_msg, name)
        if kind.element == "struct":
            assert kind.struct is not None
            if kind.container == "scalar":
                kwargs[name] = from_ros(value, kind.struct)
            else:
                kwargs[name] = [from_ros(v, kind.struct) for v in value]
        elif kind.container == "scalar":
            kwargs[name] = _scalar_from_ros(kind.element, value)
        else:
            kwargs[name] = [_scalar_from_ros(kind.element, v) for v in value]
    return cls(**kwargs)


def qos_profile_fields(qos: QoS) -> dict[str, Any]:
    """The ``rclpy.qos.QoSProfile`` arguments of a profile, enum members by name.

    Returns:
        ``{"history": "KEEP_LAST", "depth": n, "reliability": "RELIABLE"|"BEST_EFFORT",
        "durability": "VOLATILE"|"TRANSIENT_LOCAL"}``.
    """
    return {
        "history": "KEEP_LAST",
        "depth": qos.depth,
        "reliability": qos.reliability.upper(),
        "durability": qos.durability.upper(),
    }


_PARAM_TYPE_NAMES = {
    "bool": "BOOL", "int": "INTEGER", "float": "DOUBLE", "str": "STRING",
    "list[bool]": "BOOL_ARRAY", "list[int]": "INTEGER_ARRAY", "list[float]": "DOUBLE_ARRAY", "list[str]": "STRING_ARRAY",
}  # fmt: skip


def param_type_name(param_type: str) -> str:
    """The ``rclpy.Parameter.Type`` member name of a parameter type (``list[float]`` -> ``DOUBLE_ARRAY``).

    ``rcl_interfaces.msg.ParameterType`` spells the same with a ``PARAMETER_`` prefix.
    """
    return _PARAM_TYPE_NAMES[param_type]
