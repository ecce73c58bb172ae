"""The book's per-day view of what was closed (``realized_on``, ``round_trips_on``) equals
a scan of every closed part by its New York date, however fills fall across days and
midnights: the per-day index exists so a year-long backtest's risk checks stay O(day)."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from tradenova_dagster.domain import Side
from tradenova_dagster.ledger.book import Book, LedgerFill, trading_date

START = datetime(2023, 3, 10, 13, 0, tzinfo=timezone.utc)  # spans a DST change and UTC midnights
SYMBOLS = ("SPY230317C00400000", "SPY230317P00390000")


@st.composite
def fills(draw):
    """Buys and sells (never more than held) of two contracts over a few weeks."""
    out, held, ts = [], dict.fromkeys(SYMBOLS, 0), START
    for i in range(draw(st.integers(1, 60))):
        ts += timedelta(minutes=draw(st.integers(1, 60 * 30)))
        symbol = draw(st.sampled_from(SYMBOLS))
        sell = held[symbol] > 0 and draw(st.booleans())
        qty = draw(st.integers(1, held[symbol])) if sell else draw(st.integers(1, 3))
        held[symbol] += -qty if sell else qty
        out.append(LedgerFill(f"f{i}", symbol, Side.SELL if sell else Side.BUY, float(qty),
                              draw(st.floats(0.05, 20.0)), draw(st.sampled_from((0.0, 0.65))), ts))
    return out


@settings(max_examples=200, deadline=None)
@given(fills())
def test_per_day_views_equal_a_scan_of_every_closed_part(seq):
    book = Book.from_fills(10_000.0, seq)
    for day in {trading_date(f.ts) for f in seq} | {trading_date(START - timedelta(days=1))}:
        parts = [p for p in book.closed if trading_date(p.fill.ts) == day]
        assert book.realized_on(day) == sum(p.pnl for p in parts)
        assert book.round_trips_on(day) == [p.position_pnl for p in parts if p.closes_position]
