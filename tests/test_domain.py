"""Domain types validate on construction; OCC symbols round-trip."""

import math
from datetime import date, datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradenova_dagster.domain import (
    Bar, Decision, Fill, OptionContract, OptionType, Order, OrderType, Position, Quote, Side, Signal,
)

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)


def test_occ_symbol_parse_and_format():
    contract = OptionContract.parse("SPY260116C00600000")
    assert contract == OptionContract("SPY", date(2026, 1, 16), OptionType.CALL, 600.0)
    assert contract.symbol == "SPY260116C00600000"
    assert OptionContract.parse("SPY260116P00612500").strike == 612.5


@given(
    root=st.sampled_from(["SPY", "QQQ", "AAPL", "BRKB", "F"]),
    expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    kind=st.sampled_from(list(OptionType)),
    strike_milli=st.integers(min_value=1, max_value=99_999_999),
)
def test_occ_round_trip(root, expiry, kind, strike_milli):
    contract = OptionContract(root, expiry, kind, strike_milli / 1000)
    assert len(contract.symbol) == len(root) + 15
    assert OptionContract.parse(contract.symbol) == contract


@pytest.mark.parametrize("bad", ["SPY", "SPY26011C00600000", "SPY261316C00600000", "SPY260116X00600000", 42])
def test_bad_occ_symbols_are_refused_with_the_symbol_in_the_message(bad):
    with pytest.raises(ValueError, match=str(bad)):
        OptionContract.parse(bad)


@pytest.mark.parametrize("field,value", [("close", math.nan), ("open", -1.0), ("low", 0.0), ("high", math.inf)])
def test_bar_refuses_bad_prices_naming_field_and_value(field, value):
    values = dict(open=100.0, high=101.0, low=99.0, close=100.5)
    values[field] = value
    with pytest.raises(ValueError, match=rf"{field}.*{value}"):
        Bar("SPY", NOW, volume=10, **values)


def test_bar_refuses_low_above_the_body_and_naive_timestamps():
    with pytest.raises(ValueError, match="low <= open,close <= high"):
        Bar("SPY", NOW, 100, 101, 100.2, 100.5)
    with pytest.raises(ValueError, match="timezone-aware"):
        Bar("SPY", datetime(2026, 11, 20, 15), 100, 101, 99, 100.5)


@pytest.mark.parametrize("qty", [0, -1, math.nan])
def test_order_refuses_non_positive_or_nan_quantity(qty):
    with pytest.raises(ValueError, match=rf"qty.*{qty}"):
        Order("SPY", qty, Side.BUY, client_order_id="x")


def test_order_refuses_unknown_side_and_needs_a_limit_price():
    with pytest.raises(ValueError, match="side: unknown value 'hold'"):
        Order("SPY", 1, "hold", client_order_id="x")
    with pytest.raises(ValueError, match="limit_price is required"):
        Order("SPY", 1, "buy", client_order_id="x", order_type=OrderType.LIMIT)
    order = Order("spy", 2, "BUY", client_order_id="tn-1", order_type="limit", limit_price=10.5)
    assert (order.symbol, order.side, order.order_type, order.is_open) == ("SPY", Side.BUY, OrderType.LIMIT, True)


def test_quote_spread_and_validation():
    quote = Quote("SPY260116C00600000", NOW, bid=1.90, ask=2.10)
    assert quote.mid == pytest.approx(2.0) and quote.spread_pct == pytest.approx(0.10)
    with pytest.raises(ValueError, match="bid 2.2 is above ask 2.1"):
        Quote("SPY", NOW, bid=2.2, ask=2.1)


def test_position_values_options_with_the_multiplier():
    position = Position("SPY260116C00600000", qty=3, avg_entry_price=2.0, current_price=2.5)
    assert position.market_value == pytest.approx(750.0)
    assert position.unrealized_pl == pytest.approx(150.0)
    assert Position("SPY", qty=-10, avg_entry_price=600, current_price=590).unrealized_pl == pytest.approx(100.0)
    with pytest.raises(ValueError, match="qty must be non-zero"):
        Position("SPY", qty=0, avg_entry_price=600)


def test_fill_notional_and_validation():
    assert Fill("o1", "SPY260116C00600000", 2, 1.5, "buy", NOW).notional == pytest.approx(300.0)
    with pytest.raises(ValueError, match="commission must be >= 0"):
        Fill("o1", "SPY", 2, 1.5, "buy", NOW, commission=-1)


@given(st.floats(min_value=-1, max_value=1))
def test_decision_thresholds(action):
    decision = Decision.from_action(action)
    expected = Decision.BUY_PUT if action < -0.3 else Decision.BUY_CALL if action > 0.3 else Decision.FLAT
    assert decision is expected


def test_decision_boundaries_are_flat_and_signal_validates():
    assert Decision.from_action(0.3) is Decision.FLAT and Decision.from_action(-0.3) is Decision.FLAT
    with pytest.raises(ValueError, match="raw_action must be in"):
        Signal(NOW, "SPY", 1.5, 0.2, Decision.FLAT)
