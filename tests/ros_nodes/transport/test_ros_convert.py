"""The rclpy backend's rclpy-free parts: message conversion, QoS and parameter-type mapping.

rclpy and the ROS message packages cannot be installed here, so the ROS Python message classes are stood in for
by classes built from rosbags' independent ROS 2 message definitions, with setters as strict as the ones
``rosidl_generator_py`` generates (``float64`` takes a float, numeric ``T[]`` an ``array.array`` of the right
typecode or a sequence it converts, ``T[N]`` a numpy array of the dtype and size, ``byte`` a 1-byte ``bytes``).
"""

from __future__ import annotations

import array
import functools
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")
rosbags_typesys = pytest.importorskip("rosbags.typesys", reason="rosbags is not installed")

from helpers import random_idl_value  # noqa: E402

from sim2real.ros_nodes import messages as m  # noqa: E402
from sim2real.ros_nodes.transport import DEFAULT, LATCHED, SENSOR_DATA  # noqa: E402
from sim2real.ros_nodes.transport.ros_convert import (  # noqa: E402
    from_ros,
    import_ros_class,
    param_type_name,
    qos_profile_fields,
    to_ros,
)

STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)
BASE, NAME, ARRAY, SEQUENCE = 1, 2, 3, 4  # rosbags Nodetype values
_NUMERIC = {"float64": ("d", np.float64, float), "float32": ("f", np.float32, float), "int32": ("i", np.int32, int),
            "uint32": ("I", np.uint32, int), "uint8": ("B", np.uint8, int), "int64": ("q", np.int64, int)}  # fmt: skip


def _check_scalar(base: str, value: Any, where: str) -> None:
    if base in ("float64", "float32"):
        assert isinstance(value, float), f"{where}: rosidl wants a float, got {value!r}"
    elif base == "byte":
        assert isinstance(value, bytes) and len(value) == 1, f"{where}: rosidl wants 1-byte bytes, got {value!r}"
    elif base == "string":
        assert isinstance(value, str), where
    elif base == "bool":
        assert isinstance(value, bool), where
    else:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: rosidl wants an int, got {value!r}"


def _checked(desc: tuple[Any, Any], value: Any, where: str) -> Any:
    """Validate and store a value the way a rosidl-generated setter does."""
    kind, rest = desc
    if kind == BASE:
        _check_scalar(rest[0], value, where)
        return value
    if kind == NAME:
        assert isinstance(value, fake_ros_class(rest)), f"{where}: wants a {rest}, got {type(value).__name__}"
        return value
    (sub_kind, sub), length = rest
    numeric = sub_kind == BASE and sub[0] in _NUMERIC
    if kind == ARRAY and numeric:
        code, dtype, _ = _NUMERIC[sub[0]]
        if isinstance(value, np.ndarray):
            assert value.dtype == dtype and value.size == length, f"{where}: ndarray of {dtype} x {length}"
            return value
        assert isinstance(value, Sequence) and len(value) == length, where
        return np.array(value, dtype=dtype)
    if kind == SEQUENCE and numeric:
        code, _, pytype = _NUMERIC[sub[0]]
        if isinstance(value, array.array):
            assert value.typecode == code, f"{where}: array.array typecode {value.typecode} != {code}"
            return value
        assert isinstance(value, Sequence) and not isinstance(value, str), where
        assert all(isinstance(v, pytype) for v in value), where
        return array.array(code, value)
    assert isinstance(value, Sequence) and not isinstance(value, str), where
    for v in value:
        _checked((sub_kind, sub), v, where)
    if kind == ARRAY:
        assert len(value) == length, where
    return list(value)


@functools.cache
def fake_ros_class(ros_name: str) -> type:
    """A stand-in for the rosidl Python class of ``ros_name`` (keyword constructor, strict setters)."""
    _, fields = STORE.fielddefs[ros_name]
    names = [f for f, _ in fields]

    def init(self: Any, **kwargs: Any) -> None:
        assert set(kwargs) <= set(names), f"{ros_name}: unknown fields {set(kwargs) - set(names)}"
        assert set(kwargs) == set(names), f"{ros_name}: the converter left out {set(names) - set(kwargs)}"
        for f in names:
            setattr(self, f, kwargs[f])

    def prop(field: str, desc: tuple[Any, Any]) -> property:
        def get(self: Any) -> Any:
            return getattr(self, "_" + field)

        def set_(self: Any, value: Any) -> None:
            setattr(self, "_" + field, _checked(desc, value, f"{ros_name}.{field}"))

        return property(get, set_)

    attrs: dict[str, Any] = {"__slots__": tuple("_" + f for f in names), "__init__": init}
    attrs.update({f: prop(f, desc) for f, desc in fields})
    return type(ros_name.split("/")[-1], (), attrs)


@pytest.mark.parametrize("name", sorted(m.MESSAGE_TYPES))
def test_message_conversion_roundtrip(name: str) -> None:
    cls = m.MESSAGE_TYPES[name]
    rng = random.Random(f"convert {name}")
    for _ in range(10):
        msg = random_idl_value(cls, rng)
        ros = to_ros(msg, fake_ros_class)
        assert type(ros) is fake_ros_class(name)
        back = from_ros(ros, cls)
        assert back == msg and type(back) is cls


def test_conversion_representations() -> None:
    msg = m.Odometry(m.Header(m.Time(1, 2), "w"), "b")
    msg.pose.pose.position = m.Point(1, 2, 3)  # ints in float fields: rosidl would reject them unconverted
    ros = to_ros(msg, fake_ros_class)
    assert isinstance(ros.pose.pose.position.x, float) and ros.pose.covariance.dtype == np.float64
    js = to_ros(m.JointState(m.Header(), ["a"], [1, 2], [], [0.5]), fake_ros_class)
    assert js.position == array.array("d", [1.0, 2.0]) and js.name == ["a"]
    status = to_ros(m.DiagnosticStatus(level=2, name="motor"), fake_ros_class)
    assert status.level == b"\x02"
    assert from_ros(status, m.DiagnosticStatus).level == 2
    f32 = from_ros(to_ros(m.Float32MultiArray.vector([0.5, 1.5]), fake_ros_class), m.Float32MultiArray)
    assert f32.data == [0.5, 1.5] and isinstance(f32.data, list)


def test_import_ros_class_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    with pytest.raises(ImportError, match="install ros-jazzy-nav-msgs"):
        import_ros_class("nav_msgs/msg/NoSuchThing")


def test_qos_and_parameter_type_mapping() -> None:
    assert qos_profile_fields(SENSOR_DATA) == {
        "history": "KEEP_LAST", "depth": 5, "reliability": "BEST_EFFORT", "durability": "VOLATILE"
    }  # fmt: skip
    assert qos_profile_fields(DEFAULT)["reliability"] == "RELIABLE"
    assert qos_profile_fields(LATCHED) == {
        "history": "KEEP_LAST", "depth": 1, "reliability": "RELIABLE", "durability": "TRANSIENT_LOCAL"
    }  # fmt: skip
    assert [param_type_name(t) for t in ("bool", "int", "float", "str", "list[float]", "list[str]")] == [
        "BOOL", "INTEGER", "DOUBLE", "STRING", "DOUBLE_ARRAY", "STRING_ARRAY"
    ]  # fmt: skip
