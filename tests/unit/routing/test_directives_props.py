"""Property tests for the directive parser: stripping is exact, no input crashes it."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenhub.config import MODES
from tokenhub.errors import BadRequest
from tokenhub.routing.directives import extract
from tokenhub.types import Message

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

plain_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=200).filter(
    lambda t: "@@tokenhub" not in t
)

pairs = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(MODES),
        "budget": st.floats(0, 100).map(repr),
        "latency": st.integers(0, 300000).map(str),
        "min_weight": st.integers(0, 10).map(str),
        "model": st.from_regex(r"[A-Za-z0-9/._-]{1,20}", fullmatch=True),
        "output_schema": st.sampled_from(
            [{"type": "object"}, {"type": "array", "items": {"type": "integer"}}]
        ).map(json.dumps),
    },
)


@st.composite
def directive_lines(draw: st.DrawFn) -> list[str]:
    """One directive as lines: a one-liner or a block, with optional indentation."""
    fields = draw(pairs)
    pad = draw(st.sampled_from(["", "  ", "\t"]))
    if fields and draw(st.booleans()):  # a bare "@@tokenhub" line opens a block
        return [pad + "@@tokenhub " + " ".join(f"{k}={v}" for k, v in fields.items())]
    body = [f"{k}={v}" for k, v in fields.items()]
    return [pad + "@@tokenhub", *body, pad + "@@end"]


@FAST
@given(plain_text, st.lists(st.tuples(st.integers(0, 1000), directive_lines()), max_size=4))
def test_stripping_returns_exactly_the_original(original: str, inserts: list) -> None:
    """Directives inserted at line boundaries are removed and every other byte survives."""
    lines = original.split("\n")
    slots: list[list[str]] = [[] for _ in range(len(lines) + 1)]
    for position, directive in inserts:
        slots[position % len(slots)].extend(directive)  # between original lines only
    mixed = [*slots[0]]
    for line, after in zip(lines, slots[1:], strict=True):
        mixed += [line, *after]
    d, out = extract([Message(role="user", content="\n".join(mixed))])
    assert out[0].content == original
    assert (d is None) == (not inserts)


@FAST
@given(plain_text, directive_lines(), directive_lines())
def test_last_directive_wins(original: str, first: list[str], second: list[str]) -> None:
    """Every key of the later directive wins over the earlier one's."""
    text = "\n".join([*first, original, *second])
    d, out = extract([Message(role="user", content=text)])
    later, _ = extract([Message(role="user", content="\n".join(second))])
    assert d is not None and later is not None
    for key in ("mode", "budget", "latency", "min_weight", "output_schema", "model"):
        if getattr(later, key) is not None:
            assert getattr(d, key) == getattr(later, key)
    assert out[0].content == original


fragments = st.sampled_from(
    [
        "@@tokenhub",
        "@@end",
        "\n",
        "\r\n",
        " ",
        "=",
        "mode",
        "budget",
        "output_schema",
        "{",
        "}",
        "[",
        '"',
        "cheap",
        "1e9",
        "latency",
        "model",
        "min_weight",
        "\u2028",
    ]
)
noisy = st.lists(st.one_of(fragments, st.text(max_size=5)), max_size=30).map("".join)


@FAST
@given(st.lists(noisy, min_size=1, max_size=3))
def test_arbitrary_text_only_ever_raises_bad_request(texts: list[str]) -> None:
    """Whatever the text, extract either succeeds or raises BadRequest."""
    messages = [Message(role="user", content=t) for t in texts]
    try:
        d, out = extract(messages)
    except BadRequest as exc:
        assert exc.message.startswith("directive")
    else:
        assert len(out) == len(messages)
        if d is not None:
            assert all(
                "@@tokenhub" not in line.strip()[:10] for m in out for line in m.text().split("\n")
            )
