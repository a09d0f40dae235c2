"""ROS 2 names: validation of node names, namespaces and topic names, resolution and remapping.

The rules are those of ROS 2 (design article "Topic and Service name mapping to DDS", ``rcl`` name validation):

* a name is made of tokens separated by ``/``; a token holds letters, digits and underscores and does not start
  with a digit; there is no empty token (no ``//``) and no trailing ``/``;
* ``/a/b`` is absolute, ``a/b`` is relative to the node's namespace, ``~`` or ``~/a`` is private (relative to
  ``<namespace>/<node name>``);
* a node name is a single token, a namespace an absolute name (``""`` and ``"/"`` are the root).
"""

from __future__ import annotations

import re

__all__ = [
    "InvalidNameError",
    "apply_remaps",
    "fully_qualified_node_name",
    "normalize_namespace",
    "resolve_topic_name",
    "validate_node_name",
]

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_TOPIC_LENGTH = 255 - len("rt")
"""Longest fully-qualified topic name: the DDS topic name ``rt<name>`` must fit in 255 characters."""


class InvalidNameError(ValueError):
    """An invalid ROS node name, namespace or topic name (a ``ValueError``)."""


def _check_tokens(name: str, tokens: list[str], what: str) -> None:
    for token in tokens:
        if not token:
            raise InvalidNameError(f"invalid {what} {name!r}: empty token ('//' or a trailing '/')")
        if not _TOKEN.match(token):
            reason = "starts with a digit" if token[0].isdigit() else "may only hold letters, digits and '_'"
            raise InvalidNameError(f"invalid {what} {name!r}: token {token!r} {reason}")


def validate_node_name(name: str) -> str:
    """Check a node name (one token, e.g. ``policy``).

    Args:
        name: The node name.

    Returns:
        The name, unchanged.

    Raises:
        InvalidNameError: If it is empty, contains ``/`` or other characters than letters, digits and ``_``, or starts
            with a digit.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"invalid node name {name!r}: must be a non-empty string")
    if "/" in name or "~" in name:
        raise InvalidNameError(f"invalid node name {name!r}: a node name is one token (put the rest in the namespace)")
    _check_tokens(name, [name], "node name")
    return name


def normalize_namespace(namespace: str) -> str:
    """Validate a namespace and return it absolute, without trailing ``/`` (``""`` and ``/`` give ``/``).

    Args:
        namespace: ``""``, ``"/"``, ``"cf1"`` (made absolute, as rcl does) or ``"/robots/cf1"``.

    Returns:
        The absolute namespace: ``/`` or ``/robots/cf1``.

    Raises:
        InvalidNameError: On an invalid token or ``//``.
    """
    if not isinstance(namespace, str):
        raise InvalidNameError(f"invalid namespace {namespace!r}: must be a string")
    if namespace in ("", "/"):
        return "/"
    body = namespace[1:] if namespace.startswith("/") else namespace
    if body.endswith("/"):
        raise InvalidNameError(f"invalid namespace {namespace!r}: must not end with '/'")
    _check_tokens(namespace, body.split("/"), "namespace")
    return "/" + body


def fully_qualified_node_name(name: str, namespace: str) -> str:
    """``/cf1/policy`` for node ``policy`` in namespace ``/cf1``; ``/policy`` in the root namespace."""
    ns = normalize_namespace(namespace)
    return f"{ns.rstrip('/')}/{validate_node_name(name)}"


def resolve_topic_name(name: str, node_name: str, namespace: str) -> str:
    """Expand a topic name to its fully-qualified form.

    Args:
        name: ``odom`` (relative), ``/odom`` (absolute), ``~/state`` or ``~`` (private to the node).
        node_name: The node's name (for ``~``).
        namespace: The node's namespace.

    Returns:
        The fully-qualified name: ``odom`` in ``/cf1`` -> ``/cf1/odom``; ``~/state`` for node ``policy`` in
        ``/cf1`` -> ``/cf1/policy/state``.

    Raises:
        InvalidNameError: If the name is empty, has an invalid token, ``//``, a trailing ``/``, a ``~`` anywhere but at the
            start, or is too long for DDS.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"invalid topic name {name!r}: must be a non-empty string")
    ns = normalize_namespace(namespace)
    if name.startswith("~"):
        if name not in ("~",) and not name.startswith("~/"):
            raise InvalidNameError(f"invalid topic name {name!r}: '~' must be followed by '/' or be the whole name")
        base = fully_qualified_node_name(node_name, ns)
        rest = name[2:]
        if name == "~":
            return base
        if not rest:
            raise InvalidNameError(f"invalid topic name {name!r}: must not end with '/'")
        full = f"{base}/{rest}"
    elif name.startswith("/"):
        full = name
    else:
        full = f"{ns.rstrip('/')}/{name}"
    if "~" in full[1:] or "{" in full:
        raise InvalidNameError(f"invalid topic name {name!r}: '~' only at the start; substitutions are not supported")
    if full == "/" or full.endswith("/"):
        raise InvalidNameError(f"invalid topic name {name!r}: must not end with '/'")
    _check_tokens(name, full[1:].split("/"), "topic name")
    if len(full) > MAX_TOPIC_LENGTH:
        raise InvalidNameError(f"invalid topic name {name!r}: {len(full)} characters, at most {MAX_TOPIC_LENGTH}")
    return full


def apply_remaps(fq_name: str, remaps: dict[str, str], node_name: str, namespace: str) -> str:
    """Apply ``from:=to`` remapping rules to a fully-qualified topic name (first matching rule wins, as in rcl).

    Both sides of a rule are resolved like topic names of the node (``odom:=/mocap/odom`` in ``/cf1`` maps
    ``/cf1/odom`` to ``/mocap/odom``).

    Args:
        fq_name: The fully-qualified name (from :func:`resolve_topic_name`).
        remaps: Rules ``{from: to}``, in command-line order; ``__node``/``__ns`` entries are ignored here.
        node_name: The node's name.
        namespace: The node's namespace.

    Returns:
        The remapped fully-qualified name, or ``fq_name`` if no rule matches.

    Raises:
        InvalidNameError: If a rule's side is not a valid name.
    """
    for src, dst in remaps.items():
        if src.startswith("__"):
            continue
        if resolve_topic_name(src, node_name, namespace) == fq_name:
            return resolve_topic_name(dst, node_name, namespace)
    return fq_name
