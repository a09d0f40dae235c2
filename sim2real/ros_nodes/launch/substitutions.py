"""Substitutions and conditions of ROS 2 XML launch files: ``$(var x)``, ``$(env NAME default)``, ``if``/``unless``.

Supported (valid on Humble and Jazzy): ``$(var NAME)``, ``$(env NAME [DEFAULT])``, ``$(find-pkg-share PKG)``,
``$(find-pkg-prefix PKG)``, ``$(dirname)``, ``$(filename)``, ``$(anon NAME)``, ``$(not X)``, ``$(and X Y)``,
``$(or X Y)``. Substitutions nest (``$(find-pkg-share $(var pkg))``); an argument holding spaces is quoted with
``'...'`` or ``"..."``. Any other ``$(name ...)`` is an error naming it and the file/line, as is an unterminated one.

A condition (``if="..."``/``unless="..."``) is the text after substitution: ``true``/``1`` or ``false``/``0``
(any case); everything else is an error, as in ROS 2 launch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "LaunchError",
    "Substitution",
    "SubstitutionContext",
    "evaluate",
    "evaluate_condition",
    "parse_bool",
    "parse_substitutions",
]

SUPPORTED = ("var", "env", "find-pkg-share", "find-pkg-prefix", "dirname", "filename", "anon", "not", "and", "or")
"""The substitutions this module performs."""

ROS_ONLY = (
    "eval", "command", "exec-in-pkg", "find-exec", "if", "equals", "not-equals", "all", "any", "file-content",
    "launch-log-dir", "log-dir", "path-join", "parameter", "find-launchfile", "for-var", "index", "string-join",
)  # fmt: skip
"""Substitutions that some ROS 2 release knows but ``sim2real launch`` does not perform (a dedicated message)."""


class LaunchError(ValueError):
    """A launch file that cannot be read, resolved or run; ``where`` is ``file:line`` when known."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where


@dataclass(frozen=True)
class Substitution:
    """One ``$(name arg ...)``; each argument is a sequence of literal strings and nested substitutions."""

    name: str
    args: tuple[tuple[str | Substitution, ...], ...]


Text = tuple["str | Substitution", ...]
"""A parsed attribute value: literal pieces and substitutions, concatenated when evaluated."""


@dataclass
class SubstitutionContext:
    """What substitutions read while a launch file is evaluated.

    Attributes:
        file: The launch file (``$(filename)``, ``$(dirname)``).
        configurations: Launch configurations (arguments and ``<let>``) visible here (``$(var)``).
        environ: The environment (``$(env)``).
        find_share: ``package -> share directory`` (``$(find-pkg-share)``).
        find_prefix: ``package -> install prefix`` (``$(find-pkg-prefix)``).
        anon: Anonymous names made so far: one ``$(anon x)`` value per name and launch.
    """

    file: Path
    configurations: dict[str, str]
    environ: Mapping[str, str]
    find_share: Callable[[str], str]
    find_prefix: Callable[[str], str]
    anon: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ parsing
class _Parser:
    """Recursive-descent reader of ``text $(name arg "quoted arg" $(nested)) text``."""

    def __init__(self, text: str, where: str | None) -> None:
        self.text, self.where, self.pos = text, where, 0

    def error(self, message: str) -> LaunchError:
        return LaunchError(f"{message} in {self.text!r}", self.where)

    def _parse_parts(self, stop: Callable[[str], bool]) -> list[str | Substitution]:
        """Literal text and substitutions from the current position up to a character where ``stop`` holds."""
        parts: list[str | Substitution] = []
        literal = ""
        while self.pos < len(self.text) and not stop(self.text[self.pos]):
            if self.text.startswith("$(", self.pos):
                if literal:
                    parts.append(literal)
                    literal = ""
                parts.append(self.parse_substitution())
            else:
                literal += self.text[self.pos]
                self.pos += 1
        if literal:
            parts.append(literal)
        return parts

    def parse_text(self) -> Text:
        """Literal text and substitutions up to the end of the string."""
        return tuple(self._parse_parts(lambda c: False))

    def parse_substitution(self) -> Substitution:
        start = self.pos
        self.pos += 2  # "$("
        name = ""
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "-_"):
            name += self.text[self.pos]
            self.pos += 1
        if not name:
            raise self.error(f"'$(' without a substitution name at column {start + 1}")
        args: list[tuple[str | Substitution, ...]] = []
        while True:
            while self.pos < len(self.text) and self.text[self.pos].isspace():
                self.pos += 1
            if self.pos >= len(self.text):
                raise self.error(f"unterminated substitution $({name} ...: missing ')'")
            char = self.text[self.pos]
            if char == ")":
                self.pos += 1
                return Substitution(name, tuple(args))
            if char in "'\"":
                args.append(self.parse_quoted(char))
            else:
                args.append(self.parse_bare())

    def parse_quoted(self, quote: str) -> Text:
        self.pos += 1
        parts = self._parse_parts(lambda c: c == quote)
        if self.pos >= len(self.text):
            raise self.error(f"unterminated quoted argument (missing {quote})")
        self.pos += 1
        return tuple(parts) if parts else ("",)  # '' is an empty argument, not a missing one

    def parse_bare(self) -> Text:
        return tuple(self._parse_parts(lambda c: c.isspace() or c == ")"))


def parse_substitutions(text: str, where: str | None = None) -> Text:
    """Split an attribute value into literal pieces and :class:`Substitution` objects.

    Args:
        text: The raw attribute value.
        where: ``file:line`` for error messages.

    Raises:
        LaunchError: On an unterminated substitution or quote, or ``$(`` without a name.
    """
    return _Parser(text, where).parse_text()


# ------------------------------------------------------------------------------------------------ evaluation
def parse_bool(value: str, what: str, where: str | None = None) -> bool:
    """``true``/``1`` -> True, ``false``/``0`` -> False (any case); anything else is an error naming ``what``."""
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchError(f"{what} must be true/false/1/0, got {value!r}", where)


def _check_arity(sub: Substitution, low: int, high: int, where: str | None) -> None:
    if not low <= len(sub.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise LaunchError(f"$({sub.name}) takes {want} argument(s), got {len(sub.args)}", where)


def _perform(sub: Substitution, ctx: SubstitutionContext, where: str | None) -> str:
    args = [_join(arg, ctx, where) for arg in sub.args]
    name = sub.name
    if name == "var":
        _check_arity(sub, 1, 1, where)
        if args[0] not in ctx.configurations:
            known = ", ".join(sorted(ctx.configurations)) or "none"
            raise LaunchError(f"$(var {args[0]}): no launch argument or <let> named {args[0]!r} (known: {known})", where)
        return ctx.configurations[args[0]]
    if name == "env":
        _check_arity(sub, 1, 2, where)
        if args[0] in ctx.environ:
            return ctx.environ[args[0]]
        if len(args) == 2:
            return args[1]
        raise LaunchError(f"$(env {args[0]}): environment variable {args[0]!r} is not set and has no default", where)
    if name in ("find-pkg-share", "find-pkg-prefix"):
        _check_arity(sub, 1, 1, where)
        find = ctx.find_share if name == "find-pkg-share" else ctx.find_prefix
        try:
            return find(args[0])
        except LaunchError as e:
            raise LaunchError(str(e), where) from None
    if name in ("dirname", "filename"):
        _check_arity(sub, 0, 0, where)
        return str(ctx.file.parent if name == "dirname" else ctx.file)
    if name == "anon":
        _check_arity(sub, 1, 1, where)
        if args[0] not in ctx.anon:
            ctx.anon[args[0]] = f"{args[0]}_{os.getpid()}_{random.getrandbits(48)}"
        return ctx.anon[args[0]]
    if name == "not":
        _check_arity(sub, 1, 1, where)
        return "false" if parse_bool(args[0], "$(not) argument", where) else "true"
    if name in ("and", "or"):
        _check_arity(sub, 2, 2, where)
        a, b = (parse_bool(x, f"$({name}) argument", where) for x in args)
        return str(a and b if name == "and" else a or b).lower()
    if name in ROS_ONLY:
        raise LaunchError(
            f"substitution $({name}) is not supported by sim2real launch (supported: {', '.join(SUPPORTED)}); "
            "run this file with ros2 launch",
            where,
        )
    raise LaunchError(f"unknown substitution $({name}) (supported: {', '.join(SUPPORTED)})", where)


def _join(parts: Text, ctx: SubstitutionContext, where: str | None) -> str:
    return "".join(p if isinstance(p, str) else _perform(p, ctx, where) for p in parts)


def evaluate(text: str, ctx: SubstitutionContext, where: str | None = None) -> str:
    """Perform every substitution in an attribute value.

    Args:
        text: The raw attribute value (``$(find-pkg-share sim2real)/config/$(var name).yaml``).
        ctx: The configurations, environment and package lookup.
        where: ``file:line`` for error messages.

    Returns:
        The resulting string.

    Raises:
        LaunchError: On a syntax error, an unknown or unsupported substitution, an undefined ``$(var)``, an unset
            ``$(env)`` without a default, a package that is not found or a wrong number of arguments.
    """
    return _join(parse_substitutions(text, where), ctx, where)


def evaluate_condition(attrib: Mapping[str, str], ctx: SubstitutionContext, where: str | None = None) -> bool:
    """Whether an element with optional ``if``/``unless`` attributes is active.

    Raises:
        LaunchError: If both are given or a value is not ``true``/``false``/``1``/``0`` after substitution.
    """
    if "if" in attrib and "unless" in attrib:
        raise LaunchError("'if' and 'unless' are mutually exclusive", where)
    if "if" in attrib:
        return parse_bool(evaluate(attrib["if"], ctx, where), f"if={attrib['if']!r}", where)
    if "unless" in attrib:
        return not parse_bool(evaluate(attrib["unless"], ctx, where), f"unless={attrib['unless']!r}", where)
    return True
