"""Node parameters: typed declarations with validation, and ROS command-line overrides (``--ros-args``).

A parameter's type is the type of its default (``bool``, ``int``, ``float``, ``str`` or a list of one of those);
``min``/``max`` bound numbers (each element for a list), ``choices`` restrict values, ``read_only`` forbids
changes after the declaration. :class:`ParameterStore` holds declared parameters for a backend without a ROS
parameter service (the ``dds`` backend); the ``rclpy`` backend uses the same :class:`ParameterSpec` checks.

:func:`parse_ros_args` reads the arguments ``ros2 run``/``ros2 launch`` give a node::

    --ros-args -p name:=value --params-file file.yaml -r from:=to -r __node:=name -r __ns:=/ns --log-level debug

Values after ``:=`` are YAML (``1`` int, ``1.0`` float, ``[1.0, 2.0]`` list, ``true`` bool). Parameter files have
the ROS layout ``<node pattern>: {ros__parameters: {...}}`` where the pattern is ``/**`` (every node), a node name
(``policy`` = ``/policy``), a fully-qualified name (``/cf1/policy``) or one with ``*``/``**`` wildcards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PARAM_TYPES",
    "ParameterCallback",
    "ParameterError",
    "ParameterSpec",
    "ParameterStore",
    "RosArgs",
    "RosArgsError",
    "SetResult",
    "infer_param_type",
    "load_params_file",
    "parse_ros_args",
]

PARAM_TYPES = ("bool", "int", "float", "str", "list[bool]", "list[int]", "list[float]", "list[str]")
"""Parameter types, named as Python spells them (ROS: bool, integer, double, string and their arrays)."""

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_SCALARS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


class ParameterError(ValueError):
    """A parameter declaration, value or override that is not valid (wrong type, out of range, not a choice...)."""


class RosArgsError(ValueError):
    """A malformed ``--ros-args`` command line."""


@dataclass(frozen=True)
class SetResult:
    """The outcome of setting one parameter (``rcl_interfaces/SetParametersResult``); truthy when successful."""

    successful: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.successful


ParameterCallback = Callable[[dict[str, Any]], "SetResult | bool | None"]
"""``cb({name: new_value, ...})`` before parameters change; returns a :class:`SetResult` (``False`` rejects)."""


def infer_param_type(value: Any) -> str:
    """The parameter type of a default value: ``0.5`` -> ``float``, ``["a"]`` -> ``list[str]``.

    Raises:
        ParameterError: For ``None``, an empty list (pass ``param_type``) or an unsupported type.
    """
    if isinstance(value, (bool, int, float, str)):
        return type(value).__name__
    if isinstance(value, (list, tuple)):
        if not value:
            raise ParameterError("an empty list default does not tell the element type: pass param_type='list[...]'")
        kinds = {infer_param_type(v) for v in value}
        if kinds <= {"int", "float"} and "float" in kinds:
            return "list[float]"
        if len(kinds) == 1 and not next(iter(kinds)).startswith("list"):
            return f"list[{kinds.pop()}]"
        raise ParameterError(f"a list parameter holds one scalar type, got {sorted(kinds)}")
    raise ParameterError(f"unsupported parameter type {type(value).__name__}: use one of {', '.join(PARAM_TYPES)}")


def _coerce_scalar(kind: str, value: Any, where: str) -> Any:
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # an integer literal (`-p gain:=1`) is a fine float
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if kind in ("bool", "str") and isinstance(value, _SCALARS[kind]):
        return value
    raise ParameterError(f"{where}: expected {kind}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class ParameterSpec:
    """A declared parameter: its type, default, constraints and description.

    Attributes:
        name: Dotted name (``limits.max_rpm``).
        type: One of :data:`PARAM_TYPES`.
        default: The default value (already of ``type``).
        description: Shown by ``ros2 param describe`` on the rclpy backend.
        min: Inclusive lower bound for numbers (every element of a numeric list).
        max: Inclusive upper bound.
        choices: Allowed values (every element of a list).
        read_only: Reject changes after the declaration (overrides at declaration still apply, as in ROS).
    """

    name: str
    type: str
    default: Any
    description: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    read_only: bool = False

    @classmethod
    def make(
        cls,
        name: str,
        default: Any,
        description: str = "",
        *,
        min: float | None = None,
        max: float | None = None,
        choices: Iterable[Any] | None = None,
        read_only: bool = False,
        param_type: str | None = None,
    ) -> ParameterSpec:
        """Build and check a spec: the name, the type (from ``param_type`` or the default), bounds and default.

        Raises:
            ParameterError: On a bad name or type, bounds on a non-number, ``min > max``, choices of the wrong type
                or a default that breaks the constraints.
        """
        if not isinstance(name, str) or not _PARAM_NAME.match(name):
            raise ParameterError(f"invalid parameter name {name!r}: dotted tokens of letters, digits and '_'")
        kind = param_type if param_type is not None else infer_param_type(default)
        if kind not in PARAM_TYPES:
            raise ParameterError(f"parameter {name!r}: unknown type {kind!r}, use one of {', '.join(PARAM_TYPES)}")
        element = kind[5:-1] if kind.startswith("list[") else kind
        if (min is not None or max is not None) and element not in ("int", "float"):
            raise ParameterError(f"parameter {name!r}: min/max apply to numbers, not {kind}")
        if min is not None and max is not None and min > max:
            raise ParameterError(f"parameter {name!r}: min {min} > max {max}")
        where = f"parameter {name!r} choices"
        ch = None if choices is None else tuple(_coerce_scalar(element, c, where) for c in choices)
        spec = cls(name, kind, None, description, min, max, ch, read_only)
        return cls(name, kind, spec.coerce(default, "default"), description, min, max, ch, read_only)

    @property
    def element_type(self) -> str:
        """``float`` for ``list[float]`` and for ``float``."""
        return self.type[5:-1] if self.type.startswith("list[") else self.type

    def coerce(self, value: Any, origin: str = "value") -> Any:
        """Check a value against the spec and return it in canonical form (ints become floats for floats).

        Args:
            value: The candidate value.
            origin: Where it comes from, for the message (``default``, ``override``, ``value``).

        Returns:
            The value (a ``list`` for list types).

        Raises:
            ParameterError: With the parameter name, the rule broken and the value.
        """
        where = f"parameter {self.name!r} ({origin})"
        if self.type.startswith("list["):
            if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, Iterable)):
                raise ParameterError(f"{where}: expected {self.type}, got {type(value).__name__} {value!r}")
            items = [_coerce_scalar(self.element_type, v, where) for v in value]
        else:
            items = [_coerce_scalar(self.type, value, where)]
        for v in items:
            if self.min is not None and not v >= self.min:
                raise ParameterError(f"{where}: {v!r} is below the minimum {self.min}")
            if self.max is not None and not v <= self.max:
                raise ParameterError(f"{where}: {v!r} is above the maximum {self.max}")
            if self.element_type == "float" and (self.min is not None or self.max is not None) and math.isnan(v):
                raise ParameterError(f"{where}: NaN is outside [{self.min}, {self.max}]")
            if self.choices is not None and v not in self.choices:
                raise ParameterError(f"{where}: {v!r} is not one of {list(self.choices)}")
        return items if self.type.startswith("list[") else items[0]


def _callback_verdict(result: Any, cb: Callable[..., Any]) -> SetResult:
    if result is None or result is True:
        return SetResult(True)
    if result is False:
        return SetResult(False, f"rejected by {getattr(cb, '__qualname__', repr(cb))}")
    if isinstance(result, SetResult):
        return result
    raise TypeError(f"parameter callback {cb!r} returned {result!r}: return a SetResult, a bool or None")


def run_parameter_callbacks(callbacks: Iterable[ParameterCallback], values: dict[str, Any]) -> SetResult:
    """Run set-parameter callbacks in order; the first rejection wins (later callbacks are not called)."""
    for cb in callbacks:
        verdict = _callback_verdict(cb(dict(values)), cb)
        if not verdict.successful:
            return verdict
    return SetResult(True)


class ParameterStore:
    """Declared parameters with their values, overrides and set-callbacks (the ``dds`` backend's parameters).

    Args:
        overrides: Values from the command line / parameter files, applied when a parameter is declared.
    """

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.specs: dict[str, ParameterSpec] = {}
        self.values: dict[str, Any] = {}
        self.callbacks: list[ParameterCallback] = []

    def declare(self, spec: ParameterSpec) -> Any:
        """Declare a parameter: take its override (if any) or its default, run the callbacks, store it.

        Returns:
            The value in effect.

        Raises:
            ParameterError: If already declared, if the override is invalid or a callback rejects the value.
        """
        if spec.name in self.specs:
            raise ParameterError(f"parameter {spec.name!r} is already declared")
        value = spec.coerce(self.overrides[spec.name], "override") if spec.name in self.overrides else spec.default
        verdict = run_parameter_callbacks(self.callbacks, {spec.name: value})
        if not verdict.successful:
            raise ParameterError(f"parameter {spec.name!r}: {verdict.reason}")
        self.specs[spec.name] = spec
        self.values[spec.name] = value
        return value

    def get(self, name: str) -> Any:
        """The current value.

        Raises:
            ParameterError: If ``name`` is not declared.
        """
        if name not in self.values:
            raise ParameterError(f"parameter {name!r} is not declared (declared: {sorted(self.values)})")
        value = self.values[name]
        return list(value) if isinstance(value, list) else value

    def set(self, values: dict[str, Any]) -> list[SetResult]:
        """Set parameters one by one (as rclpy's ``set_parameters``): validate, ask the callbacks, store."""
        results = []
        for name, value in values.items():
            spec = self.specs.get(name)
            if spec is None:
                results.append(SetResult(False, f"parameter {name!r} is not declared"))
                continue
            if spec.read_only:
                results.append(SetResult(False, f"parameter {name!r} is read-only"))
                continue
            try:
                value = spec.coerce(value)
            except ParameterError as e:
                results.append(SetResult(False, str(e)))
                continue
            verdict = run_parameter_callbacks(self.callbacks, {name: value})
            if verdict.successful:
                self.values[name] = value
            results.append(verdict)
        return results


# --------------------------------------------------------------------------------------------- --ros-args
@dataclass
class RosArgs:
    """What ``--ros-args`` says to one node.

    Attributes:
        params: Parameter overrides for this node, in effect order (later ``-p``/files win).
        remaps: Topic remapping rules ``{from: to}`` (``__node``/``__ns`` are in ``node_name``/``namespace``).
        node_name: ``-r __node:=name`` (``None``: keep the name given in code).
        namespace: ``-r __ns:=/ns``.
        log_level: ``--log-level LEVEL`` (or ``--log-level <node>:=LEVEL`` for this node), lower-case.
        remaining: The arguments outside ``--ros-args ... [--]`` (the program's own).
    """

    params: dict[str, Any] = field(default_factory=dict)
    remaps: dict[str, str] = field(default_factory=dict)
    node_name: str | None = None
    namespace: str | None = None
    log_level: str | None = None
    remaining: list[str] = field(default_factory=list)


def _flatten(prefix: str, tree: dict[str, Any], out: dict[str, Any]) -> None:
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            _flatten(name, value, out)
        else:
            out[name] = value


def _node_pattern_regex(pattern: str) -> re.Pattern[str]:
    """rclcpp/rclpy's matching of parameter-file node keys: a leading ``/`` is implied, ``/**`` = any depth."""
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("/**", i):
            out, i = out + r"(/\w+)*", i + 3
        elif pattern.startswith("/*", i):
            out, i = out + r"/\w+", i + 2
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def load_params_file(path: str | Path, node_fqn: str | None) -> dict[str, Any]:
    """Read a ROS 2 parameter file and return the parameters that apply to one node.

    Args:
        path: YAML file ``{<node pattern>: {ros__parameters: {...}}}`` (patterns may also be nested:
            ``{cf1: {policy: {ros__parameters: ...}}}``).
        node_fqn: The node's fully-qualified name (``/cf1/policy``); ``None`` keeps only the ``/**`` sections.

    Returns:
        Flat ``{dotted.name: value}``, sections applied in file order.

    Raises:
        RosArgsError: If the file cannot be read or has no ``ros__parameters`` section.
    """
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RosArgsError(f"cannot read parameter file {path}: {e}") from e
    sections: list[tuple[str, dict[str, Any]]] = []

    def walk(prefix: str, tree: Any) -> None:
        if not isinstance(tree, dict):
            return
        for key, value in tree.items():
            if key == "ros__parameters":
                sections.append((prefix or "/", value if isinstance(value, dict) else {}))
            else:
                walk(f"{prefix}/{str(key).strip('/')}", value)

    walk("", data)
    if not sections:
        raise RosArgsError(f"parameter file {path}: no '<node>: ros__parameters:' section")
    out: dict[str, Any] = {}
    for pattern, params in sections:
        target = node_fqn if node_fqn is not None else "/\0"  # "/\0" only matches "/**"
        if pattern == "/**" or _node_pattern_regex(pattern).match(target):
            _flatten("", params, out)
    return out


def _split_assignment(arg: str, flag: str) -> tuple[str, str]:
    name, sep, value = arg.partition(":=")
    if not sep or not name:
        raise RosArgsError(f"{flag} expects NAME:=VALUE, got {arg!r}")
    return name, value


def _yaml_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RosArgsError(f"-p value {text!r} is not valid YAML: {e}") from e
    return "" if value is None else value


_FLAGS_WITHOUT_VALUE = {
    "--enable-rosout-logs", "--disable-rosout-logs", "--enable-stdout-logs", "--disable-stdout-logs",
    "--enable-external-lib-logs", "--disable-external-lib-logs",
}  # fmt: skip
_FLAGS_WITH_IGNORED_VALUE = {"-e", "--enclave", "--log-config-file", "--log-file-name"}


def parse_ros_args(argv: Sequence[str] | None, node_name: str | None = None, namespace: str = "") -> RosArgs:
    """Parse the ROS arguments a node is started with (as ``ros2 run``/``ros2 launch`` pass them).

    Args:
        argv: The program arguments without the program name (``sys.argv[1:]``); only ``--ros-args`` sections
            (ended by ``--`` or the end) are ROS's, the rest is returned in ``remaining``.
        node_name: The node's name in code: selects node-targeted rules (``policy:__ns:=/cf1``) and, with the final
            name and namespace, the parameter-file sections.
        namespace: The node's namespace in code.

    Returns:
        The :class:`RosArgs` for that node.

    Raises:
        RosArgsError: On an unknown ``--ros-args`` flag, a missing value or an unreadable parameter file.
    """
    out = RosArgs()
    sources: list[tuple[str, Any]] = []  # ("p", (name, value)) or ("file", path), in order
    args = list(argv or [])
    i, in_ros = 0, False
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":
            in_ros = True
        elif not in_ros:
            out.remaining.append(arg)
        elif arg == "--":
            in_ros = False
        elif arg in _FLAGS_WITHOUT_VALUE:
            pass
        else:
            if i + 1 >= len(args):
                raise RosArgsError(f"--ros-args: {arg} needs a value")
            value = args[i + 1]
            i += 1
            if arg in ("-p", "--param"):
                name, text = _split_assignment(value, arg)
                sources.append(("p", (name, _yaml_value(text))))
            elif arg == "--params-file":
                sources.append(("file", value))
            elif arg in ("-r", "--remap"):
                src, dst = _split_assignment(value, arg)
                target, sep, rule = src.rpartition(":")
                if sep:  # node-targeted rule: "policy:odom:=/x" applies to node "policy" only
                    src = rule if target == node_name else ""
                if not src:
                    pass
                elif src in ("__node", "__name"):
                    out.node_name = dst
                elif src == "__ns":
                    out.namespace = dst
                else:
                    out.remaps[src] = dst
            elif arg == "--log-level":
                target, sep, level = value.rpartition(":=")
                if not sep or target == node_name:
                    out.log_level = level.lower()
            elif arg not in _FLAGS_WITH_IGNORED_VALUE:
                raise RosArgsError(f"unknown ROS argument {arg!r} (supported: -p, --params-file, -r, --log-level)")
        i += 1
    fqn = None
    final_name = out.node_name or node_name
    if final_name is not None:
        ns = (out.namespace if out.namespace is not None else namespace) or "/"
        ns = ns if ns.startswith("/") else "/" + ns
        fqn = f"{ns.rstrip('/')}/{final_name}"
    for kind, item in sources:
        if kind == "p":
            out.params[item[0]] = item[1]
        else:
            out.params.update(load_params_file(item, fqn))
    return out
