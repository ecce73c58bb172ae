"""The DuckDB stores as a Dagster resource: the shared database and the account ledgers."""

from __future__ import annotations

from typing import Optional

import dagster as dg

from tradenova_dagster.ledger.accounts import ledger_store, shared_store
from tradenova_dagster.store import Store


class StoreResource(dg.ConfigurableResource):
    """TradeNova's DuckDB files (DESIGN.md §2, §5).

    ``get_store()``: the shared database, ``db_path`` (default
    ``$TRADENOVA_HOME/tradenova.duckdb``): market data, market context, models, the kill
    switch. Short connections under a cross-process file lock, so every step process of
    every run can use it at once. ``ledger(account)``: the account's own file under
    ``$TRADENOVA_HOME/ledgers/``, written only by the run holding the account's lease.
    """

    db_path: Optional[str] = None

    def get_store(self) -> Store:
        return shared_store(self.db_path)

    def ledger(self, account: str) -> Store:
        return ledger_store(account)
