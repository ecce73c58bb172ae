"""AlpacaBroker on alpaca-py's real TradingClient against the local Alpaca server: the
protocol end to end, and the guards against alpaca-py's traps."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from alpaca.trading.client import TradingClient

from broker_helpers import StepClock, bar, call_symbol
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading
from tradenova_dagster.broker import (
    AlpacaBroker,
    BrokerExecutor,
    BrokerRejected,
    LiveTradingRefused,
    NotFound,
    SimBroker,
    TransientBrokerError,
)
from tradenova_dagster.domain import Order, OrderClass, OrderStatus, OrderType


@pytest.fixture
def world(store):
    clock = StepClock()
    sim = SimBroker("alpaca_paper:test", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    with FakeAlpacaTrading(sim, hang_s=1.5, page_size=25) as fake:
        broker = AlpacaBroker(API_KEY, SECRET_KEY, paper=True, url_override=fake.url, data_url=fake.url,
                              timeout_s=1.0, read_backoff_s=0.01)
        broker.get_clock()  # warm the server (calendar) outside the timed paths
        yield sim, fake, broker, clock


def test_the_protocol_round_trips_through_alpaca_py(world):
    sim, fake, broker, clock = world
    placed = broker.submit_order(Order("SPY", 10, "buy", "rt-1"))
    assert placed.status is OrderStatus.NEW and placed.client_order_id == "rt-1"
    assert fake.log[-1]["body"] == {"symbol": "SPY", "qty": 10, "side": "buy", "type": "market",
                                    "time_in_force": "day", "client_order_id": "rt-1"}
    assert broker.get_order(placed.id).id == placed.id
    assert broker.get_order_by_client_id("rt-1").id == placed.id
    sim.on_bar(clock.minutes(1), "SPY", bar(501))
    positions = broker.get_positions()
    assert [(p.symbol, p.qty, p.avg_entry_price) for p in positions] == [("SPY", 10, pytest.approx(501.005))]
    assert broker.get_position("QQQ") is None
    bracket = broker.submit_order(Order("SPY", 2, "buy", "rt-2", "limit", limit_price=501, order_class="bracket",
                                        take_profit_price=520, stop_loss_price=480, stop_loss_limit_price=479))
    assert fake.log[-1]["body"]["take_profit"] == {"limit_price": 520.0}
    assert fake.log[-1]["body"]["stop_loss"] == {"stop_price": 480.0, "limit_price": 479.0}
    assert bracket.order_class is OrderClass.BRACKET and bracket.take_profit_price == 520
    assert bracket.stop_loss_price == 480 and {leg.status for leg in bracket.legs} == {OrderStatus.HELD}
    open_orders = broker.list_orders("open")
    assert {o.client_order_id for o in open_orders if o.parent_id is None} == {"rt-2"}
    assert {o.parent_id for o in open_orders if o.parent_id} == {bracket.id}  # legs known as legs
    replaced = broker.replace_order(bracket.id, limit_price=500.5, client_order_id="rt-2b")
    assert replaced.limit_price == 500.5 and broker.get_order(bracket.id).status is OrderStatus.REPLACED
    broker.cancel_order(replaced.id)
    with pytest.raises(BrokerRejected) as caught:
        broker.cancel_order(replaced.id)
    assert caught.value.status_code == 422
    with pytest.raises(NotFound):
        broker.get_order_by_client_id("never-sent")
    oco = broker.submit_order(Order("SPY", 10, "sell", "rt-3", "limit", limit_price=530, order_class="oco",
                                    take_profit_price=530, stop_loss_price=490))
    assert "limit_price" not in fake.log[-1]["body"]  # alpaca-py's OCO shape: the take-profit carries it
    assert (oco.take_profit_price, oco.stop_loss_price) == (530, 490)
    assert broker.cancel_all_orders()
    closing = broker.close_position("SPY", qty=4)
    assert (closing.side.value, closing.qty) == ("sell", 4)
    closing_all = broker.close_all_positions(cancel_orders=True)
    assert [(o.symbol, o.qty) for o in closing_all] == [("SPY", 10)]  # the pending close of 4 was canceled
    sim.on_bar(clock.minutes(1), "SPY", bar(502))
    assert broker.get_positions() == []
    account = broker.get_account()
    assert account.account_id == "alpaca_paper:test" and account.can_trade
    assert account.equity == pytest.approx(sim.get_account().equity)
    assert broker.get_clock().next_close == pd.Timestamp("2024-03-04 21:00", tz="UTC")
    assert len(broker.list_orders("closed")) >= 3


def test_option_contracts_follow_pagination_and_quotes_come_from_the_data_api(world):
    sim, fake, broker, clock = world
    contracts = broker.list_option_contracts("SPY", option_type="call", expiration_date_lte=pd.Timestamp(
        "2024-03-15").date(), strike_gte=490, strike_lte=510)
    assert fake.requests_to("GET", "/v2/options/contracts") >= 2  # 42 contracts, pages of 25
    assert len(contracts) == 2 * 21 and {c.option_type.value for c in contracts} == {"call"}
    assert all(490 <= c.strike <= 510 for c in contracts)
    snapshot = broker.get_option_snapshot(call_symbol(500))
    sim_quote = sim.get_quote(call_symbol(500))
    assert (snapshot["quote"].bid, snapshot["quote"].ask) == (sim_quote.bid, sim_quote.ask)
    assert 0.05 < snapshot["implied_volatility"] < 0.5
    assert broker.get_quote("SPY").mid == pytest.approx(500.0)
    assert broker.get_asset(call_symbol(500)).tradable
    with pytest.raises(NotFound):
        broker.get_asset("NOPE")


def test_alpaca_py_does_not_retry_a_post_by_itself(world):
    sim, fake, broker, clock = world
    fake.inject("http_429", when="before")
    started = time.monotonic()
    with pytest.raises(TransientBrokerError) as caught:
        broker.submit_order(Order("SPY", 1, "buy", "no-retry"))
    assert caught.value.status_code == 429
    assert fake.requests_to("POST", "/v2/orders") == 1  # alpaca-py alone would have sent it 4 times
    assert time.monotonic() - started < 2  # nor slept its 3 seconds
    fake.inject("http_502_html", when="before")
    with pytest.raises(TransientBrokerError):
        broker.submit_order(Order("SPY", 1, "buy", "no-retry-2"))
    assert fake.requests_to("POST", "/v2/orders") == 2


def test_a_reply_that_never_comes_times_out(world):
    sim, fake, broker, clock = world
    fake.inject("timeout", when="after")
    started = time.monotonic()
    with pytest.raises(TransientBrokerError) as caught:
        broker.submit_order(Order("SPY", 1, "buy", "hung"))
    assert caught.value.kind == "timeout" and caught.value.maybe_sent
    assert time.monotonic() - started < 1.5  # the 1 s timeout, not the 1.5 s hang
    fake.wait_idle()


def test_an_html_error_page_is_classified_by_status_not_parsed(world):
    sim, fake, broker, clock = world
    fake.inject("http_502_html", when="before", method="GET", path="/v2/account", times=3)
    with pytest.raises(TransientBrokerError) as caught:
        broker.get_account()
    assert caught.value.status_code == 502 and caught.value.code is None
    assert "502 Bad Gateway" in caught.value.message
    assert fake.requests_to("GET", "/v2/account") == 3  # reads are retried (they are idempotent)
    fake.inject("http_500_html", when="before", method="GET", path="/v2/account")
    assert broker.get_account().cash == 100_000  # one failure, then an answer


def test_unknown_enum_values_in_a_reply_do_not_break_parsing(world):
    sim, fake, broker, clock = world
    fake.inject("unknown_enum", when="after")
    order = broker.submit_order(Order("SPY", 1, "buy", "new-enums", "limit", limit_price=400))
    assert order.status is OrderStatus.NEW and order.is_open  # unknown status: treated as open
    assert order.order_type is OrderType.LIMIT or order.order_type is OrderType.MARKET
    assert order.client_order_id == "new-enums"


def test_datetimes_must_be_aware_and_go_out_as_utc(world):
    sim, fake, broker, clock = world
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        broker.list_orders("all", after=pd.Timestamp("2024-03-04 09:00").to_pydatetime())
    broker.list_orders("all", after=pd.Timestamp("2024-03-04 09:00", tz="America/New_York").to_pydatetime())
    assert fake.log[-1]["query"]["after"] == "2024-03-04T14:00:00+00:00"


def test_live_trading_needs_the_explicit_opt_in(world, monkeypatch):
    sim, fake, broker, clock = world
    monkeypatch.delenv("TRADENOVA_ALLOW_LIVE", raising=False)
    with pytest.raises(LiveTradingRefused, match="TRADENOVA_ALLOW_LIVE=1"):
        AlpacaBroker(API_KEY, SECRET_KEY, paper=False, url_override=fake.url)
    live_client = TradingClient(API_KEY, SECRET_KEY, paper=False)
    with pytest.raises(LiveTradingRefused):
        BrokerExecutor(live_client)
    monkeypatch.setenv("TRADENOVA_ALLOW_LIVE", "1")
    live = AlpacaBroker(API_KEY, SECRET_KEY, paper=False, url_override=fake.url)
    assert not live.paper and live.get_account().cash == 100_000
    assert "test-trading" not in repr(live)  # keys never shown


def test_executor_wraps_a_raw_trading_client_and_leaves_it_untouched(world):
    sim, fake, broker, clock = world
    client = TradingClient(API_KEY, SECRET_KEY, paper=True, url_override=fake.url)
    executor = BrokerExecutor(client, clock=clock, timeout_s=2.0)
    assert isinstance(executor.broker, AlpacaBroker)
    assert client._retry == 3 and client._session is not executor.broker.client._session
    result = executor.execute_order(call_symbol(500), 2, "buy")  # routed with the data API's quote
    assert result.outcome == "submitted" and result.order.order_type is OrderType.LIMIT
    assert "marketable limit" in result.route
    assert any(e["path"] == "/v1beta1/options/snapshots" for e in fake.log)
