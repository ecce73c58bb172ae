"""Market data assets: a day of bars per trading-day partition, and that day's context.

Also ``table_metadata``, the typed table the asset modules record (the UI shows it as a
sortable table with its column schema, where markdown would be a block of text)."""

from datetime import date, datetime

import dagster as dg

from assets.partitions import partition_day, trading_day_partitions
from resources.market_data import MarketDataResource
from resources.store import StoreResource
from tradenova_dagster.market import calendar, quality
from tradenova_dagster.market.bars_store import save_day
from tradenova_dagster.market.context import compute_context, save_context


OWNERS = ["team:market-data"]


def table_metadata(rows: list[dict], columns: dict[str, str]) -> dg.TableMetadataValue:
    """``rows`` as a typed Dagster table. ``columns``: name → type (string, int, float, bool,
    timestamp), in display order; an empty table still shows its columns."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    return dg.MetadataValue.table([dg.TableRecord({name: _cell(row.get(name)) for name in columns}) for row in rows],
                                  schema=schema)


def _cell(value):
    """A table cell: a plain str, int, float, bool or None (numpy scalars, enums and times converted)."""
    if hasattr(value, "item"):  # numpy and pandas scalars
        value = value.item()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(getattr(value, "value", value))


class MarketBarsConfig(dg.Config):
    symbols: list[str] = ["SPY"]
    max_missing_fraction: float = 0.02  # a few missing minutes warn; more is an error


@dg.asset(
    partitions_def=trading_day_partitions,
    group_name="market_data",
    kinds={"duckdb"},
    owners=OWNERS,
    check_specs=[
        dg.AssetCheckSpec(name, asset="market_bars", description=description, blocking=True)
        for name, description in quality.CHECKS.items()
    ],
    description="The regular-session 1-minute bars of one NYSE trading day, stored in DuckDB "
    "(table market_bars). Re-materialising a day replaces it. Failed checks block downstream "
    "assets and the session refuses to trade that day.",
)
def market_bars(
    context: dg.AssetExecutionContext,
    config: MarketBarsConfig,
    store: StoreResource,
    market_data: MarketDataResource,
):
    day = partition_day(context.partition_key)
    source = market_data.get_source()
    symbols = [s.strip().upper() for s in config.symbols]
    if not symbols:
        raise ValueError("market_bars.symbols is empty: name at least one symbol, e.g. ['SPY']")

    # Fetch and check everything before writing anything: one bad symbol writes nothing.
    bars = {symbol: source.bars(symbol, day) for symbol in symbols}
    outcomes = {s: quality.check_bars(b, day, config.max_missing_fraction) for s, b in bars.items()}
    rows = save_day(store.get_store(), day, bars, source.name, outcomes)

    first = next(iter(bars.values()))
    yield dg.MaterializeResult(
        metadata={
            "rows": rows,
            "symbols": ", ".join(symbols),
            "source": source.name,
            "session": f"{calendar.session_open_close(day)[0].tz_convert(calendar.NEW_YORK):%H:%M}"
            f"-{calendar.session_open_close(day)[1].tz_convert(calendar.NEW_YORK):%H:%M} New York",
            "early_close": calendar.is_early_close(day),
            f"{symbols[0]} open": float(first["open"].iloc[0]),
            f"{symbols[0]} close": float(first["close"].iloc[-1]),
            f"{symbols[0]} day return %": round(
                100 * (float(first["close"].iloc[-1]) / float(first["open"].iloc[0]) - 1), 3
            ),
            "preview": table_metadata(first.head(5).to_dict("records"), _bar_columns(first)),
        }
    )
    for name in quality.CHECKS:
        results = [next(o for o in outcomes[s] if o.name == name) for s in symbols]
        failed = [(s, o) for s, o in zip(symbols, results) if not o.passed]
        warn_only = bool(failed) and all(o.severity == quality.WARN for _, o in failed)
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not failed,
            severity=dg.AssetCheckSeverity.WARN if warn_only else dg.AssetCheckSeverity.ERROR,
            description="; ".join(f"{s}: {o.detail}" for s, o in failed) or "ok",
            metadata={f"{s} {k}": v for s, o in zip(symbols, results) for k, v in o.metadata.items()},
        )


def _bar_columns(bars) -> dict[str, str]:
    kinds = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "timestamp"}
    return {str(name): kinds.get(dtype.kind, "string") for name, dtype in bars.dtypes.items()}


class MarketContextConfig(dg.Config):
    underlying: str = "SPY"


@dg.asset(
    partitions_def=trading_day_partitions,
    group_name="market_data",
    kinds={"duckdb"},
    owners=OWNERS,
    description="What is known at the open of a trading day: previous VIX close, IV rank "
    "(VIX within its 252-session range) and 20-day realised volatility (table market_context).",
)
def market_context(
    context: dg.AssetExecutionContext,
    config: MarketContextConfig,
    store: StoreResource,
    market_data: MarketDataResource,
) -> dg.MaterializeResult:
    day = partition_day(context.partition_key)
    ctx = compute_context(market_data.get_source(), day, config.underlying)
    save_context(store.get_store(), ctx)
    return dg.MaterializeResult(
        metadata={
            "vix": ctx.vix,
            "iv_rank": ctx.iv_rank,
            "realized_vol": ctx.realized_vol,
            "underlying_close": ctx.underlying_close,
            "source": ctx.source,
        }
    )
