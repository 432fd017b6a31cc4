"""The persistent store: SQLAlchemy Core tables, Alembic migrations, one repository per
aggregate. The same code runs on SQLite (embedded default) and PostgreSQL."""

from tokenhub.store.db import Database
from tokenhub.store.models import ModelRepo
from tokenhub.store.providers import ProviderRepo
from tokenhub.store.settings import SettingsRepo

__all__ = ["Database", "ModelRepo", "ProviderRepo", "SettingsRepo"]
