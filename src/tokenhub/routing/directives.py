"""In-band routing directives: ``@@tokenhub`` lines a client writes into its messages.

Two forms, each on lines of their own (leading and trailing whitespace allowed)::

    @@tokenhub mode=cheap budget=0.01 latency=5000 min_weight=5

    @@tokenhub
    mode=cheap
    output_schema={"type": "object", "required": ["answer"]}
    @@end

Keys: ``mode`` (one of ``tokenhub.config.MODES``), ``budget`` (USD, 0-100),
``latency`` (ms, whole number 0-300000), ``min_weight`` (whole number 0-10),
``output_schema`` (a JSON Schema object), ``model`` (a non-empty name).

On a one-line directive values are separated by whitespace; ``output_schema`` is read
as one JSON value starting right after ``=`` (it may contain spaces) and further keys
may follow it. In a block each line is one ``key=value`` and the value is the rest of
the line, so a JSON schema must fit on its line; blank lines are ignored.

Every text of every message (plain content and text parts) is scanned in order, and
the last value of each key wins, field by field. A line is a directive only when
``@@tokenhub`` is its first word: a mention inside a sentence is ordinary text. The
directive lines are removed (with their line break) and nothing else is touched, so
a message made only of directives keeps an empty content. Any invalid value or
unknown key is a ``BadRequest`` naming the key: a typo must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from tokenhub import config as settings_config
from tokenhub.errors import BadRequest
from tokenhub.routing.shaping import check_schema
from tokenhub.types import Message

MARK = "@@tokenhub"
END = "@@end"
KEYS = ("mode", "budget", "latency", "min_weight", "output_schema", "model")
_SHOWN = 60  # longest client value quoted back in an error message

Pairs = list[tuple[str, str]]
T = TypeVar("T")


@dataclass(slots=True)
class Directives:
    """The merged directives of one request; ``None`` where no directive set a key."""

    mode: str | None = None
    budget: float | None = None
    latency: int | None = None
    min_weight: int | None = None
    output_schema: dict[str, Any] | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Overrides:
    """Request values after directives were laid over them (``None``: server default)."""

    mode: str | None
    max_budget_usd: float | None
    max_latency_ms: int | None
    min_weight: int | None
    model: str | None


# --- public API ------------------------------------------------------------------------


def extract(messages: list[Message]) -> tuple[Directives | None, list[Message]]:
    """The request's directives (``None`` if it has none) and its messages without them.

    Messages that held no directive are returned as the same objects; the others are
    copies. Raises ``BadRequest`` for a malformed directive.
    """
    # Runs on every request: a substring test per message before any real work.
    if not any(MARK in m.text() for m in messages):
        return None, messages
    found: list[Pairs] = []
    out = [_strip_message(m, found) for m in messages]
    if not found:
        return None, messages
    return _merge(found), out


def apply(
    d: Directives | None,
    *,
    mode: str | None,
    max_budget_usd: float | None,
    max_latency_ms: int | None,
    min_weight: int | None,
    model: str | None,
) -> Overrides:
    """The request's own values with every key a directive set replaced by the directive."""
    if d is None:
        return Overrides(mode, max_budget_usd, max_latency_ms, min_weight, model)
    return Overrides(
        mode=_pick(d.mode, mode),
        max_budget_usd=_pick(d.budget, max_budget_usd),
        max_latency_ms=_pick(d.latency, max_latency_ms),
        min_weight=_pick(d.min_weight, min_weight),
        model=_pick(d.model, model),
    )


def strip_text(text: str) -> str:
    """``text`` with its directive lines removed (``BadRequest`` if one is malformed)."""
    if MARK not in text:
        return text
    return _scan(text, [])


def strip_raw_openai(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of an OpenAI chat-completions body whose message texts lost their directives."""
    out = dict(raw)
    if isinstance(raw.get("messages"), list):
        out["messages"] = [_strip_raw_message(m) for m in raw["messages"]]
    return out


def strip_raw_anthropic(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of an Anthropic messages body whose texts (``system`` too) lost their directives."""
    out = dict(raw)
    if isinstance(raw.get("messages"), list):
        out["messages"] = [_strip_raw_message(m) for m in raw["messages"]]
    if "system" in raw:
        out["system"] = _strip_raw_content(raw["system"])
    return out


# --- scanning --------------------------------------------------------------------------


def _strip_message(msg: Message, found: list[Pairs]) -> Message:
    content = msg.content
    if isinstance(content, str):
        if MARK not in content:
            return msg
        return dataclasses.replace(msg, content=_scan(content, found))
    if not content or not any(MARK in p.get("text", "") for p in content if _is_text(p)):
        return msg
    parts = [_strip_part(p, found) for p in content]
    return dataclasses.replace(msg, content=parts)


def _strip_part(part: dict[str, Any], found: list[Pairs]) -> dict[str, Any]:
    text = part.get("text")
    if not _is_text(part) or not isinstance(text, str) or MARK not in text:
        return part
    return {**part, "text": _scan(text, found)}


def _is_text(part: object) -> bool:
    return isinstance(part, dict) and part.get("type") == "text"


def _strip_raw_message(msg: object) -> object:
    if not isinstance(msg, dict) or "content" not in msg:
        return msg
    content = _strip_raw_content(msg["content"])
    return msg if content is msg["content"] else {**msg, "content": content}


def _strip_raw_content(content: object) -> object:
    if isinstance(content, str):
        return strip_text(content)
    if not isinstance(content, list):
        return content
    out = []
    for part in content:
        if _is_text(part) and isinstance(part.get("text"), str) and MARK in part["text"]:
            part = {**part, "text": strip_text(part["text"])}
        out.append(part)
    return out


def _scan(text: str, found: list[Pairs]) -> str:
    """Remove directive lines from ``text``, appending each directive's pairs to ``found``.

    Splitting on ``\\n`` and joining the kept lines back is exactly the inverse of
    inserting whole lines, so every byte outside a directive survives (``\\r\\n`` too).
    """
    lines = text.split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        head = _head(lines[i])
        if head is None:
            kept.append(lines[i])
            i += 1
        elif head:
            found.append(_inline_pairs(head))
            i += 1
        else:
            pairs, i = _block(lines, i + 1)
            found.append(pairs)
    return "\n".join(kept)


def _head(line: str) -> str | None:
    """``None`` for an ordinary line; ``""`` for a block start; else the one-line body."""
    s = line.strip()
    if not s.startswith(MARK):
        return None
    rest = s[len(MARK) :]
    if not rest:
        return ""
    return rest if rest[0].isspace() else None


def _block(lines: list[str], i: int) -> tuple[Pairs, int]:
    pairs: Pairs = []
    while i < len(lines):
        s = lines[i].strip()
        i += 1
        if s == END:
            return pairs, i
        if s:
            key, eq, value = s.partition("=")
            if not eq:
                raise BadRequest(f"directive: expected key=value, got {_show(s)}")
            pairs.append((key.strip(), value.strip()))
    raise BadRequest(f"directive: a {MARK} block is not closed with a line {END}")


def _inline_pairs(body: str) -> Pairs:
    pairs: Pairs = []
    pos, n = 0, len(body)
    while True:
        while pos < n and body[pos].isspace():
            pos += 1
        if pos >= n:
            return pairs
        end = _word_end(body, pos)
        key, eq, value = body[pos:end].partition("=")
        if not eq:
            raise BadRequest(f"directive: expected key=value, got {_show(body[pos:end])}")
        if key == "output_schema":
            value, end = _json_value(body, pos + len(key) + 1, end)
        pairs.append((key, value))
        pos = end


def _word_end(body: str, pos: int) -> int:
    while pos < len(body) and not body[pos].isspace():
        pos += 1
    return pos


def _json_value(body: str, start: int, word_end: int) -> tuple[str, int]:
    """The JSON text starting at ``start`` and where it ends (spaces allowed inside)."""
    try:
        _, end = json.JSONDecoder().raw_decode(body, start)
    except (ValueError, RecursionError):
        return body[start:].strip(), len(body)  # reported by the value check
    return body[start:end], end


# --- values ----------------------------------------------------------------------------


def _merge(found: list[Pairs]) -> Directives:
    d = Directives()
    for pairs in found:
        for key, value in pairs:
            check = _CHECKS.get(key)
            if check is None:
                raise BadRequest(
                    f"directive {_show(key, bare=True)}: unknown key "
                    f"(expected one of {', '.join(KEYS)})"
                )
            setattr(d, key, check(value))
    return d


def _mode(value: str) -> str:
    modes = settings_config.MODES  # read now: the set of modes grows
    if value not in modes:
        raise BadRequest(f"directive mode: must be one of {', '.join(modes)}, got {_show(value)}")
    return value


def _budget(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0 <= number <= 100:
        raise BadRequest(
            f"directive budget: must be a number of USD from 0 to 100, got {_show(value)}"
        )
    return number


def _whole(key: str, hi: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) > hi:
            raise BadRequest(
                f"directive {key}: must be a whole number from 0 to {hi}, got {_show(value)}"
            )
        return int(value)

    return check


def _output_schema(value: str) -> dict[str, Any]:
    try:
        schema = json.loads(value)
    except (ValueError, RecursionError):
        raise BadRequest(f"directive output_schema: not valid JSON: {_show(value)}") from None
    if not isinstance(schema, dict):
        raise BadRequest("directive output_schema: must be a JSON object")
    check_schema(schema, "directive output_schema")
    return schema


def _model(value: str) -> str:
    if not value:
        raise BadRequest("directive model: must be a non-empty model name")
    return value


_CHECKS: Mapping[str, Callable[[str], Any]] = MappingProxyType(
    {
        "mode": _mode,
        "budget": _budget,
        "latency": _whole("latency", 300000),
        "min_weight": _whole("min_weight", 10),
        "output_schema": _output_schema,
        "model": _model,
    }
)


def _pick(directive: T | None, request: T | None) -> T | None:
    return request if directive is None else directive


def _show(value: str, *, bare: bool = False) -> str:
    short = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
    return short if bare else repr(short)
