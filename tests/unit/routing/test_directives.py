"""In-band ``@@tokenhub`` directives: parsing, merging, stripping and validation."""

from __future__ import annotations

import pytest

from tokenhub import config
from tokenhub.errors import BadRequest
from tokenhub.routing.directives import (
    Directives,
    Overrides,
    apply,
    extract,
    strip_raw_anthropic,
    strip_raw_openai,
    strip_text,
)
from tokenhub.types import Message


def user(text: str) -> Message:
    return Message(role="user", content=text)


def test_no_directive_returns_the_same_list() -> None:
    """Without the marker the messages come back untouched, as the very same list."""
    messages = [user("hello"), Message(role="assistant", content=None)]
    d, out = extract(messages)
    assert d is None and out is messages


def test_one_line_directive_sets_every_field_and_is_removed() -> None:
    """A one-line directive sets mode, budget, latency and min_weight and leaves the message."""
    msg = user("@@tokenhub mode=cheap budget=0.01 latency=5000 min_weight=5\nWhat is 2+2?")
    d, out = extract([msg])
    assert d == Directives(mode="cheap", budget=0.01, latency=5000, min_weight=5)
    assert out[0].content == "What is 2+2?"
    assert msg.content.startswith("@@tokenhub")  # the input message is not mutated


def test_block_directive_with_json_schema() -> None:
    """A block sets keys one per line, output_schema may be JSON with spaces, @@end closes it."""
    text = (
        "Intro\n@@tokenhub\n  mode=high_confidence\n\n"
        'output_schema={"type": "object", "required": ["answer"]}\n'
        "model=gpt-4o\n@@end\nQuestion"
    )
    d, out = extract([user(text)])
    assert d is not None
    assert d.mode == "high_confidence" and d.model == "gpt-4o"
    assert d.output_schema == {"type": "object", "required": ["answer"]}
    assert out[0].content == "Intro\nQuestion"


def test_inline_output_schema_may_contain_spaces_and_be_followed_by_keys() -> None:
    """On one line the schema is one JSON value after '=', and keys may follow it."""
    msg = user('@@tokenhub output_schema={"type": "array"} model=m1')
    d, _ = extract([msg])
    assert d == Directives(output_schema={"type": "array"}, model="m1")


def test_last_one_wins_field_by_field_across_messages() -> None:
    """A later directive overrides only the keys it sets; earlier keys survive."""
    messages = [
        Message(role="system", content="@@tokenhub mode=cheap budget=1"),
        user("hi\n@@tokenhub mode=normal latency=100"),
        Message(role="assistant", content="ok"),
        user("@@tokenhub budget=2\nagain"),
    ]
    d, out = extract(messages)
    assert d == Directives(mode="normal", budget=2.0, latency=100)
    assert [m.content for m in out] == ["", "hi", "ok", "again"]
    assert out[2] is messages[2]


def test_text_parts_are_scanned_and_other_parts_kept() -> None:
    """Directives in text parts are stripped; image parts and other text stay as they are."""
    image = {"type": "image", "url": "https://x/y.png"}
    msg = Message(
        role="user",
        content=[{"type": "text", "text": "look\n@@tokenhub min_weight=7"}, image],
    )
    d, out = extract([msg])
    assert d == Directives(min_weight=7)
    assert out[0].content == [{"type": "text", "text": "look"}, image]


def test_mention_inside_a_sentence_is_not_a_directive() -> None:
    """'@@tokenhub' that is not the first word of its line is ordinary text."""
    messages = [user("write @@tokenhub mode=cheap in the docs"), user("@@tokenhubx mode=1")]
    d, out = extract(messages)
    assert d is None and out is messages


def test_crlf_lines_are_stripped_cleanly() -> None:
    """A directive line ending in CRLF goes with its terminator, other CRs stay."""
    d, out = extract([user("a\r\n  @@tokenhub mode=cheap  \r\nb\r\n")])
    assert d == Directives(mode="cheap")
    assert out[0].content == "a\r\nb\r\n"


def test_directive_only_message_keeps_empty_content() -> None:
    """A message made only of a directive stays in the list with empty content."""
    d, out = extract([user("@@tokenhub\nmode=cheap\n@@end")])
    assert d == Directives(mode="cheap") and out == [Message(role="user", content="")]


def test_mode_is_read_from_config_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode added to tokenhub.config.MODES is accepted without reimporting the module."""
    monkeypatch.setattr(config, "MODES", (*config.MODES, "brand_new"))
    d, _ = extract([user("@@tokenhub mode=brand_new")])
    assert d == Directives(mode="brand_new")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("mode=turbo", "mode"),
        ("budget=abc", "budget"),
        ("budget=101", "budget"),
        ("budget=-1", "budget"),
        ("budget=nan", "budget"),
        ("latency=300001", "latency"),
        ("latency=1.5", "latency"),
        ("latency=-3", "latency"),
        ("latency=" + "9" * 5000, "latency"),
        ("min_weight=11", "min_weight"),
        ("min_weight=x", "min_weight"),
        ("output_schema=[1]", "output_schema"),
        ("output_schema={nope", "output_schema"),
        ('output_schema={"type":"nonsense"}', "output_schema"),
        ("model=", "model"),
        ("colour=blue", "colour"),
    ],
)
def test_invalid_value_is_400_naming_the_key(line: str, key: str) -> None:
    """Every bad value or unknown key is a BadRequest whose message names the key."""
    with pytest.raises(BadRequest) as err:
        extract([user(f"@@tokenhub {line}")])
    assert err.value.status == 400
    assert err.value.message.startswith(f"directive {key}:")


def test_malformed_syntax_is_400() -> None:
    """A word without '=' or a block without @@end is a BadRequest, not ignored."""
    with pytest.raises(BadRequest, match="expected key=value"):
        extract([user("@@tokenhub cheap")])
    with pytest.raises(BadRequest, match="not closed"):
        extract([user("@@tokenhub\nmode=cheap\n")])
    with pytest.raises(BadRequest, match="expected key=value"):
        extract([user("@@tokenhub\nmode cheap\n@@end")])


def test_apply_lets_directives_win_field_by_field() -> None:
    """apply keeps request values the directive left unset and replaces the rest."""
    merged = apply(
        Directives(mode="cheap", latency=10),
        mode="normal",
        max_budget_usd=0.5,
        max_latency_ms=20000,
        min_weight=None,
        model="m0",
    )
    assert merged == Overrides("cheap", 0.5, 10, None, "m0")
    same = apply(None, mode=None, max_budget_usd=1.0, max_latency_ms=None, min_weight=3, model=None)
    assert same == Overrides(None, 1.0, None, 3, None)


def test_strip_raw_openai_copies_and_strips() -> None:
    """The OpenAI raw body is copied with message texts and text parts stripped."""
    raw = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "@@tokenhub mode=cheap\nBe brief."},
            {"role": "user", "content": [{"type": "text", "text": "q\n@@tokenhub budget=1"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }
    out = strip_raw_openai(raw)
    assert out["messages"][0]["content"] == "Be brief."
    assert out["messages"][1]["content"] == [{"type": "text", "text": "q"}]
    assert out["messages"][2] is raw["messages"][2]
    assert raw["messages"][0]["content"].startswith("@@tokenhub")  # original untouched


def test_strip_raw_anthropic_strips_system_too() -> None:
    """The Anthropic raw body loses directives in system (string or blocks) and messages."""
    raw = {
        "system": [{"type": "text", "text": "@@tokenhub mode=cheap\nsys"}],
        "messages": [{"role": "user", "content": "hi\n@@tokenhub\nlatency=5\n@@end"}],
    }
    out = strip_raw_anthropic(raw)
    assert out["system"] == [{"type": "text", "text": "sys"}]
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert strip_raw_anthropic({"system": "@@tokenhub mode=cheap", "messages": []})["system"] == ""


def test_strip_text_leaves_plain_text_alone() -> None:
    """strip_text returns text without a directive unchanged and removes one that is there."""
    assert strip_text("plain") == "plain"
    assert strip_text("a\n@@tokenhub mode=cheap\nb") == "a\nb"
