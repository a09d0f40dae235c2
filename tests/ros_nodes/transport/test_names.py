"""ROS names and ``--ros-args`` (no DDS): resolution and validation rules, parameter overrides and files."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cyclonedds", reason="the [ros2] extra (cyclonedds) is not installed")

from sim2real.ros_nodes.transport import InvalidNameError, RosArgsError, parse_ros_args, resolve_topic_name  # noqa: E402


def test_topic_name_resolution() -> None:
    assert resolve_topic_name("odom", "policy", "/cf1") == "/cf1/odom"
    assert resolve_topic_name("odom", "policy", "") == "/odom"
    assert resolve_topic_name("cf1", "policy", "robots") == "/robots/cf1"
    assert resolve_topic_name("/mocap/odom", "policy", "/cf1") == "/mocap/odom"
    assert resolve_topic_name("~/state", "policy", "/cf1") == "/cf1/policy/state"
    assert resolve_topic_name("~/state", "policy", "/") == "/policy/state"
    assert resolve_topic_name("~", "policy", "/cf1") == "/cf1/policy"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("a//b", "empty token"), ("odom/", "end with '/'"), ("1odom", "starts with a digit"), ("cf-1/odom", "letters"),
     ("~x", "'~' must be followed"), ("a/~/b", "'~' only"), ("", "non-empty"), ("x" * 300, "characters")],
)  # fmt: skip
def test_invalid_topic_names(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError, match=fragment):
        resolve_topic_name(name, "node", "/ns")


# ------------------------------------------------------------------------------------------------ --ros-args
def test_parse_ros_args_values_and_remaining() -> None:
    args = parse_ros_args(
        ["--rate", "5", "--ros-args", "-p", "gain:=1.5", "-p", "n:=3", "-p", "on:=true", "-p", "names:=[a, b]",
         "-p", "v:=[1.0, 2]", "-p", "s:=hello", "-p", "empty:=", "--log-level", "DEBUG", "--", "extra"],
        "policy",
    )  # fmt: skip
    assert args.params == {"gain": 1.5, "n": 3, "on": True, "names": ["a", "b"], "v": [1.0, 2], "s": "hello",
                           "empty": ""}  # fmt: skip
    assert args.remaining == ["--rate", "5", "extra"] and args.log_level == "debug"
    with pytest.raises(RosArgsError, match="unknown ROS argument"):
        parse_ros_args(["--ros-args", "--bogus", "x"])
    with pytest.raises(RosArgsError, match="NAME:=VALUE"):
        parse_ros_args(["--ros-args", "-p", "gain=1"])
    with pytest.raises(RosArgsError, match="needs a value"):
        parse_ros_args(["--ros-args", "-p"])


def test_params_file_sections_and_order(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text(
        "/**:\n  ros__parameters:\n    rate_hz: 50.0\n    limits: {max_rpm: 20000, min_rpm: 1000}\n"
        "/cf1/policy:\n  ros__parameters:\n    rate_hz: 100.0\n"
        "policy:\n  ros__parameters:\n    root_only: true\n"
        "/*/policy:\n  ros__parameters:\n    any_ns: 1\n"
        "robots:\n  cf1:\n    policy:\n      ros__parameters:\n        nested: x\n"
    )
    p = parse_ros_args(["--ros-args", "--params-file", str(f)], "policy", "/cf1").params
    assert p == {"rate_hz": 100.0, "limits.max_rpm": 20000, "limits.min_rpm": 1000, "any_ns": 1}
    p = parse_ros_args(["--ros-args", "--params-file", str(f)], "policy", "/").params
    assert p["root_only"] is True and p["rate_hz"] == 50.0 and "any_ns" not in p
    p = parse_ros_args(["--ros-args", "--params-file", str(f), "-r", "__ns:=/robots/cf1"], "policy").params
    assert p["nested"] == "x"
    # later sources win, whatever their kind
    p = parse_ros_args(["--ros-args", "-p", "rate_hz:=1.0", "--params-file", str(f)], "other").params
    assert p["rate_hz"] == 50.0
    p = parse_ros_args(["--ros-args", "--params-file", str(f), "-p", "rate_hz:=1.0"], "other").params
    assert p["rate_hz"] == 1.0
    (tmp_path / "bad.yaml").write_text("rate_hz: 3\n")
    with pytest.raises(RosArgsError, match="ros__parameters"):
        parse_ros_args(["--ros-args", "--params-file", str(tmp_path / "bad.yaml")], "x")
