"""The DuckDB store as a Dagster resource."""

from __future__ import annotations

from typing import Optional

import dagster as dg

from tradenova_dagster.store import Store


class StoreResource(dg.ConfigurableResource):
    """TradeNova's DuckDB database. ``db_path`` defaults to ``$TRADENOVA_HOME/tradenova.duckdb``.

    The store opens a short connection per use under a cross-process file lock, so every
    step process of every run can hold this resource at once (DESIGN.md §5).
    """

    db_path: Optional[str] = None

    def get_store(self) -> Store:
        return Store(self.db_path)
