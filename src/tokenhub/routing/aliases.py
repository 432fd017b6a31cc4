"""Model aliases and the ``"*"`` diversity hint, resolved in memory on the hot path.

An alias names one registered model or a weighted set of them (a canary split such as
90/10). ``resolve_detail(hint)`` turns a request's model hint into the hint the router
sees:

- an alias -> one of its targets, in proportion to the weights;
- ``"*"`` -> the next model of the diversity pool, round-robin (an empty pool, or one
  none of whose models is routable any more, means every routable model);
- anything else -> unchanged.

Choosing among targets: smooth weighted round-robin (the nginx algorithm) by default. It
is deterministic and exact: over every ``sum(weights)`` picks a 90/10 alias sends
exactly 90 and 10, interleaved rather than in bursts, with no RNG on the hot path. Pass
``rng`` to draw at random by weight instead (reproducible with a seeded RNG). Each
replica keeps its own rotation, so the split holds per replica, and hence overall.

A target that is later disabled or removed is still returned: a model hint is only a
preference to the router, which then ranks the remaining models as usual.
"""

from __future__ import annotations

import builtins
import random
from collections.abc import Callable, Collection, Iterable, Sequence

from tokenhub.errors import NotFound, Unprocessable
from tokenhub.store.aliases import AliasRecord, AliasRepo, AliasTarget

ANY_MODEL = "*"
MAX_TARGETS = 32
MAX_NAME = 200


class _Picker:
    """Chooses one target of an alias per call (smooth WRR, or weighted random)."""

    __slots__ = ("current", "models", "rng", "total", "weights")

    def __init__(self, targets: Sequence[AliasTarget], rng: random.Random | None) -> None:
        self.models = [t.model for t in targets]
        self.weights = [float(t.weight) for t in targets]
        self.total = sum(self.weights)
        self.current = [0.0] * len(targets)
        self.rng = rng

    def pick(self) -> str:
        if len(self.models) == 1:
            return self.models[0]
        if self.rng is not None:
            return self.rng.choices(self.models, self.weights)[0]
        current = self.current
        best = 0
        for i, weight in enumerate(self.weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self.total
        return self.models[best]


class AliasTable:
    """Aliases and the diversity pool, loaded once by ``load()`` and kept in memory.

    ``routable`` lists the ids of the models the router may use now (the ``"*"``
    fallback); ``known`` tells whether a model id is registered at all (targets and
    pool members must be). Mutations write the store first, then the memory map, and
    raise ``Unprocessable`` (422) or ``NotFound`` (404) for the admin API to render.
    """

    def __init__(
        self,
        repo: AliasRepo,
        *,
        routable: Callable[[], list[str]],
        known: Callable[[str], bool],
        rng: random.Random | None = None,
    ) -> None:
        self._repo = repo
        self._routable = routable
        self._known = known
        self._rng = rng
        self._records: dict[str, AliasRecord] = {}
        self._pickers: dict[str, _Picker] = {}
        self._pool: builtins.list[str] = []
        self._turn = 0
        self._version = 0  # bumped by every local change: a reload must not undo one

    async def load(self) -> None:
        """Read every alias and the pool from the store, replacing what is held.

        A local change made while the store was being read wins: the read is retried,
        so a reload (another replica's change arriving) never brings back stale data.
        Unchanged aliases keep their pickers, so weighted rotation goes on evenly.
        """
        while True:
            version = self._version
            records = await self._repo.list()
            pool = await self._repo.get_pool()
            if version == self._version:
                break
        old = self._records
        self._records = {r.name: r for r in records}
        self._pickers = {
            r.name: self._pickers[r.name]
            if old.get(r.name) == r and r.name in self._pickers
            else _Picker(r.targets, self._rng)
            for r in records
        }
        self._pool = pool

    def list(self) -> builtins.list[AliasRecord]:
        """Every alias, by name."""
        return [self._records[name] for name in sorted(self._records)]

    def get(self, name: str) -> AliasRecord:
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"alias '{name}' not found")
        return record

    async def set(self, name: str, targets: Iterable[AliasTarget]) -> AliasRecord:
        """Create or replace an alias after checking its name and targets."""
        record = AliasRecord(name, tuple(targets))
        self._check_name(name)
        self._check_targets(record.targets)
        await self._repo.put(record)
        self._version += 1
        self._records[name] = record
        self._pickers[name] = _Picker(record.targets, self._rng)
        return record

    async def delete(self, name: str) -> None:
        """Remove an alias; ``NotFound`` when there is none of that name."""
        if not await self._repo.delete(name) and name not in self._records:
            raise NotFound(f"alias '{name}' not found")
        self._version += 1
        self._records.pop(name, None)
        self._pickers.pop(name, None)

    def pool(self) -> builtins.list[str]:
        """The diversity pool as configured (empty: every routable model)."""
        return list(self._pool)

    async def set_pool(self, model_ids: Sequence[str]) -> builtins.list[str]:
        """Replace the diversity pool; every id must be a registered model."""
        pool = list(dict.fromkeys(model_ids))  # drop repeats, keep the order
        unknown = [m for m in pool if not self._known(m)]
        if unknown:
            raise Unprocessable(f"unknown model(s) in pool: {', '.join(unknown)}")
        await self._repo.put_pool(pool)
        self._version += 1
        self._pool = pool
        return list(pool)

    def resolve(self, hint: str | None) -> str | None:
        """The model hint to route with (see the module docstring)."""
        return self.resolve_detail(hint)[0]

    def resolve_detail(self, hint: str | None) -> tuple[str | None, str | None]:
        """``(model_hint, alias_name)``; ``alias_name`` is the alias used, ``"*"`` for
        the diversity hint, None when ``hint`` was neither."""
        if hint is None:
            return None, None
        picker = self._pickers.get(hint)
        if picker is not None:
            return picker.pick(), hint
        if hint == ANY_MODEL:
            return self._next_diverse(), ANY_MODEL
        return hint, None

    def _next_diverse(self) -> str | None:
        candidates = self._pool_candidates()
        if not candidates:
            return None  # nothing routable: let the router choose (and explain) freely
        turn = self._turn % len(candidates)
        self._turn = turn + 1
        return candidates[turn]

    def _pool_candidates(self) -> builtins.list[str]:
        routable = self._routable()
        if not self._pool:
            return routable
        live = set(routable)
        return [m for m in self._pool if m in live] or routable

    def _check_name(self, name: str) -> None:
        if name == ANY_MODEL:
            raise Unprocessable("'*' is reserved for the diversity pool")
        if not 1 <= len(name) <= MAX_NAME or not _printable(name):
            raise Unprocessable(f"alias name must be 1-{MAX_NAME} printable characters")
        if self._known(name):
            raise Unprocessable(f"alias '{name}' collides with a registered model id")

    def _check_targets(self, targets: Collection[AliasTarget]) -> None:
        if not 1 <= len(targets) <= MAX_TARGETS:
            raise Unprocessable(f"an alias needs 1-{MAX_TARGETS} targets")
        models = [t.model for t in targets]
        if len(set(models)) != len(models):
            raise Unprocessable("an alias lists each target model once")
        if any(not t.weight > 0 for t in targets):
            raise Unprocessable("target weights must be > 0")
        unknown = [m for m in models if not self._known(m)]
        if unknown:
            raise Unprocessable(f"unknown target model(s): {', '.join(unknown)}")


def _printable(text: str) -> bool:
    return text.isprintable() and not any(c.isspace() for c in text)
