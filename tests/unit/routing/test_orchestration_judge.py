"""Judge answer parsing and the deterministic fallback of vote mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenhub.routing.orchestration import fallback_choice, parse_choice, render_task
from tokenhub.types import Message, ModelConfig


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", 2),
        (" 3\n", 3),
        ("Candidate 2", 2),
        ("The best is candidate #3 because it is thorough.", 3),
        ("#1", 1),
        ('{"choice": 2}', 2),
        ('```json\n{"choice": 3}\n```', 3),
        ('{"best": "1"}', 1),
        ("I would go with 2.", 2),
        ("Option 1 is clearly better.", 1),
    ],
)
def test_parse_choice_understands_common_forms(raw: str, expected: int) -> None:
    """Bare numbers, 'Candidate N', '#N', JSON and prose all yield the candidate."""
    assert parse_choice(raw, 3) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "none of them",
        "9",
        '{"choice": 7}',
        '{"choice": true}',
        "It's a tie.",
        "Candidates 1 and 2 are equally good",
    ],
)
def test_parse_choice_returns_none_for_junk_ties_and_out_of_range(raw: str) -> None:
    """Unparsable, out-of-range and declared-tie answers give None (fallback)."""
    assert parse_choice(raw, 3) is None


def test_parse_choice_skips_out_of_range_numbers_for_the_first_in_range() -> None:
    """Numbers outside 1..count are skipped in favour of the first one inside."""
    assert parse_choice("Of the 5 drafts, 10 points to 2", 3) == 2


@given(st.text(max_size=200), st.integers(min_value=1, max_value=7))
def test_parse_choice_is_none_or_in_range(raw: str, count: int) -> None:
    """Whatever the judge says, the parsed choice is None or within 1..count."""
    choice = parse_choice(raw, count)
    assert choice is None or 1 <= choice <= count


def test_fallback_prefers_weight_then_lowest_model_id() -> None:
    """The fallback candidate is the highest-weight model's, ties broken by model id."""
    models = [
        ModelConfig("m-b", "p", weight=8),
        ModelConfig("m-a", "p", weight=8),
        ModelConfig("m-c", "p", weight=9),
    ]
    assert fallback_choice(models) == 3
    assert fallback_choice(models[:2]) == 2
    assert fallback_choice(models[:1]) == 1


def test_render_task_joins_the_conversation() -> None:
    """A single message renders as its text; a conversation as role-prefixed turns."""
    assert render_task([Message("user", "hi")]) == "hi"
    text = render_task([Message("system", "be brief"), Message("user", "plan it")])
    assert text == "system: be brief\n\nuser: plan it"
