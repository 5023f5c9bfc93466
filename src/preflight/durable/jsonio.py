"""Bounded, strict JSON reading: size and nesting limits, no NaN/Infinity, no huge ints.

Every JSON file we read (progress, manifests, configs, metrics, requests) goes through here
so that a malicious or corrupt file gets a clear ``BadInputError`` naming it, never a
RecursionError, a MemoryError or a silently accepted NaN.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from preflight.durable.errors import BadInputError

JSON_BYTES_MAX = 16 << 20
JSON_DEPTH_MAX = 64
INT_DIGITS_MAX = 40


_TOKEN_RE = re.compile(r'[\\"\[\]{}]')


def _depth_exceeds(text: str, depth_max: int) -> bool:
    """True as soon as bracket nesting outside strings passes ``depth_max``.

    Text with no more opening brackets than the limit cannot nest deeper, so the common case
    costs two C-level counts; otherwise only the structural characters are visited.
    """
    if text.count("[") + text.count("{") <= depth_max:
        return False
    depth = 0
    in_string = False
    skip_at = -1  # position of a character escaped by a backslash inside a string
    for match in _TOKEN_RE.finditer(text):
        pos, ch = match.start(), match.group()
        if pos == skip_at:
            continue
        if in_string:
            if ch == "\\":
                skip_at = pos + 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > depth_max:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > INT_DIGITS_MAX:
        raise ValueError(f"integer with {len(text)} digits is too large")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:32]} overflows")
    return value


def loads_strict(text: str | bytes, where: str, *, depth_max: int = JSON_DEPTH_MAX) -> Any:
    """Parse JSON text strictly; errors are ``BadInputError`` naming ``where``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInputError(f"{where}: not UTF-8 text ({exc.reason})") from None
    if _depth_exceeds(text, depth_max):
        raise BadInputError(f"{where}: JSON nested deeper than {depth_max} levels")
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except (ValueError, RecursionError) as exc:
        raise BadInputError(f"{where}: invalid JSON: {exc}") from None


def read_json(
    path: str | os.PathLike[str],
    *,
    bytes_max: int = JSON_BYTES_MAX,
    depth_max: int = JSON_DEPTH_MAX,
) -> Any:
    """Read a JSON file with a size bound checked before reading."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > bytes_max:
                raise BadInputError(f"{where}: {size} bytes exceeds the limit of {bytes_max}")
            # Read what fstat promised (plus one byte to see growth), not bytes_max: a
            # read(n) allocates n bytes up front, 16 MiB for every tiny file.
            data = handle.read(size + 1)
            if len(data) > size:
                raise BadInputError(f"{where}: file grew while being read")
    except FileNotFoundError:
        raise BadInputError(f"{where}: file does not exist") from None
    except IsADirectoryError:
        raise BadInputError(f"{where}: is a directory, expected a JSON file") from None
    if len(data) > bytes_max:
        raise BadInputError(f"{where}: exceeds the limit of {bytes_max} bytes")
    return loads_strict(data, where, depth_max=depth_max)


def require_fields(obj: Any, where: str, fields: dict[str, type | tuple[type, ...]]) -> dict:
    """Check that ``obj`` is an object holding ``fields`` of the given types."""
    if not isinstance(obj, dict):
        raise BadInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for name, kind in fields.items():
        if name not in obj:
            raise BadInputError(f"{where}: missing field {name!r}")
        value = obj[name]
        # bool is an int subclass; a flag is never a valid count.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise BadInputError(f"{where}: field {name!r} must be {_type_names(kind)}, got bool")
        if not isinstance(value, kind):
            raise BadInputError(
                f"{where}: field {name!r} must be {_type_names(kind)}, got {type(value).__name__}"
            )
    return obj


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))
