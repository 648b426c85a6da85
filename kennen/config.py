"""Typed, validated views of ``params.yaml``.

Each params section loads into a frozen dataclass that rejects unknown keys,
missing keys and wrongly typed values with a one-line :class:`KennenError`
naming the key (``train_zoo.epochs: expected int, got 'ten'``). Library
functions take these objects (or plain arguments), never the whole params tree.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kennen.errors import KennenError

T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the params file; a missing or malformed file is a KennenError."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise KennenError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise KennenError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise KennenError(f"{path}: expected a mapping of sections at the top level")
    return params


def base_seed(params: dict[str, Any]) -> int:
    """The top-level ``seed`` every random choice derives from."""
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise KennenError(f"seed: expected a non-negative int, got {seed!r}")
    return seed


def section(cls: type[T], params: dict[str, Any], name: str) -> T:
    """Load section ``name`` of ``params`` into dataclass ``cls``."""
    if name not in params:
        raise KennenError(f"{name}: section missing from params")
    return from_dict(cls, params[name], name)


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise KennenError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KennenError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KennenError(f"{key}: missing key")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where)
    return obj


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against type ``hint``; convert lists to tuples and dicts to dataclasses."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except KennenError as e:
                errors.append(str(e))
        raise KennenError(errors[0])
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise KennenError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise KennenError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise KennenError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def require(ok: bool, key: str, message: str) -> None:
    """Raise a KennenError ``key: message`` unless ``ok``."""
    if not ok:
        raise KennenError(f"{key}: {message}")
