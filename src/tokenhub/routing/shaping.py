"""Output shaping: make a model's answer fit the format the client asked for.

A client asks with ``output_format`` on ``/v1/chat`` (``{"type": "json", "schema": ...,
"max_tokens": 200, "strip_think": true}``) or ``response_format`` on
``/v1/chat/completions``. Per type:

- ``json``: a system hint asks for bare JSON; the answer is parsed, tolerating
  ```` ```json ```` fences and prose around it, and validated with ``jsonschema``. On
  failure the model gets one repair turn listing the errors; if that fails too the
  request ends in a 502 (``UpstreamFailed``) whose details list the errors.
- ``xml``: a hint; the answer must be well-formed (``xml.etree``), same repair path.
  Documents with a DOCTYPE are refused: entity expansion is an attack surface.
- ``markdown``: a hint only.
- ``text``: the answer is cut to ``max_tokens`` (the router's token estimate).

``strip_think`` removes ``<think>...</think>`` reasoning blocks before anything else.
Shaping needs the whole answer, so it is not applied to streams.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from xml.etree import ElementTree

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
from referencing.exceptions import Unresolvable

from tokenhub.errors import BadRequest, UpstreamFailed
from tokenhub.routing.tokens import estimate_text
from tokenhub.types import Message

FormatType = Literal["json", "markdown", "text", "xml"]
TYPES: tuple[FormatType, ...] = ("json", "markdown", "text", "xml")
MAX_ERRORS = 20  # listed per failed check; a broken answer can violate a schema endlessly
MAX_CANDIDATES = 64  # JSON starts tried in prose; bounds the work on hostile answers
_FIELDS = frozenset({"type", "schema", "max_tokens", "strip_think"})

Repair = Callable[[str, list[str]], Awaitable[str]]
"""Asks the model again: ``(bad_answer, errors) -> new answer``."""

_THINK = re.compile(r"<think>.*?</think>", re.S)
_NOTHING = object()  # "did not parse": None is a JSON value
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """The shape a client wants its answer in."""

    type: FormatType = "text"
    schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    strip_think: bool = False


@dataclass(frozen=True, slots=True)
class ShapedOutput:
    """A shaped answer: the cleaned text, the parsed value (json) and whether it took a repair."""

    text: str
    parsed: Any = None
    repaired: bool = False


# --- parsing the request side ----------------------------------------------------------


def parse_output_format(value: object, field: str) -> OutputFormat:
    """An ``output_format`` value (object, or a bare type name); ``BadRequest`` naming ``field``."""
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        raise BadRequest(f"{field}: must be an object")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise BadRequest(
            f"{field}.{unknown[0]}: unknown field (expected {', '.join(sorted(_FIELDS))})"
        )
    schema = _schema(value.get("schema"), f"{field}.schema")
    kind = value.get("type", "json" if schema is not None else "text")
    if kind not in TYPES:
        raise BadRequest(f"{field}.type: must be one of {', '.join(TYPES)}")
    if schema is not None and kind != "json":
        raise BadRequest(f"{field}.schema: only allowed with type json")
    return OutputFormat(
        type=kind,
        schema=schema,
        max_tokens=_max_tokens(value.get("max_tokens"), f"{field}.max_tokens"),
        strip_think=_flag(value.get("strip_think"), f"{field}.strip_think"),
    )


def from_response_format(rf: dict[str, Any] | None) -> OutputFormat | None:
    """The shaping an OpenAI ``response_format`` implies (``None`` for plain text)."""
    if not rf or rf.get("type") not in ("json_object", "json_schema"):
        return None
    schema = None
    if rf["type"] == "json_schema":
        spec = rf.get("json_schema")
        if isinstance(spec, dict):
            schema = _schema(spec.get("schema"), "response_format.json_schema.schema")
    return OutputFormat(type="json", schema=schema)


def check_schema(schema: dict[str, Any], field: str) -> None:
    """``BadRequest`` naming ``field`` unless ``schema`` is a valid JSON Schema."""
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except RecursionError:
        raise BadRequest(f"{field}: nested too deeply") from None
    except jsonschema.exceptions.SchemaError as exc:
        where = "".join(f"/{p}" for p in exc.path)
        raise BadRequest(
            f"{field}: not a valid JSON Schema ({where or '/'}: {exc.message})"
        ) from None


def _schema(value: object, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise BadRequest(f"{field}: not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{field}: must be a JSON Schema object or a JSON string of one")
    check_schema(value, field)
    return value


def _max_tokens(value: object, field: str) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise BadRequest(f"{field}: must be a whole number of at least 1")
    return value


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise BadRequest(f"{field}: must be a boolean")
    return value


# --- prompting -------------------------------------------------------------------------


def system_hint(fmt: OutputFormat) -> str:
    """The system message that asks for ``fmt`` ("" when the type needs none)."""
    if fmt.type == "json":
        hint = "Respond with only a JSON value: no prose, no explanations, no code fences."
        if fmt.schema is not None:
            schema = json.dumps(fmt.schema, separators=(",", ":"), ensure_ascii=False)
            hint += f" It must validate against this JSON Schema: {schema}"
        return hint
    if fmt.type == "xml":
        return "Respond with only a well-formed XML document: no prose, no code fences."
    if fmt.type == "markdown":
        return "Format your answer in Markdown."
    return ""


def with_hint(messages: list[Message], fmt: OutputFormat) -> list[Message]:
    """``messages`` with the format hint added after the leading system messages."""
    hint = system_hint(fmt)
    if not hint:
        return messages
    at = 0
    while at < len(messages) and messages[at].role == "system":
        at += 1
    return [*messages[:at], Message(role="system", content=hint), *messages[at:]]


def repair_messages(original: list[Message], bad_answer: str, errors: list[str]) -> list[Message]:
    """The repair conversation: the request, the bad answer, and what was wrong with it."""
    listed = "\n".join(f"- {e}" for e in errors)
    ask = (
        "Your previous answer does not have the required format:\n"
        f"{listed}\n"
        "Reply again with only the corrected answer, nothing else."
    )
    return [
        *original,
        Message(role="assistant", content=bad_answer),
        Message(role="user", content=ask),
    ]


# --- shaping the answer ----------------------------------------------------------------


async def shape(text: str, fmt: OutputFormat, repair: Repair) -> ShapedOutput:
    """``text`` shaped to ``fmt``, with at most one ``repair`` call.

    Raises ``UpstreamFailed`` (502) listing the errors when the repaired answer still
    fails, and ``BadRequest`` when the client's schema cannot be evaluated.
    """
    if fmt.strip_think:
        text = strip_think(text)
    if fmt.type == "text":
        return ShapedOutput(truncate(text, fmt.max_tokens) if fmt.max_tokens else text)
    if fmt.type == "markdown":
        return ShapedOutput(text)
    result, errors = _check(text, fmt)
    if result is not None:
        return result
    again = await repair(text, errors)
    if fmt.strip_think:
        again = strip_think(again)
    result, errors = _check(again, fmt)
    if result is None:
        raise UpstreamFailed("output failed validation", details={"errors": errors})
    return ShapedOutput(result.text, result.parsed, repaired=True)


def strip_think(text: str) -> str:
    """``text`` without ``<think>`` blocks (also a dangling open or close tag's block)."""
    if "<think>" not in text and "</think>" not in text:
        return text
    out = _THINK.sub("", text)
    # Some reasoning models omit the opening tag, or are cut off before closing it.
    if "</think>" in out:
        out = out.rpartition("</think>")[2]
    if "<think>" in out:
        out = out.partition("<think>")[0]
    return out.strip()


def truncate(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` whose token estimate fits ``max_tokens``."""
    if estimate_text(text) <= max_tokens:
        return text
    lo, hi = 0, len(text)  # estimate(text[:lo]) fits, estimate(text[:hi]) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if estimate_text(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return text[:lo].rstrip()


def _check(text: str, fmt: OutputFormat) -> tuple[ShapedOutput | None, list[str]]:
    if fmt.type == "xml":
        return _check_xml(text)
    return _check_json(text, fmt.schema)


def _check_json(text: str, schema: dict[str, Any] | None) -> tuple[ShapedOutput | None, list[str]]:
    first: list[str] | None = None
    for value in _json_candidates(text):
        errors = _violations(value, schema)
        if not errors:
            canonical = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            return ShapedOutput(canonical, value), []
        first = first or errors
    return None, first or ["$: the answer contains no JSON value"]


def _json_candidates(text: str) -> Iterator[Any]:
    """JSON values in ``text``: all of it, then fenced blocks, then balanced blocks in prose."""
    decoder = json.JSONDecoder(parse_constant=_no_constant)
    whole = _attempt(decoder.decode, text.strip())
    if whole is not _NOTHING:
        yield whole
        return
    for m in _FENCE.finditer(text):
        if m.group(1).lower() in ("", "json", "json5", "jsonc"):
            value = _attempt(decoder.decode, m.group(2).strip())
            if value is not _NOTHING:
                yield value
    done = 0  # starts inside a value already found are its own members: skip them
    for tried, m in enumerate(re.finditer(r"[{\[]", text)):
        if tried >= MAX_CANDIDATES:
            return
        if m.start() < done:
            continue
        found = _attempt(decoder.raw_decode, text, m.start())
        if found is not _NOTHING:
            done = found[1]
            yield found[0]


def _attempt(parse: Callable[..., Any], *args: Any) -> Any:
    try:
        return parse(*args)
    except (ValueError, RecursionError):
        return _NOTHING


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _violations(value: Any, schema: dict[str, Any] | None) -> list[str]:
    if schema is None:
        return []
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        found = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    except jsonschema.exceptions.SchemaError as exc:
        raise BadRequest(f"output schema: cannot be evaluated ({exc.message})") from None
    except RecursionError:
        return ["$: nested too deeply to validate"]
    except Unresolvable as exc:  # remote refs are never fetched
        raise BadRequest(f"output schema: cannot resolve $ref ({exc})") from None
    return [f"{e.json_path}: {e.message}" for e in found[:MAX_ERRORS]]


def _check_xml(text: str) -> tuple[ShapedOutput | None, list[str]]:
    body = text.strip()
    fenced = _FENCE.search(body)
    if fenced and fenced.group(1).lower() in ("", "xml", "html"):
        body = fenced.group(2).strip()
    upper = body.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        return None, ["the answer must not contain a DOCTYPE or entity declarations"]
    try:
        ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        return None, [f"not well-formed XML: {exc}"]
    return ShapedOutput(body), []
