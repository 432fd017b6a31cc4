"""Output shaping: format parsing, hints, JSON/XML checks with one repair, think and text cuts."""

from __future__ import annotations

import json

import pytest

from tokenhub.errors import BadRequest, UpstreamFailed
from tokenhub.routing.shaping import (
    OutputFormat,
    ShapedOutput,
    from_response_format,
    parse_output_format,
    repair_messages,
    shape,
    strip_think,
    system_hint,
    truncate,
    with_hint,
)
from tokenhub.routing.tokens import estimate_text
from tokenhub.types import Message

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


class Script:
    """A repair callable answering from a script and recording what it was asked."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, list[str]]] = []

    async def __call__(self, bad: str, errors: list[str]) -> str:
        self.calls.append((bad, errors))
        return self.answers.pop(0)


# --- request side ----------------------------------------------------------------------


def test_parse_output_format_full_object() -> None:
    """Every field is read: type, schema object, max_tokens and strip_think."""
    fmt = parse_output_format(
        {"type": "json", "schema": PERSON, "max_tokens": 50, "strip_think": True}, "output_format"
    )
    assert fmt == OutputFormat("json", PERSON, 50, True)


def test_schema_may_be_a_json_string_and_implies_json() -> None:
    """A schema given as a JSON string is parsed; with no type the format is json."""
    fmt = parse_output_format({"schema": json.dumps(PERSON)}, "output_format")
    assert fmt.type == "json" and fmt.schema == PERSON
    assert parse_output_format("markdown", "output_format") == OutputFormat("markdown")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"type": "json", "schema": {"type": "nonsense"}}, "output_format.schema"),
        ({"schema": "{not json"}, "output_format.schema"),
        ({"schema": "[1, 2]"}, "output_format.schema"),
        ({"type": "yaml"}, "output_format.type"),
        ({"type": "xml", "schema": PERSON}, "output_format.schema"),
        ({"type": "text", "max_tokens": 0}, "output_format.max_tokens"),
        ({"type": "text", "strip_think": "yes"}, "output_format.strip_think"),
        ({"type": "text", "colour": 1}, "output_format.colour"),
        (42, "output_format"),
    ],
)
def test_invalid_output_format_is_400_naming_the_field(value: object, where: str) -> None:
    """Bad types, bad values and invalid JSON Schemas are BadRequests naming the field."""
    with pytest.raises(BadRequest) as err:
        parse_output_format(value, "output_format")
    assert err.value.status == 400 and err.value.message.startswith(f"{where}:")


def test_from_response_format_maps_openai_shapes() -> None:
    """json_object is json without schema, json_schema carries its schema, text is nothing."""
    assert from_response_format({"type": "json_object"}) == OutputFormat("json")
    rf = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    assert from_response_format(rf) == OutputFormat("json", PERSON)
    assert from_response_format({"type": "text"}) is None
    assert from_response_format(None) is None
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": 3}}}
    with pytest.raises(BadRequest, match=r"^response_format\.json_schema\.schema:"):
        from_response_format(bad)


def test_hints_per_type_and_insertion_after_system_messages() -> None:
    """json hints carry the schema, xml and markdown have hints, text none; the hint
    goes right after the leading system messages."""
    assert '"required":["name","age"]' in system_hint(OutputFormat("json", PERSON))
    assert "XML" in system_hint(OutputFormat("xml"))
    assert "Markdown" in system_hint(OutputFormat("markdown"))
    assert system_hint(OutputFormat("text")) == ""
    messages = [Message("system", "be kind"), Message("user", "hi")]
    hinted = with_hint(messages, OutputFormat("json"))
    assert [m.role for m in hinted] == ["system", "system", "user"]
    assert hinted[1].content == system_hint(OutputFormat("json"))
    assert with_hint(messages, OutputFormat("text")) is messages


def test_repair_messages_append_the_bad_answer_and_the_errors() -> None:
    """The repair conversation is the request, the bad answer, then a turn listing errors."""
    original = [Message("user", "give me a person")]
    out = repair_messages(original, '{"name": 1}', ["$.name: 1 is not of type 'string'"])
    assert out[0] is original[0]
    assert out[1] == Message("assistant", '{"name": 1}')
    assert out[2].role == "user" and "- $.name: 1 is not of type 'string'" in str(out[2].content)


# --- answer side -----------------------------------------------------------------------


async def test_valid_json_is_canonicalised_without_repair() -> None:
    """A valid answer comes back as compact JSON with the parsed value, no repair call."""
    repair = Script()
    out = await shape('{ "name": "Ada",  "age": 36 }', OutputFormat("json", PERSON), repair)
    assert out == ShapedOutput('{"name":"Ada","age":36}', {"name": "Ada", "age": 36}, False)
    assert repair.calls == []


async def test_fenced_json_in_prose_is_found() -> None:
    """A ```json fence surrounded by prose is parsed."""
    text = 'Sure! Here it is:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?'
    out = await shape(text, OutputFormat("json", PERSON), Script())
    assert out.parsed == {"name": "Ada", "age": 36}


async def test_first_balanced_block_in_prose_that_fits_wins() -> None:
    """Without fences the balanced block that validates is taken, skipping a stray [1]."""
    text = 'See [1]. The answer is {"name": "Ló", "age": 3} as requested.'
    out = await shape(text, OutputFormat("json", PERSON), Script())
    assert out.text == '{"name":"Ló","age":3}' and not out.repaired


async def test_repair_fixes_an_invalid_answer() -> None:
    """An invalid answer triggers one repair call with the errors; its fix is returned."""
    repair = Script('{"name": "Ada", "age": 36}')
    out = await shape('{"name": "Ada", "age": -1}', OutputFormat("json", PERSON), repair)
    assert out.repaired and out.parsed == {"name": "Ada", "age": 36}
    ((bad, errors),) = repair.calls
    assert bad == '{"name": "Ada", "age": -1}'
    assert errors == ["$.age: -1 is less than the minimum of 0"]


async def test_failed_repair_is_502_listing_every_error() -> None:
    """When the repair still fails validation the 502 details list all its errors."""
    repair = Script('{"age": "old"}')
    with pytest.raises(UpstreamFailed) as err:
        await shape("no json here", OutputFormat("json", PERSON), repair)
    assert err.value.status == 502
    assert err.value.message == "output failed validation"
    assert set(err.value.details["errors"]) == {
        "$: 'name' is a required property",
        "$.age: 'old' is not of type 'integer'",
    }
    assert repair.calls == [("no json here", ["$: the answer contains no JSON value"])]


async def test_json_without_schema_needs_only_to_parse() -> None:
    """Without a schema any JSON value passes; NaN is not JSON and asks for a repair."""
    assert (await shape("[1, 2]", OutputFormat("json"), Script())).parsed == [1, 2]
    out = await shape('{"x": NaN}', OutputFormat("json"), Script('{"x": 0}'))
    assert out.repaired and out.parsed == {"x": 0}


async def test_unresolvable_ref_is_400() -> None:
    """A schema whose $ref cannot be resolved is the client's error, not a crash."""
    fmt = OutputFormat("json", {"$ref": "https://example.invalid/s.json"})
    with pytest.raises(BadRequest, match="cannot resolve"):
        await shape("{}", fmt, Script())


async def test_strip_think_runs_before_parsing_and_after_repair() -> None:
    """Think blocks are removed from the answer and from the repaired answer."""
    fmt = OutputFormat("json", PERSON, strip_think=True)
    repair = Script('<think>fix age</think>{"name": "A", "age": 1}')
    out = await shape('<think>{"name": "no"}</think>\n{"name": "A"}', fmt, repair)
    assert out.parsed == {"name": "A", "age": 1}
    assert repair.calls[0][0] == '{"name": "A"}'


def test_strip_think_variants() -> None:
    """Closed, several, unopened and unclosed think blocks all go; text without one stays."""
    assert strip_think("<think>a\nb</think>\n\nAnswer") == "Answer"
    assert strip_think("x<think>1</think>y<think>2</think>z") == "xyz"
    assert strip_think("reasoning only closed</think> Answer") == "Answer"
    assert strip_think("Answer <think>cut off") == "Answer"
    assert strip_think("  plain  ") == "  plain  "


async def test_text_is_truncated_to_max_tokens() -> None:
    """type text cuts the answer to the longest prefix within max_tokens."""
    text = "one two three four five six seven eight nine ten"
    out = await shape(text, OutputFormat("text", max_tokens=4), Script())
    assert out.text == "one two three four" and estimate_text(out.text) <= 4
    short = await shape("short", OutputFormat("text", max_tokens=4), Script())
    assert short.text == "short"
    assert truncate("abcdefghijklmnop", 1) == "abcdefgh"


async def test_markdown_passes_through() -> None:
    """markdown is only a hint: the answer is returned as it is, think removed if asked."""
    fmt = OutputFormat("markdown", strip_think=True)
    out = await shape("<think>hm</think># Title\n\n* item", fmt, Script())
    assert out == ShapedOutput("# Title\n\n* item")


async def test_xml_well_formed_passes_and_broken_is_repaired() -> None:
    """Well-formed XML passes (fences removed); broken XML gets one repair."""
    ok = await shape("```xml\n<a><b>1</b></a>\n```", OutputFormat("xml"), Script())
    assert ok.text == "<a><b>1</b></a>" and not ok.repaired
    repair = Script("<a>fixed</a>")
    fixed = await shape("<a><b></a>", OutputFormat("xml"), repair)
    assert fixed.text == "<a>fixed</a>" and fixed.repaired
    assert repair.calls[0][1][0].startswith("not well-formed XML")


async def test_xml_with_doctype_is_refused() -> None:
    """A DOCTYPE (entity expansion) never reaches the parser and ends in a 502."""
    bomb = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
    with pytest.raises(UpstreamFailed) as err:
        await shape(bomb, OutputFormat("xml"), Script(bomb))
    assert "DOCTYPE" in err.value.details["errors"][0]


async def test_too_deep_answer_or_schema_fails_cleanly() -> None:
    """A deeply nested answer asks for a repair; a deeply nested schema is a 400."""
    fmt = OutputFormat("json", {"type": "array", "items": {"$ref": "#"}})
    repair = Script("[]")
    out = await shape("[" * 800 + "]" * 800, fmt, repair)
    assert out.repaired and out.parsed == []
    assert repair.calls[0][1] == ["$: nested too deeply to validate"]
    deep = '{"items":' * 900 + "{}" + "}" * 900
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_output_format({"schema": deep}, "output_format")
