"""Token estimation: sane bounds on known texts, and the request-level extras."""

from __future__ import annotations

import time

from tokenhub.routing.tokens import IMAGE_TOKENS, estimate_text, estimate_tokens
from tokenhub.types import ChatRequest, Message, ToolCall, ToolSpec


def test_english_sentence_is_about_one_token_per_word() -> None:
    """A pangram that cl100k encodes in 10 tokens estimates within 8..13."""
    n = estimate_text("The quick brown fox jumps over the lazy dog.")
    assert 8 <= n <= 13


def test_long_words_count_more_than_short_ones() -> None:
    """A 20-letter word costs more than a 3-letter one."""
    assert estimate_text("internationalization") >= 3 > estimate_text("cat")


def test_cjk_is_about_one_token_per_character() -> None:
    """Twelve CJK characters (plus punctuation) estimate near 12, far above chars/4."""
    text = "你好\uff0c世界。今天天气很好。"  # with a fullwidth comma
    n = estimate_text(text)
    assert 10 <= n <= 18 and n > len(text) / 4 * 2


def test_digits_group_by_three() -> None:
    """Ten digits are four pieces, as BPE splits numbers in groups of three."""
    assert estimate_text("1234567890") == 4


def test_code_counts_punctuation() -> None:
    """A small Python function (about 20 cl100k tokens) estimates within 15..28."""
    n = estimate_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    assert 15 <= n <= 28


def test_request_adds_overheads_tools_and_images() -> None:
    """Messages, tool calls, tool schemas and images all add to the request estimate."""
    plain = ChatRequest(messages=[Message(role="user", content="hi")])
    base = estimate_tokens(plain)
    assert base == 1 + 4 + 3  # "hi", message overhead, reply priming
    tool = ToolSpec(
        name="get_weather",
        description="Get the weather for a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    with_tools = ChatRequest(messages=plain.messages, tools=[tool])
    assert estimate_tokens(with_tools) > base + 15
    image = Message(
        role="user", content=[{"type": "text", "text": "hi"}, {"type": "image", "url": "x"}]
    )
    assert estimate_tokens(ChatRequest(messages=[image])) == base + IMAGE_TOKENS
    call = Message(role="assistant", tool_calls=[ToolCall("c1", "get_weather", '{"city":"Paris"}')])
    assert estimate_tokens(ChatRequest(messages=[call])) > 3 + 4 + 4


def test_explicit_estimate_wins() -> None:
    """estimated_input_tokens, when set, is returned as is."""
    req = ChatRequest(
        messages=[Message(role="user", content="x " * 1000)], estimated_input_tokens=7
    )
    assert estimate_tokens(req) == 7


def test_estimate_is_fast() -> None:
    """A 100 KB prompt is estimated in well under 50 ms."""
    req = ChatRequest(
        messages=[Message(role="user", content="Lorem ipsum dolor sit amet. " * 3600)]
    )
    start = time.perf_counter()
    n = estimate_tokens(req)
    assert time.perf_counter() - start < 0.05
    assert 20_000 <= n <= 30_000
