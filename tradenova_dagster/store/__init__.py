"""Storage: the DuckDB store (schema, migrations, connection policy). ``metrics/`` only reads."""

from tradenova_dagster.store.bulk import insert_rows, upsert_row
from tradenova_dagster.store.database import COMMITS, Store, migrations

__all__ = ["COMMITS", "Store", "insert_rows", "migrations", "upsert_row"]
