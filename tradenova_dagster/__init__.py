"""TradeNova: autonomous options trading on Alpaca, orchestrated by Dagster.

The package ``tradenova_dagster`` is the trading core in plain Python; only
``tradenova_dagster.definitions`` imports Dagster (see DESIGN.md §1).
"""

__version__ = "0.1.0"
