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
from tradenova_dagster.broker.executor import LongOnlyRefused
from tradenova_dagster.domain import Order, OrderClass, OrderStatus, OrderType
from tradenova_dagster.ledger.book import LongOnlyViolation


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
    broker.cancel_order(bracket.id)
    assert broker.get_order(bracket.id).status is OrderStatus.CANCELED
    with pytest.raises(BrokerRejected) as caught:
        broker.cancel_order(bracket.id)
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
    sim.on_bar(clock.minutes(1), "SPY", bar(502))
    assert [(p.symbol, p.qty) for p in broker.get_positions()] == [("SPY", 6)]
    assert (broker.close_position("SPY").qty, broker.get_position("SPY").qty) == (6, 6)  # the rest, once filled
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


def test_alpaca_broker_refuses_an_option_sell_above_what_is_held_before_sending_it(world):
    sim, fake, broker, clock = world
    option = call_symbol(500)
    with pytest.raises(LongOnlyRefused) as caught:
        broker.submit_order(Order(option, 1, "sell", "naked"))  # nothing held: a naked short
    assert isinstance(caught.value, BrokerRejected) and isinstance(caught.value, LongOnlyViolation)
    assert caught.value.status_code == 403 and f"sell 1 {option} refused" in str(caught.value)
    assert fake.requests_to("POST", "/v2/orders") == 0  # Alpaca never saw it
    broker.submit_order(Order(option, 2, "buy", "open-2"))
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    resting = broker.submit_order(Order(option, 1, "sell", "tp-1", "limit", limit_price=50.0))
    with pytest.raises(LongOnlyRefused, match="holds 2 and open sell orders already claim 1"):
        broker.submit_order(Order(option, 2, "sell", "stop-2"))
    assert fake.requests_to("POST", "/v2/orders") == 2
    assert broker.submit_order(Order(option, 1, "sell", "stop-1")).side.value == "sell"  # both now claimed
    # The same order sent again is not a competing sell: it goes out, and Alpaca answers that it has it.
    with pytest.raises(BrokerRejected) as duplicate:
        broker.submit_order(Order(option, 1, "sell", "tp-1", "limit", limit_price=50.0))
    assert duplicate.value.is_duplicate_client_order_id and fake.requests_to("POST", "/v2/orders") == 4
    sim.on_bar(clock.minutes(1), "SPY", 500.0)
    assert sim.get_position(option).qty == 1 and sim.get_order(resting.id).is_open


def test_alpaca_broker_sends_nothing_when_it_cannot_read_the_holdings(world):
    sim, fake, broker, clock = world
    option = call_symbol(500)
    fake.inject("http_502_html", when="before", method="GET", path=f"/v2/positions/{option}", times=3)
    with pytest.raises(TransientBrokerError) as caught:
        broker.submit_order(Order(option, 1, "sell", "blind"))
    assert not caught.value.maybe_sent and "could not check what the account holds" in caught.value.message
    assert fake.requests_to("POST", "/v2/orders") == 0


def test_equity_sells_are_not_checked_by_alpaca_broker(world):
    sim, fake, broker, clock = world
    with pytest.raises(BrokerRejected, match="insufficient qty available"):  # Alpaca's own answer
        broker.submit_order(Order("SPY", 5, "sell", "equity-sell"))
    assert fake.requests_to("POST", "/v2/orders") == 1
    assert fake.requests_to("GET", "/v2/positions/SPY") == 0


def test_executor_over_a_trading_client_refuses_a_naked_option_sell(world):
    sim, fake, broker, clock = world
    executor = BrokerExecutor(TradingClient(API_KEY, SECRET_KEY, paper=True, url_override=fake.url), clock=clock,
                              timeout_s=2.0)
    result = executor.execute_market_order(call_symbol(500), 2, "sell", intent="stop")
    assert (result.outcome, result.ok, result.attempts, result.status_code) == ("refused", False, 0, 403)
    assert "holds 0" in result.error and fake.requests_to("POST", "/v2/orders") == 0


def test_executor_limit_bracket_and_oco_orders_go_through_alpaca_py(world):
    sim, fake, broker, clock = world
    executor = BrokerExecutor(TradingClient(API_KEY, SECRET_KEY, paper=True, url_override=fake.url), clock=clock,
                              timeout_s=2.0)
    limit = executor.execute_limit_order("SPY", 2, "buy", 499.0)
    assert limit.outcome == "submitted"
    assert fake.log[-1]["body"] == {"symbol": "SPY", "qty": 2, "side": "buy", "type": "limit", "time_in_force": "day",
                                    "limit_price": 499.0, "client_order_id": limit.client_order_id}
    bracket = executor.execute_bracket_order("SPY", 3, "buy", 500.5, take_profit=505, stop_loss=495)
    body = fake.log[-1]["body"]
    assert (body["order_class"], body["limit_price"], body["take_profit"], body["stop_loss"]) == (
        "bracket", 500.5, {"limit_price": 505.0}, {"stop_price": 495.0})
    assert bracket.order.order_class is OrderClass.BRACKET and len(bracket.order.legs) == 2
    sim.on_bar(clock.minutes(1), "SPY", bar(500, low=498.5))  # the limit and the bracket's entry fill
    assert sim.get_position("SPY").qty == 5
    oco = executor.execute_oco_order("SPY", 2, "sell", take_profit=520, stop_loss=480)
    body = fake.log[-1]["body"]
    assert (body["order_class"], body["take_profit"], body["stop_loss"]) == (
        "oco", {"limit_price": 520.0}, {"stop_price": 480.0})
    assert oco.ok and (oco.order.take_profit_price, oco.order.stop_loss_price) == (520, 480)
    sim.on_bar(clock.minutes(1), "SPY", bar(504, high=506))  # the bracket's take-profit, not the OCO's
    assert sim.get_position("SPY").qty == 2
    sim.on_bar(clock.minutes(1), "SPY", bar(490, low=479))  # the OCO's stop
    assert broker.get_positions() == []
    statuses = {o.client_order_id: o.status for o in broker.list_orders("all") if o.parent_id is None}
    assert statuses[oco.client_order_id] is OrderStatus.CANCELED  # its take-profit half, canceled by the stop
