"""Alembic environment for TokenHub, driven only by ``Database.migrate()``.

``Database.migrate()`` hands over an open connection in ``config.attributes``; there is
no ``alembic.ini`` and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from tokenhub.store.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("TokenHub migrations run through Database.migrate()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; use Database.migrate()")
run_migrations_online()
