"""What a session does once, before its first bar, to carry on where the account stands:
rebuild the signal from the bars already acted on, and record where the broker's
positions differ from the ledger's. ``TradingSession._start`` calls these."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from tradenova_dagster.domain import Bar, Side
from tradenova_dagster.ledger import AccountLedger, ClosedPart, LedgerFill
from tradenova_dagster.session.runtime import Runtime


def position_state(direction: int, pnl: float, bars: int):
    """What the signal sees of the position (FLAT when there is none)."""
    from tradenova_dagster.rl.features import FLAT, PositionState

    return PositionState(direction, pnl, bars) if direction else FLAT


def replay_history(signal, runtime: Runtime, day, symbol: str, history: pd.DataFrame) -> None:
    """Feed the day's bars already acted on to the signal, each with the position it saw
    then (``session_bars``), so its features and EMA are as they were; act on none."""
    kept = list(getattr(signal, "predictions", []) or [])
    seen = {pd.Timestamp(ts): (d, p, b) for ts, d, p, b in runtime.store.query(
        "SELECT bar_ts, position_direction, position_pnl, position_bars FROM session_bars"
        " WHERE account = ? AND day = ?", [runtime.account, day])}
    for row in history.itertuples(index=False):
        ts = pd.Timestamp(row.timestamp)
        bar = Bar(symbol, ts.to_pydatetime(), row.open, row.high, row.low, row.close, row.volume)
        signal.on_bar(bar, position_state(*seen.get(ts, (0, 0.0, 0))))
    if isinstance(getattr(signal, "predictions", None), list):
        signal.predictions[:] = kept  # warm-up predictions are not new predictions


def reconcile_positions(runtime: Runtime, ledger: AccountLedger, ours, now: datetime, positions=None
                        ) -> list[tuple[LedgerFill, ClosedPart]]:
    """Where the broker and the ledger still disagree on a position of ours (``ours(symbol)``),
    the broker holds the truth: record the difference as a ``reconcile`` fill, with a
    ``session_events`` row. Returns what those fills closed. ``positions``: the broker's,
    when the caller already asked for them this bar."""
    positions = runtime.broker.get_positions() if positions is None else positions
    held = {p.symbol: p for p in positions if ours(p.symbol)}
    closed = []
    for symbol in sorted(set(held) | {s for s in ledger.book.positions if ours(s)}):
        broker_qty = float(held[symbol].qty) if symbol in held else 0.0
        diff = broker_qty - ledger.book.qty(symbol)
        if abs(diff) < 1e-9:
            continue
        if diff > 0:
            price = held[symbol].avg_entry_price
        else:
            quote = runtime.broker.get_quote(symbol)
            price = quote.bid if quote and quote.bid > 0 else 0.0
        fill = LedgerFill(f"reconcile:{symbol}:{now.isoformat()}", symbol, Side.BUY if diff > 0 else Side.SELL,
                          abs(diff), price, 0.0, now, None, "reconcile")
        part = ledger.record_fill(fill)
        if part is not None:
            closed.append((fill, part))
        runtime.record("session", "reconcile", {"symbol": symbol, "broker_qty": broker_qty,
                                                "ledger_qty": broker_qty - diff, "price": price})
    return closed
