"""The whole schema: every module that declares tables, imported for their side effect
on the shared ``MetaData``. Alembic's environment and the schema tests read it here."""

from __future__ import annotations

from tokenhub.store import aliases, apikeys, audit, bandit, logs, tsdb, vault
from tokenhub.store.tables import metadata

TABLE_MODULES = (aliases, apikeys, audit, bandit, logs, tsdb, vault)

__all__ = ["TABLE_MODULES", "metadata"]
