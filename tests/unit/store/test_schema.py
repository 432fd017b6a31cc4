"""Schema pieces that need no database: the migration chain and the upsert statement."""

from __future__ import annotations

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import postgresql, sqlite

from tokenhub.store.db import MIGRATIONS_DIR, upsert
from tokenhub.store.schema import metadata
from tokenhub.store.tables import models, providers


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def test_migration_chain_is_linear_with_one_head() -> None:
    """The shipped revisions form one unbranched chain starting at 0001."""
    scripts = _scripts()
    assert len(scripts.get_heads()) == 1
    chain = [rev.revision for rev in scripts.walk_revisions()][::-1]
    assert chain[0] == "0001"
    assert scripts.get_revision("0001").down_revision is None
    assert len(chain) == len(set(chain))


def test_constraints_follow_the_naming_convention() -> None:
    """Primary and foreign keys get predictable names that later migrations can reference."""
    assert providers.primary_key.name == "pk_providers"
    (fk,) = models.foreign_keys
    assert fk.constraint is not None and fk.constraint.name == "fk_models_provider_id_providers"
    assert fk.ondelete == "CASCADE"
    assert {"models", "providers", "settings"} <= set(metadata.tables)
    for table in metadata.tables.values():
        if table.primary_key.columns:
            assert table.primary_key.name == f"pk_{table.name}"


@pytest.mark.parametrize("name,dialect", [("sqlite", sqlite), ("postgresql", postgresql)])
def test_upsert_updates_all_but_key_and_kept_columns(name: str, dialect: object) -> None:
    """The ON CONFLICT clause targets the primary key and never overwrites kept columns."""
    values = {"id": "p", "type": "mock", "created_at": 1.0, "updated_at": 2.0}
    stmt = upsert(name, providers, values, keep=("created_at",))
    sql = str(stmt.compile(dialect=dialect.dialect()))  # type: ignore[attr-defined]
    conflict = sql.split("ON CONFLICT", 1)[1]
    assert conflict.lstrip().startswith("(id) DO UPDATE SET")
    assert "type = excluded.type" in conflict and "updated_at = excluded.updated_at" in conflict
    assert "created_at" not in conflict and "id = excluded.id" not in conflict


def test_upsert_on_an_unknown_backend_is_refused() -> None:
    """Backends without an ON CONFLICT construct get a ValueError naming them."""
    with pytest.raises(ValueError, match="mysql"):
        upsert("mysql", providers, {"id": "p"})
