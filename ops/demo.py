"""The offline demo: what ``tradenova demo`` runs, through Dagster on a persistent instance.

Runs are recorded in TradeNova's DAGSTER_HOME, so after the demo ``tradenova ui`` shows
them (and the asset checks) in the web UI.
"""

from dataclasses import dataclass, field

import dagster as dg

from tradenova_dagster import config
from tradenova_dagster.market import calendar
from tradenova_dagster.market.bars_store import load_stored_bars, quality_verdict
from tradenova_dagster.market.context import load_context
from tradenova_dagster.metrics.store import Store


@dataclass
class DemoSummary:
    day: str
    run_id: str
    ok: bool
    lines: list[str] = field(default_factory=list)

    def render(self) -> str:
        status = "OK" if self.ok else "FAILED"
        header = [
            f"TradeNova demo for {self.day}: {status}",
            f"  home:    {config.home()}",
            f"  dagster: {config.dagster_home()} (run {self.run_id})",
        ]
        return "\n".join(header + self.lines)


def run_demo(day: str | None = None, symbols: list[str] | None = None) -> DemoSummary:
    from tradenova_dagster.definitions import defs

    symbols = [s.upper() for s in (symbols or ["SPY"])]
    target = calendar.require_trading_day(day, "date") if day else calendar.last_completed_session()
    config.use_dagster_home()
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key=target.isoformat(),
            asset_selection=[dg.AssetKey("market_bars"), dg.AssetKey("market_context")],
            run_config={
                "ops": {"market_bars": {"config": {"symbols": symbols}}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            instance=instance,
            raise_on_error=False,
        )
    summary = DemoSummary(target.isoformat(), result.run_id, result.success)
    store = Store()
    for symbol in symbols:
        bars = load_stored_bars(store, symbol, target)
        verdict = quality_verdict(store, symbol, target)
        if bars.empty:
            summary.lines.append(f"  {symbol}: no bars stored")
            continue
        change = 100 * (bars["close"].iloc[-1] / bars["open"].iloc[0] - 1)
        summary.lines.append(
            f"  {symbol}: {len(bars)} bars, open {bars['open'].iloc[0]:.2f}, close {bars['close'].iloc[-1]:.2f} "
            f"({change:+.2f}%), volume {bars['volume'].sum():,.0f}, checks "
            f"{'passed' if verdict and verdict[0] else 'FAILED ' + (verdict[1] if verdict else '')}"
        )
    ctx = load_context(store, target)
    if ctx:
        summary.lines.append(
            f"  context: VIX {ctx.vix:.2f}, IV rank {ctx.iv_rank:.1f}, 20-day realised vol {ctx.realized_vol:.1%} "
            f"(source {ctx.source})"
        )
    summary.lines.append(f"  database: {store.path}")
    return summary
