"""Hand-written field checks shared by the dialect codecs.

The codecs run once per request, so they check only the fields TokenHub uses instead
of validating whole bodies with pydantic. Every failure is a ``BadRequest`` whose
message starts with the dotted path of the offending field
(``"messages[1].role: must be one of ..."``), so a client can see what to fix.

``path`` arguments are the field's full path as the client wrote it; helpers that read
a key from an object take the object's path as ``prefix`` (``""`` at top level).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, NoReturn

import orjson

from tokenhub.errors import BadRequest


def fail(path: str, problem: str) -> NoReturn:
    """Raise the one error every invalid field becomes."""
    raise BadRequest(f"{path}: {problem}")


def join(prefix: str, key: str) -> str:
    """The path of ``key`` inside the object at ``prefix``."""
    return f"{prefix}.{key}" if prefix else key


def as_object(value: object, path: str) -> dict[str, Any]:
    """``value`` itself when it is a JSON object, else a BadRequest."""
    if type(value) is not dict:
        fail(path, "must be a JSON object" if path == "body" else "must be an object")
    return value


def as_list(value: object, path: str, *, non_empty: bool = False) -> list[Any]:
    """``value`` itself when it is a JSON array (non-empty if asked)."""
    if type(value) is not list or (non_empty and not value):
        fail(path, "must be a non-empty list" if non_empty else "must be a list")
    return value


def as_str(value: object, path: str, *, non_empty: bool = False) -> str:
    """``value`` itself when it is a string (non-empty if asked)."""
    if type(value) is not str or (non_empty and not value):
        fail(path, "must be a non-empty string" if non_empty else "must be a string")
    return value


def opt_object(obj: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any] | None:
    """An optional object field; ``null`` counts as absent."""
    value = obj.get(key)
    return None if value is None else as_object(value, join(prefix, key))


def opt_str(obj: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    """An optional string field; ``null`` counts as absent."""
    value = obj.get(key)
    return None if value is None else as_str(value, join(prefix, key))


def opt_bool(obj: Mapping[str, Any], key: str, prefix: str = "") -> bool | None:
    """An optional boolean field; ``null`` counts as absent."""
    value = obj.get(key)
    if value is None or type(value) is bool:
        return value
    fail(join(prefix, key), "must be a boolean")


def opt_int(
    obj: Mapping[str, Any],
    key: str,
    prefix: str = "",
    *,
    lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    """An optional whole number within ``[lo, hi]``; booleans are not numbers."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or (lo is not None and value < lo) or (hi is not None and value > hi):
        fail(join(prefix, key), _int_form(lo, hi))
    return value


def opt_number(
    obj: Mapping[str, Any], key: str, prefix: str = "", *, lo: float, hi: float
) -> float | None:
    """An optional number within ``[lo, hi]``; NaN and booleans are refused."""
    value = obj.get(key)
    if value is None:
        return None
    # `not lo <= v <= hi` is also true for NaN, which orjson never yields but callers might.
    if type(value) not in (int, float) or not lo <= value <= hi:
        fail(join(prefix, key), f"must be a number between {_num(lo)} and {_num(hi)}")
    return float(value)


def opt_str_list(obj: Mapping[str, Any], key: str, prefix: str = "") -> list[str] | None:
    """An optional list of strings; an empty list counts as absent."""
    value = obj.get(key)
    if value is None:
        return None
    path = join(prefix, key)
    if type(value) is not list or any(type(s) is not str for s in value):
        fail(path, "must be a list of strings")
    return value or None


def opt_stop(obj: Mapping[str, Any], key: str, prefix: str = "") -> list[str] | None:
    """OpenAI's ``stop``: a string or a list of strings."""
    value = obj.get(key)
    if type(value) is str:
        return [value]
    if value is None or type(value) is list:
        return opt_str_list(obj, key, prefix)
    fail(join(prefix, key), "must be a string or a list of strings")


def one_of(value: object, choices: Collection[str], path: str) -> str:
    """``value`` when it is one of ``choices`` (a string), else a BadRequest listing them."""
    if type(value) is not str or value not in choices:
        fail(path, "must be one of " + ", ".join(choices))
    return value


def json_text(value: object, path: str) -> str:
    """``value`` as compact JSON text (tool arguments travel as text)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # only for values orjson.loads cannot produce
        fail(path, "must be JSON-serialisable")


def _int_form(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"must be a whole number between {lo} and {hi}"
    if lo is not None:
        return f"must be a whole number >= {lo}"
    return "must be a whole number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
