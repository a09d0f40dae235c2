"""Typed dataclass configs: dotted-key overrides, and the round trip through plain dicts (JSON, YAML).

Every setting of sim2real is a field of a nested dataclass. ``--set sac.batch_size=512`` becomes
``apply_overrides(cfg, {"sac.batch_size": "512"})``: the string is read as the field's current type, and an
unknown key is an error that lists the valid ones.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file: ``{}``).

    Raises:
        FileNotFoundError: no such file. ValueError: not YAML, or not a mapping (``what`` names the expected keys).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {what}")
    return data


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``--set``, a node's ``settings``) as a dict of dotted keys for :func:`apply_overrides`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = value.strip()
    return out


def apply_overrides(obj: T, overrides: dict[str, Any]) -> T:
    """Return a copy of dataclass ``obj`` with dotted-key overrides applied (values coerced to field types).

    Raises:
        KeyError: a key names no setting (the valid ones are listed).
        ValueError: a string value cannot be read as the field's type.
    """
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        names = {f.name for f in fields(obj)}  # type: ignore[arg-type]
        if head not in names:
            raise KeyError(f"unknown setting {key!r} for {type(obj).__name__}; valid: {', '.join(sorted(names))}")
        current = getattr(obj, head)
        if rest:
            if isinstance(current, dict):
                obj = replace(obj, **{head: {**current, rest: value}})  # type: ignore[type-var]
            elif is_dataclass(current):
                obj = replace(obj, **{head: apply_overrides(current, {rest: value})})  # type: ignore[type-var]
            else:
                raise KeyError(f"setting {head!r} of {type(obj).__name__} has no sub-field {rest!r}")
        else:
            obj = replace(obj, **{head: _coerce(value, current, key)})  # type: ignore[type-var]
    return obj


def _coerce(value: Any, current: Any, key: str) -> Any:
    """``value`` read as the type of ``current`` when it is a string (``"1e6"`` -> int, ``"none"`` -> None)."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        if isinstance(current, int):
            return int(float(value)) if "e" in value.lower() else int(value)
        if isinstance(current, float) or current is None:
            return None if value.lower() == "none" else float(value)
        if isinstance(current, tuple):
            return tuple(type(current[0])(v) for v in value.strip("()[] ").split(",") if v)
    except ValueError:
        raise ValueError(f"setting {key!r}: cannot read {value!r} as {type(current).__name__}") from None
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain JSON types (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg), default=list))


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) dataclass from its ``asdict``/JSON form; lists become tuples where the field is one.

    Raises:
        ValueError: ``data`` names a setting the dataclass does not have.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)} for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if is_dataclass(hint) and isinstance(value, dict):
            value = dataclass_from_dict(hint, value)  # type: ignore[arg-type]
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_yaml(d: dict[str, Any]) -> str:
    """YAML text of a plain dict, keys in their order."""
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
