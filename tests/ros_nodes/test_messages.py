"""ROS 2 wire format: our Cyclone DDS message types against an independent ROS 2 CDR serializer (rosbags)."""

from __future__ import annotations

import dataclasses
import random
import typing

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")
rosbags_typesys = pytest.importorskip("rosbags.typesys", reason="rosbags is not installed")

import cyclonedds.idl.types as t  # noqa: E402
from cyclonedds.idl import IdlStruct  # noqa: E402
from helpers import random_idl_value  # noqa: E402

from sim2real.ros_nodes import messages as m  # noqa: E402

STORE = rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)


def _to_rosbags(msg: IdlStruct) -> typing.Any:
    """The same message as a rosbags object (numeric arrays/sequences as numpy arrays of the ROS dtype)."""
    cls = STORE.types[m.ros_type_name(type(msg))]
    kwargs = {}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        meta = typing.get_args(f.type)[1] if typing.get_origin(f.type) is typing.Annotated else None
        if isinstance(value, IdlStruct):
            value = _to_rosbags(value)
        elif isinstance(meta, (t.array, t.sequence)):
            sub = meta.subtype
            if isinstance(sub, type) and issubclass(sub, IdlStruct):
                value = [_to_rosbags(v) for v in value]
            elif sub is not str:
                dtype = np.float32 if typing.get_args(sub)[1:] == ("float32",) else np.float64
                value = np.array(value, dtype=dtype)
        kwargs[f.name] = value
    return cls(**kwargs)


@pytest.mark.parametrize("name", sorted(m.MESSAGE_TYPES))
def test_bytes_equal_rosbags_cdr(name: str) -> None:
    cls = m.MESSAGE_TYPES[name]
    rng = random.Random(name)
    for _ in range(20):
        msg = random_idl_value(cls, rng)
        ours = msg.serialize()
        theirs = bytes(STORE.serialize_cdr(_to_rosbags(msg), name))
        assert ours == theirs, f"{name}: {ours.hex()} != {theirs.hex()}"
        assert ours[:4] == b"\x00\x01\x00\x00"  # XCDR1 little-endian encapsulation: what both RMWs expect
        assert cls.deserialize(ours) == msg
        back = STORE.deserialize_cdr(ours, name)  # rosbags reads what we write
        assert bytes(STORE.serialize_cdr(back, name)) == ours


def test_type_names_follow_the_ros2_dds_mangling() -> None:
    assert m.dds_type_name(m.JointState) == "sensor_msgs::msg::dds_::JointState_"
    assert m.Odometry.__idl_typename__ == "nav_msgs.msg.dds_.Odometry_"
    with pytest.raises(KeyError):
        m.ros_type_name(int)  # type: ignore[arg-type]


def test_known_layouts() -> None:
    """Byte counts and one full frame from the notes (checked against rosbags there as well)."""
    header = m.Header(m.Time(1, 2), "base")
    assert header.serialize().hex() == "000100000100000002000000050000006261736500"
    assert len(m.Twist().serialize()) == 4 + 48
    assert len(m.Float32MultiArray(data=[0.0] * 12).serialize()) == 64  # empty layout
    assert m.Time.from_seconds(-1.7) == m.Time(-2, 300_000_000)
    assert m.Quaternion().w == 1.0
