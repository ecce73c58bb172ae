"""Running TradeNova beyond one laptop: instance profiles (``tradenova init``) and the
PostgreSQL connection check they rely on. Plain Python: the ``dagster.yaml`` is text that
Dagster reads, so nothing here imports Dagster."""
