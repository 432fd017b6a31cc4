"""AliasTable: weighted alias resolution, the "*" diversity pool, checks and persistence."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tokenhub.errors import NotFound, Unprocessable
from tokenhub.routing.aliases import AliasTable
from tokenhub.store.aliases import AliasRepo, AliasTarget
from tokenhub.store.db import Database


class Models:
    """The registered models and which of them are routable, editable by a test."""

    def __init__(self, *ids: str) -> None:
        self.known = list(ids)
        self.disabled: set[str] = set()

    def routable(self) -> list[str]:
        return [m for m in self.known if m not in self.disabled]

    def has(self, model_id: str) -> bool:
        return model_id in self.known


@pytest.fixture
def db(sqlite_db: Database) -> Database:
    """These tests are about their subject, not the store: SQLite only."""
    return sqlite_db


@pytest.fixture
def models() -> Models:
    return Models("gpt-a", "gpt-b", "claude-c")


def new_table(db: Database, models: Models, rng: random.Random | None = None) -> AliasTable:
    return AliasTable(AliasRepo(db), routable=models.routable, known=models.has, rng=rng)


@pytest.fixture
async def table(db: Database, models: Models) -> AliasTable:
    t = new_table(db, models)
    await t.load()
    return t


def split(target_weights: dict[str, float]) -> list[AliasTarget]:
    return [AliasTarget(m, w) for m, w in target_weights.items()]


async def test_single_target_alias_resolves_to_its_model(table: AliasTable) -> None:
    """An alias naming one model always resolves to that model and reports the alias."""
    await table.set("fast", [AliasTarget("gpt-a", 1)])
    assert {table.resolve("fast") for _ in range(5)} == {"gpt-a"}
    assert table.resolve_detail("fast") == ("gpt-a", "fast")


async def test_unknown_hint_and_none_pass_through(table: AliasTable) -> None:
    """A hint that is no alias comes back unchanged, with no alias name; None stays None."""
    assert table.resolve_detail("gpt-b") == ("gpt-b", None)
    assert table.resolve_detail("no-such-thing") == ("no-such-thing", None)
    assert table.resolve_detail(None) == (None, None)


async def test_canary_split_is_exact_per_cycle(table: AliasTable) -> None:
    """Smooth weighted round-robin sends exactly 90/10 over every 100 picks."""
    await table.set("chat", split({"gpt-a": 90, "gpt-b": 10}))
    for _ in range(3):
        picks = Counter(table.resolve("chat") for _ in range(100))
        assert picks == {"gpt-a": 90, "gpt-b": 10}


async def test_weighted_round_robin_interleaves(table: AliasTable) -> None:
    """A 2/1 split alternates rather than sending runs to one target."""
    await table.set("mix", split({"gpt-a": 2, "gpt-b": 1}))
    assert [table.resolve("mix") for _ in range(6)] == ["gpt-a", "gpt-b", "gpt-a"] * 2


async def test_seeded_rng_draws_by_weight_reproducibly(db: Database, models: Models) -> None:
    """With an RNG the choice is random by weight, the same for the same seed."""
    runs = []
    for _ in range(2):
        t = new_table(db, models, rng=random.Random(7))
        await t.set("chat", split({"gpt-a": 80, "gpt-b": 20}))
        runs.append([t.resolve("chat") for _ in range(1000)])
    assert runs[0] == runs[1]
    share = runs[0].count("gpt-b") / 1000
    assert 0.15 < share < 0.25


async def test_aliases_survive_a_reload(db: Database, models: Models, table: AliasTable) -> None:
    """A new table loading the same store sees the aliases and the pool set before."""
    await table.set("chat", split({"gpt-a": 3, "claude-c": 1}))
    await table.set_pool(["gpt-b", "claude-c"])
    again = new_table(db, models)
    await again.load()
    assert [(r.name, r.targets) for r in again.list()] == [
        ("chat", (AliasTarget("gpt-a", 3), AliasTarget("claude-c", 1)))
    ]
    assert again.pool() == ["gpt-b", "claude-c"]


async def test_set_replaces_targets(table: AliasTable) -> None:
    """Setting an existing alias replaces its targets."""
    await table.set("chat", [AliasTarget("gpt-a", 1)])
    await table.set("chat", [AliasTarget("claude-c", 1)])
    assert table.resolve("chat") == "claude-c"
    assert table.get("chat").targets == (AliasTarget("claude-c", 1),)


async def test_delete_removes_alias_and_unknown_is_not_found(table: AliasTable) -> None:
    """After delete the name passes through unchanged; deleting again is NotFound."""
    await table.set("chat", [AliasTarget("gpt-a", 1)])
    await table.delete("chat")
    assert table.resolve_detail("chat") == ("chat", None)
    with pytest.raises(NotFound):
        await table.delete("chat")
    with pytest.raises(NotFound):
        table.get("chat")


@pytest.mark.parametrize(
    ("name", "targets"),
    [
        ("*", [AliasTarget("gpt-a", 1)]),
        ("gpt-b", [AliasTarget("gpt-a", 1)]),  # collides with a model id
        ("has space", [AliasTarget("gpt-a", 1)]),
        ("", [AliasTarget("gpt-a", 1)]),
        ("chat", [AliasTarget("nope", 1)]),  # unregistered target
        ("chat", [AliasTarget("gpt-a", 0)]),
        ("chat", [AliasTarget("gpt-a", 1), AliasTarget("gpt-a", 2)]),
        ("chat", []),
    ],
)
async def test_invalid_alias_is_rejected_and_not_stored(
    table: AliasTable, name: str, targets: list[AliasTarget]
) -> None:
    """Reserved, colliding or malformed names and bad targets raise 422 and store nothing."""
    with pytest.raises(Unprocessable):
        await table.set(name, targets)
    assert table.list() == []


async def test_star_round_robins_over_every_routable_model(
    table: AliasTable, models: Models
) -> None:
    """With an empty pool, "*" cycles through every routable model in turn."""
    picks = [table.resolve_detail("*") for _ in range(6)]
    assert [p[0] for p in picks] == ["gpt-a", "gpt-b", "claude-c"] * 2
    assert {p[1] for p in picks} == {"*"}
    models.disabled.add("gpt-b")
    assert {table.resolve("*") for _ in range(4)} == {"gpt-a", "claude-c"}


async def test_star_uses_the_pool_and_skips_unroutable_members(
    table: AliasTable, models: Models
) -> None:
    """ "*" cycles through the pool's routable members, or all models when none is."""
    await table.set_pool(["claude-c", "gpt-a"])
    assert [table.resolve("*") for _ in range(4)] == ["claude-c", "gpt-a"] * 2
    models.disabled.add("gpt-a")
    assert {table.resolve("*") for _ in range(3)} == {"claude-c"}
    models.disabled.add("claude-c")
    assert {table.resolve("*") for _ in range(3)} == {"gpt-b"}


async def test_star_with_nothing_routable_is_no_hint(table: AliasTable, models: Models) -> None:
    """ "*" with no routable model leaves the router free to choose (hint None)."""
    models.disabled.update(models.known)
    assert table.resolve_detail("*") == (None, "*")


async def test_pool_rejects_unknown_models_and_drops_repeats(table: AliasTable) -> None:
    """A pool naming an unregistered model is 422; repeats are dropped in order."""
    with pytest.raises(Unprocessable):
        await table.set_pool(["gpt-a", "ghost"])
    assert table.pool() == []
    assert await table.set_pool(["gpt-b", "gpt-a", "gpt-b"]) == ["gpt-b", "gpt-a"]
