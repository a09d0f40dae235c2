"""Read ROS 2 XML launch files without ROS: the subset that both Humble and Jazzy accept.

Tags: ``<launch>``, ``<arg name default description>`` (required without ``default``), ``<let name value>``,
``<group scoped>``, ``<push_ros_namespace namespace>`` (or ``push-ros-namespace``), ``<node pkg exec name namespace
output args ros_args respawn respawn_delay cwd launch-prefix>`` with ``<param name value>`` (nested ``<param>`` give
dotted names), ``<param from="file.yaml"/>``, ``<remap from to>`` and ``<env name value>``; ``if``/``unless`` on every
element. Substitutions: see :mod:`~sim2real.ros_nodes.launch.substitutions`. Anything else (tag, attribute, substitution)
is an error naming it and the file and line: a launch file that ``sim2real launch`` accepts means the same under
``ros2 launch``.

Example::

    desc = load_launch("launch/quadrotor_sim.launch.xml", {"policy": "runs/x/exported/policy.onnx"})
    for node in desc.nodes:
        print(node.label, node.ros_argv())
"""

from __future__ import annotations

import os
import re
import shlex
import xml.parsers.expat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim2real.ros_nodes.launch.package import PACKAGE, PackageLocation, locate_package
from sim2real.ros_nodes.launch.substitutions import (
    LaunchError,
    SubstitutionContext,
    evaluate,
    evaluate_condition,
    parse_bool,
)

__all__ = [
    "LaunchArgument",
    "LaunchDescription",
    "LaunchError",
    "NodeSpec",
    "ParamFile",
    "ParamValue",
    "XmlElement",
    "declared_arguments",
    "find_launch_file",
    "load_launch",
    "parse_launch_arguments",
    "read_xml",
]

ROS_TAGS = {
    "include", "executable", "set_env", "append_env", "unset_env", "log", "timer", "shutdown", "node_container",
    "load_composable_node", "composable_node", "set_parameter", "set_parameters_from_file", "set_remap",
    "set_use_sim_time", "ros_timer", "set_ros_log_dir", "for", "lifecycle_node",
}  # fmt: skip
"""ROS 2 launch tags outside the supported subset (they get a dedicated message)."""

OUTPUTS = ("screen", "log", "both")
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ------------------------------------------------------------------------------------------------ XML
@dataclass
class XmlElement:
    """An XML element with the line where it starts (for error messages)."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[XmlElement] = field(default_factory=list)


def read_xml(path: Path) -> XmlElement:
    """Parse an XML file into :class:`XmlElement` objects (comments and processing instructions dropped).

    Raises:
        LaunchError: If the file cannot be read or is not well-formed XML.
    """
    parser = xml.parsers.expat.ParserCreate()
    stack: list[XmlElement] = []
    roots: list[XmlElement] = []

    def start(tag: str, attrib: dict[str, str]) -> None:
        element = XmlElement(tag, dict(attrib), parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if data.strip() and stack:
            raise LaunchError(f"unexpected text {data.strip()!r} inside <{stack[-1].tag}>", f"{path}:{parser.CurrentLineNumber}")

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, text
    try:
        parser.Parse(path.read_bytes(), True)
    except OSError as e:
        raise LaunchError(f"cannot read launch file: {e}") from e
    except xml.parsers.expat.ExpatError as e:
        raise LaunchError(f"not well-formed XML: {xml.parsers.expat.ErrorString(e.code)}", f"{path}:{e.lineno}") from e
    return roots[0]


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class LaunchArgument:
    """A declared ``<arg>``: ``default`` is ``None`` for a required argument."""

    name: str
    default: str | None
    description: str
    line: int


@dataclass(frozen=True)
class ParamFile:
    """``<param from="file.yaml"/>``: an absolute path (``--params-file``)."""

    path: str


@dataclass(frozen=True)
class ParamValue:
    """``<param name value>``: ``value`` is typed as YAML (as ROS does), ``text`` is what ``-p name:=`` passes."""

    name: str
    value: Any
    text: str


@dataclass
class NodeSpec:
    """One ``<node>`` after substitution.

    Attributes:
        package: ``pkg``.
        executable: ``exec``.
        name: ``__node`` (``None`` keeps the name in the node's code).
        namespace: Absolute ``__ns`` (``None``: none given or pushed).
        params: Parameter files and values in the order they appear (later ones win).
        remaps: ``(from, to)`` rules in order.
        env: Extra environment variables of the process.
        output: ``screen`` (prefixed lines on the terminal), ``log`` (stdout to a log file, stderr to both) or
            ``both``.
        args: Program arguments before ``--ros-args`` (``args``).
        ros_args: Extra ROS arguments (``ros_args``).
        respawn: Restart the node when it exits.
        respawn_delay: Seconds before a restart.
        cwd: Working directory (``None``: the launcher's).
        launch_prefix: Words put before the command (``launch-prefix``, e.g. ``nice -n 5``).
        where: ``file:line`` of the ``<node>`` element.
    """

    package: str
    executable: str
    name: str | None = None
    namespace: str | None = None
    params: list[ParamFile | ParamValue] = field(default_factory=list)
    remaps: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    output: str = "log"
    args: list[str] = field(default_factory=list)
    ros_args: list[str] = field(default_factory=list)
    respawn: bool = False
    respawn_delay: float = 0.0
    cwd: str | None = None
    launch_prefix: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def fqn(self) -> str:
        """``/cf1/policy`` (the executable's name stands in for a missing node name)."""
        return f"{(self.namespace or '').rstrip('/')}/{self.name or self.executable}"

    def ros_argv(self) -> list[str]:
        """The node's arguments, in ``ros2 launch``'s order.

        ``ARGS [--ros-args ROS_ARGS] --ros-args -r __node:=NAME -r __ns:=/NS (--params-file F | -p k:=v)... -r a:=b...``
        """
        argv = [*self.args]
        if self.ros_args:
            argv += ["--ros-args", *self.ros_args]
        argv.append("--ros-args")
        if self.name is not None:
            argv += ["-r", f"__node:={self.name}"]
        if self.namespace is not None:
            argv += ["-r", f"__ns:={self.namespace}"]
        for p in self.params:
            argv += ["--params-file", p.path] if isinstance(p, ParamFile) else ["-p", f"{p.name}:={p.text}"]
        for src, dst in self.remaps:
            argv += ["-r", f"{src}:={dst}"]
        return argv


@dataclass
class LaunchDescription:
    """A resolved launch file.

    Attributes:
        path: The launch file (absolute).
        arguments: Every declared ``<arg>``.
        values: The arguments' values at the end of the file (top-level scope).
        given: The names given on the command line.
        nodes: The nodes to start, in file order.
        packages: The packages ``$(find-pkg-share)``/``$(find-pkg-prefix)`` looked up, with where they were found.
    """

    path: Path
    arguments: list[LaunchArgument]
    values: dict[str, str]
    given: set[str]
    nodes: list[NodeSpec]
    packages: dict[str, PackageLocation] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ arguments
def parse_launch_arguments(items: Sequence[str]) -> dict[str, str]:
    """``["policy:=/x.onnx", "namespace:=cf2"]`` -> ``{"policy": "/x.onnx", "namespace": "cf2"}``.

    Raises:
        LaunchError: If an item is not ``NAME:=VALUE``.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError(f"launch arguments are NAME:=VALUE, got {item!r}")
        out[name] = value
    return out


def _walk_args(element: XmlElement, out: list[LaunchArgument]) -> None:
    for child in element.children:
        if child.tag == "arg" and "name" in child.attrib:
            out.append(LaunchArgument(child.attrib["name"], child.attrib.get("default"),
                                      child.attrib.get("description", ""), child.line))
        _walk_args(child, out)


def declared_arguments(path: str | Path) -> list[LaunchArgument]:
    """Every ``<arg>`` of a launch file (in conditional groups too), without evaluating anything."""
    out: list[LaunchArgument] = []
    _walk_args(read_xml(Path(path)), out)
    return out


def find_launch_file(name: str | Path, environ: Mapping[str, str] | None = None) -> Path:
    """A launch file by path, or by file name in ``$(find-pkg-share sim2real)/launch`` (as ``ros2 launch`` does).

    Raises:
        LaunchError: If neither exists.
    """
    path = Path(name)
    if path.is_file():
        return path.resolve()
    if len(path.parts) == 1:
        share = locate_package(PACKAGE, environ).share / "launch"
        if (share / path).is_file():
            return (share / path).resolve()
        available = ", ".join(sorted(p.name for p in share.glob("*.xml"))) if share.is_dir() else "none"
        raise LaunchError(f"no launch file {str(name)!r} here or in {share} (available: {available})")
    raise LaunchError(f"no such launch file: {name}")


# ------------------------------------------------------------------------------------------------ evaluation
_ACTION = {"if", "unless"}
_ALLOWED = {
    "launch": {"version"},
    "arg": {"name", "default", "description"} | _ACTION,
    "let": {"name", "value"} | _ACTION,
    "group": {"scoped"} | _ACTION,
    "push_ros_namespace": {"namespace"} | _ACTION,
    "push-ros-namespace": {"namespace"} | _ACTION,
    "node": {"pkg", "exec", "name", "namespace", "output", "args", "ros_args", "respawn", "respawn_delay", "cwd",
             "launch-prefix"} | _ACTION,
    "param": {"name", "value", "from"},
    "remap": {"from", "to"},
    "env": {"name", "value"},
}  # fmt: skip
"""Supported tags and their attributes (``ros2 launch`` rejects attributes it does not read, so do we)."""
_ACTIONS = {"arg", "let", "group", "push_ros_namespace", "push-ros-namespace", "node"}
_CHILDREN = {"document": {"launch"}, "launch": _ACTIONS, "group": _ACTIONS, "node": {"param", "remap", "env"},
             "param": {"param"}}  # fmt: skip
"""Which tags each element may contain."""


@dataclass
class _Scope:
    """What a scoped ``<group>`` restores when it ends: launch configurations and the pushed namespace."""

    configurations: dict[str, str]
    namespace: str | None


class _Loader:
    """Walks the element tree in document order, as ``ros2 launch`` executes the actions, collecting the nodes."""

    def __init__(self, path: Path, values: dict[str, str], declared: list[LaunchArgument], environ: Mapping[str, str]):
        self.path, self.declared, self.environ = path, declared, environ
        self.nodes: list[NodeSpec] = []
        self.packages: dict[str, PackageLocation] = {}
        self.ctx = SubstitutionContext(path, dict(values), environ, self._share, self._prefix)

    def _share(self, package: str) -> str:
        if package not in self.packages:
            self.packages[package] = locate_package(package, self.environ)
        return str(self.packages[package].share)

    def _prefix(self, package: str) -> str:
        self._share(package)
        return str(self.packages[package].prefix)

    def where(self, element: XmlElement) -> str:
        return f"{self.path}:{element.line}"

    def sub(self, element: XmlElement, attr: str, default: str | None = None, required: bool = True) -> str | None:
        """The evaluated attribute (``default`` when absent; an error when absent, required and without default)."""
        if attr not in element.attrib:
            if default is None and required:
                raise LaunchError(f"<{element.tag}> needs a {attr!r} attribute", self.where(element))
            return default
        return evaluate(element.attrib[attr], self.ctx, self.where(element))

    def check(self, element: XmlElement, parent: str) -> bool:
        """Reject unknown or misplaced tags and unknown attributes; return whether the element's condition holds."""
        allowed = _ALLOWED.get(element.tag)
        where = self.where(element)
        if allowed is None:
            if element.tag in ROS_TAGS:
                raise LaunchError(f"<{element.tag}> is not supported by sim2real launch (supported: "
                                  f"{', '.join(sorted(_ALLOWED))}); run this file with ros2 launch", where)
            raise LaunchError(f"unknown tag <{element.tag}> (supported: {', '.join(sorted(_ALLOWED))})", where)
        if element.tag not in _CHILDREN.get(parent, set()):
            raise LaunchError(f"<{element.tag}> is not allowed inside <{parent}>", where)
        extra = sorted(set(element.attrib) - allowed)
        if extra:
            raise LaunchError(f"<{element.tag}>: unknown attribute(s) {', '.join(extra)} (allowed: "
                              f"{', '.join(sorted(allowed))})", where)
        return evaluate_condition(element.attrib, self.ctx, where)

    def run(self, root: XmlElement) -> None:
        self.check(root, "document")
        self.actions(root, _Scope(self.ctx.configurations, None))

    def actions(self, parent: XmlElement, scope: _Scope) -> None:
        for el in parent.children:
            if not self.check(el, parent.tag):
                continue
            if el.tag == "arg":
                self.arg(el)
            elif el.tag == "let":
                self.ctx.configurations[self.sub(el, "name") or ""] = self.sub(el, "value") or ""
            elif el.tag == "group":
                scoped = parse_bool(self.sub(el, "scoped", "true") or "", "scoped", self.where(el))
                saved = self.ctx.configurations
                inner = _Scope(dict(saved), scope.namespace) if scoped else scope
                self.ctx.configurations = inner.configurations
                self.actions(el, inner)
                if scoped:
                    self.ctx.configurations = saved
            elif el.tag in ("push_ros_namespace", "push-ros-namespace"):
                pushed = _prefix_ns(scope.namespace, self.sub(el, "namespace") or "")
                scope.namespace = _validate_ns(pushed or "/", self.where(el))
            else:
                self.nodes.append(self.node(el, scope))

    def arg(self, el: XmlElement) -> None:
        name = self.sub(el, "name") or ""
        if name in self.ctx.configurations:
            return
        if "default" not in el.attrib:
            missing = [a for a in self.declared if a.default is None and a.name not in self.ctx.configurations]
            text = "; ".join(f"{a.name} ({a.description})" if a.description else a.name for a in missing)
            raise LaunchError(f"missing required launch argument(s): {text}. Pass them as NAME:=VALUE",
                              self.where(el))  # fmt: skip
        self.ctx.configurations[name] = self.sub(el, "default") or ""

    def node(self, el: XmlElement, scope: _Scope) -> NodeSpec:
        where = self.where(el)
        spec = NodeSpec(self.sub(el, "pkg") or "", self.sub(el, "exec") or "", where=where)
        spec.name = self.sub(el, "name", required=False)
        if spec.name is not None and not _TOKEN.match(spec.name):
            raise LaunchError(f"invalid node name {spec.name!r}: one token of letters, digits and '_'", where)
        ns = _prefix_ns(scope.namespace, self.sub(el, "namespace", required=False))
        spec.namespace = None if ns is None else _validate_ns(ns, where)
        spec.output = self.sub(el, "output", "log") or "log"
        if spec.output not in OUTPUTS:
            raise LaunchError(f"output={spec.output!r} is not supported (use one of {', '.join(OUTPUTS)})", where)
        spec.args = _split(self.sub(el, "args", ""), where)
        spec.ros_args = _split(self.sub(el, "ros_args", ""), where)
        spec.launch_prefix = _split(self.sub(el, "launch-prefix", ""), where)
        spec.respawn = parse_bool(self.sub(el, "respawn", "false") or "", "respawn", where)
        delay = self.sub(el, "respawn_delay", "0") or "0"
        try:
            spec.respawn_delay = float(delay)
        except ValueError:
            raise LaunchError(f"respawn_delay must be a number of seconds, got {delay!r}", where) from None
        if not spec.respawn_delay >= 0:
            raise LaunchError(f"respawn_delay must be >= 0, got {delay!r}", where)
        spec.cwd = self.sub(el, "cwd", required=False)
        for child in el.children:
            self.check(child, "node")
            if child.tag == "param":
                spec.params.extend(self.param(child, ""))
            elif child.tag == "remap":
                spec.remaps.append((self.sub(child, "from") or "", self.sub(child, "to") or ""))
            else:
                spec.env[self.sub(child, "name") or ""] = self.sub(child, "value") or ""
        return spec

    def param(self, el: XmlElement, prefix: str) -> list[ParamFile | ParamValue]:
        where = self.where(el)
        if "from" in el.attrib:
            if prefix or "name" in el.attrib or "value" in el.attrib or el.children:
                raise LaunchError("<param from=...> takes no name, value or nested <param> and cannot be nested", where)
            path = os.path.abspath(self.sub(el, "from") or "")
            if not os.path.isfile(path):
                raise LaunchError(f"parameter file {path} does not exist", where)
            return [ParamFile(path)]
        name = prefix + (self.sub(el, "name") or "")
        if "value" in el.attrib:
            if el.children:
                raise LaunchError(f"<param name={name!r}>: 'value' and nested <param> are mutually exclusive", where)
            return [_typed_param(name, self.sub(el, "value") or "", where)]
        if not el.children:
            raise LaunchError(f"<param name={name!r}> needs a 'value', nested <param> elements or 'from'", where)
        out: list[ParamFile | ParamValue] = []
        for child in el.children:
            self.check(child, "param")
            out.extend(self.param(child, name + "."))
        return out


def _prefix_ns(base: str | None, ns: str | None) -> str | None:
    """``ros2 launch``'s namespace composition: an absolute ``ns`` wins, a relative one goes under ``base``."""
    if ns is None or ns == "":
        return base if ns is None else (base or "/")
    if ns.startswith("/") or not base:
        return ns if ns.startswith("/") else "/" + ns
    return f"{base.rstrip('/')}/{ns}"


def _validate_ns(ns: str, where: str) -> str:
    ns = ns if ns.startswith("/") else "/" + ns
    if ns != "/" and (ns.endswith("/") or not all(_TOKEN.match(t) for t in ns[1:].split("/"))):
        raise LaunchError(f"invalid namespace {ns!r}: tokens of letters, digits and '_' separated by '/'", where)
    return ns


def _split(text: str | None, where: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as e:
        raise LaunchError(f"cannot split {text!r} into words: {e}", where) from None


def _typed_param(name: str, text: str, where: str) -> ParamValue:
    """Type a parameter value as YAML, as ROS does: ``1`` int, ``1.0`` float, ``true`` bool, ``[1, 2]`` list.

    ``text`` stays what the node will parse back into ``value`` (``-p name:=text``); values YAML cannot type as a
    parameter (``null``, dates, invalid YAML) are kept as strings and quoted.
    """
    try:
        value, same = yaml.safe_load(text), True
    except yaml.YAMLError:
        value, same = text, False
    if value is None:
        value, same = text, text == ""
    if isinstance(value, dict):
        raise LaunchError(f"<param name={name!r}>: value {text!r} is a mapping; use nested <param> elements", where)
    if not isinstance(value, (bool, int, float, str, list)):
        value, same = text, False
    if not same:
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip().removesuffix("...").strip()
    return ParamValue(name, value, text)


def load_launch(path: str | Path, arguments: Mapping[str, str] | None = None, *,
                environ: Mapping[str, str] | None = None) -> LaunchDescription:  # fmt: skip
    """Read a launch file and evaluate it with the given arguments.

    Args:
        path: The ``.launch.xml`` file.
        arguments: ``{name: value}`` launch arguments (``name:=value`` on the command line).
        environ: Environment for ``$(env)`` and the package lookup (default ``os.environ``).

    Returns:
        The :class:`LaunchDescription`; nothing is started.

    Raises:
        LaunchError: On an undeclared or missing required argument, an unknown tag, attribute or substitution, a bad
            condition, an invalid name or namespace, a missing parameter file... (with the file and line).
    """
    path = Path(path).resolve()
    root = read_xml(path)
    declared: list[LaunchArgument] = []
    _walk_args(root, declared)
    given = dict(arguments or {})
    names = {a.name for a in declared}
    unknown = sorted(set(given) - names)
    if unknown:
        listing = "; ".join(f"{a.name}" + (f" (default {a.default!r})" if a.default is not None else " (required)")
                            for a in declared) or "none"  # fmt: skip
        raise LaunchError(f"unknown launch argument(s) {', '.join(unknown)}; {path.name} declares: {listing}")
    loader = _Loader(path, given, declared, os.environ if environ is None else environ)
    loader.run(root)
    values = {a.name: loader.ctx.configurations[a.name] for a in declared if a.name in loader.ctx.configurations}
    return LaunchDescription(path, declared, values, set(given), loader.nodes, loader.packages)
