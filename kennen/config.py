"""Typed, validated views of ``params.yaml``.

Each params section loads into a frozen dataclass that rejects unknown keys,
missing keys and wrongly typed values with a one-line :class:`KennenError`
naming the key (``train_zoo.epochs: expected int, got 'ten'``). Library
functions take these objects (or plain arguments), never the whole params tree.

Every value is bounded, so that a typo cannot exhaust memory or time before
anything is written: integers fit in 64 bits, floats are finite, seeds are
32-bit (:mod:`kennen.seeds` derives every stream from 32-bit words), and each
knob that sizes work has an upper bound, declared on its field with
:func:`bounded` (``kennen_o.hidden: 1000000000000 is above its bound 10,000``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from kennen.errors import KennenError

T = TypeVar("T")

SEED_MAX = (1 << 32) - 1  # seeds are 32-bit words (kennen.seeds)
_INT64 = 1 << 63


def bounded(high: int | float, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field whose value (or, for a tuple, each item) may be at most ``high``.

    Args:
        high: the largest value params may give.
        default: the field's default (none: a required key); ``kwargs`` go to ``dataclasses.field``.
    """
    return dataclasses.field(default=default, metadata={"high": high}, **kwargs)


# Every top-level key a params file may have: the base seed and one section per stage (plus ``calibration``,
# read by the three metamodel stages). A key outside this list is a typo (``smaple_zoo:``) that would
# otherwise leave its section at the file's other values without a word.
SECTIONS = (
    "seed", "data", "sample_zoo", "train_zoo", "prune", "ensembles", "queries", "splits", "kennen_o",
    "kennen_o_sweep", "levers", "kennen_i", "kennen_io", "calibration", "defences", "imagenet_zoo", "imagenet_probe",
    "imagenet_attack", "transfer",
)  # fmt: skip


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key]} and {line})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep)


def _yaml_error(e: yaml.YAMLError) -> str:
    """One line: what is wrong and where (line and column, 1-based)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(problem).split())}"


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the params file; a missing, unreadable or malformed file is a one-line KennenError.

    Malformed: not UTF-8 text, not valid YAML (the error names its line and column), a key given
    twice in one mapping, not a mapping at the top, or a top-level key outside :data:`SECTIONS`.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise KennenError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise KennenError(f"{path}: is a folder, not a params file") from None
    except UnicodeDecodeError as e:
        raise KennenError(f"{path}: not UTF-8 text (byte {e.start}); save the params file as UTF-8 YAML") from None
    except OSError as e:
        raise KennenError(f"{path}: cannot read the params file ({e.strerror})") from None
    if "\x00" in text:
        raise KennenError(f"{path}: not a text file (it contains NUL bytes)")
    try:
        params = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        raise KennenError(f"{path}: not valid YAML ({_yaml_error(e)})") from None
    if not isinstance(params, dict):
        raise KennenError(f"{path}: expected a mapping of sections at the top level")
    unknown = [k for k in params if k not in SECTIONS]
    if unknown:
        raise KennenError(
            f"{path}: {unknown[0]!r}: unknown top-level key (expected the seed and stage sections: {', '.join(SECTIONS)})"
        )
    return params


def base_seed(params: dict[str, Any]) -> int:
    """The top-level ``seed`` every random choice derives from (a 32-bit word)."""
    seed = params.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise KennenError(f"seed: expected a non-negative int, got {_brief(seed)}")
    _check_bound(seed, SEED_MAX, "seed")
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
            high = f.metadata.get("high")
            if high is not None:
                for value in kwargs[name] if isinstance(kwargs[name], tuple) else (kwargs[name],):
                    _check_bound(value, high, key)
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
        if abs(value) >= _INT64:
            raise KennenError(f"{key}: {_brief(value)} does not fit in 64 bits")
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise KennenError(f"{key}: expected {hint.__name__}, got {_brief(value)}")
    if hint is int and abs(value) >= _INT64:
        raise KennenError(f"{key}: {_brief(value)} does not fit in 64 bits")
    if hint is float and not math.isfinite(value):
        raise KennenError(f"{key}: {value} is not a finite number")
    return value


def _check_bound(value: Any, high: int | float, key: str) -> None:
    if isinstance(value, int | float) and value > high:
        raise KennenError(f"{key}: {_brief(value)} is above its bound {high:,}")


def _brief(value: Any) -> str:
    """``value``'s repr for a one-line message, at most 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def require(ok: bool, key: str, message: str) -> None:
    """Raise a KennenError ``key: message`` unless ``ok``."""
    if not ok:
        raise KennenError(f"{key}: {message}")
