"""The fault matrix: BrokerExecutor → alpaca-py's real TradingClient → a local Alpaca server
(a real SimBroker behind it) that misbehaves on purpose. Whatever the fault, exactly one
order exists at the end, and the executor's answer says what happened."""

from __future__ import annotations

import pytest
from alpaca.trading.client import TradingClient

from broker_helpers import StepClock
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading, count_orders
from tradenova_dagster.broker import BrokerExecutor, SimBroker
from tradenova_dagster.broker.executor import OutcomeStillUnknown

TIMEOUT_S = 1.0  # the executor's HTTP timeout; a "hung" reply comes after HANG_S
HANG_S = 1.6
ORDERS = "/v2/orders"
LOOKUP = "/v2/orders:by_client_order_id"

# (fault, when, expected outcome, attempts, POSTs the server saw)
MATRIX = [
    ("http_500_html", "before", "submitted", 2, 2),
    ("http_500_html", "after", "recovered", 1, 1),
    ("http_502_html", "before", "submitted", 2, 2),
    ("http_502_html", "after", "recovered", 1, 1),
    ("http_429", "before", "submitted", 2, 2),
    ("timeout", "before", "submitted", 2, 2),  # held, then acted on late: refused as a duplicate
    ("timeout", "after", "recovered", 1, 1),
    ("reset", "before", "submitted", 2, 2),
    ("reset", "after", "recovered", 1, 1),
    ("duplicate_422", "after", "duplicate", 1, 1),
    ("not_json", "after", "recovered", 1, 1),
]


@pytest.fixture
def world(store):
    clock = StepClock()
    sim = SimBroker("sim:faults", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    with FakeAlpacaTrading(sim, hang_s=HANG_S) as fake:
        client = TradingClient(API_KEY, SECRET_KEY, paper=True, url_override=fake.url)
        executor = BrokerExecutor(client, timeout_s=TIMEOUT_S, backoff_s=0.05, clock=clock, run_id="faults")
        executor.broker.get_asset("SPY")  # warm the server (calendar, imports) outside the timed path
        yield sim, fake, executor


@pytest.mark.parametrize("fault, when, outcome, attempts, posts", MATRIX,
                         ids=[f"{f}-{w}" for f, w, *_ in MATRIX])
def test_every_fault_leaves_exactly_one_order(world, fault, when, outcome, attempts, posts):
    sim, fake, executor = world
    fake.inject(fault, when=when)
    result = executor.execute_market_order("SPY", 5, "buy")
    fake.wait_idle()  # a held request has now been acted on (or refused)
    assert (result.outcome, result.attempts) == (outcome, attempts), result.events
    assert result.ok and result.order is not None
    assert result.order.client_order_id == result.client_order_id
    assert count_orders(sim) == 1 and count_orders(sim, result.client_order_id) == 1
    assert fake.requests_to("POST", ORDERS) == posts
    if fault == "http_429":
        assert fake.requests_to("GET", LOOKUP) == 0  # a 429 created nothing: no lookup needed
    if fault == "timeout" and when == "before":
        late = [e for e in fake.log if e["method"] == "POST" and e["fault"] == "timeout/before"]
        assert [e["late_status"] for e in late] == [422]  # the late copy was refused as a duplicate
    # The order is real: it fills on the next bar, once.
    sim.on_bar(executor.clock.minutes(1), "SPY", 501.0)
    assert sim.get_position("SPY").qty == 5


def test_a_broker_down_for_every_attempt_fails_cleanly_with_nothing_created(world):
    sim, fake, executor = world
    fake.inject("http_502_html", when="before", times=3)
    result = executor.execute_market_order("SPY", 5, "buy")
    assert (result.outcome, result.attempts, result.status_code) == ("failed", 3, 502)
    assert not result.ok and result.order is None and "502" in result.error
    assert count_orders(sim) == 0 and fake.requests_to("POST", ORDERS) == 3


def test_a_lost_reply_whose_lookup_also_fails_is_settled_by_the_duplicate_reply(world):
    sim, fake, executor = world
    fake.inject("http_500_html", when="after")
    fake.inject("http_500_html", when="before", method="GET", path=LOOKUP, times=3)
    result = executor.execute_market_order("SPY", 5, "buy")
    assert (result.outcome, result.attempts) == ("recovered", 2), result.events
    assert any("duplicate client_order_id" in e for e in result.events)
    assert count_orders(sim) == 1


def _unknown(executor, fake, fault: str, qty: float = 5):
    """An order whose only attempt got no reply and whose lookups all failed: ``unknown``."""
    fake.inject(fault, when="before" if fault == "lost" else "after")
    fake.inject("http_500_html", when="before", method="GET", path=LOOKUP, times=3)  # every read retry
    executor.max_attempts = 1
    result = executor.execute_market_order("SPY", qty, "buy")
    fake.wait_idle()
    assert (result.outcome, result.ok, result.order) == ("unknown", False, None), result.events
    fake.clear_faults()
    return result


def test_an_unknown_outcome_after_a_timeout_after_create_resolves_to_the_order(world):
    sim, fake, executor = world
    result = _unknown(executor, fake, "timeout")
    posts = fake.requests_to("POST", ORDERS)
    found = executor.resolve([result.client_order_id])
    assert found[result.client_order_id].client_order_id == result.client_order_id
    assert found[result.client_order_id].qty == 5 and count_orders(sim, result.client_order_id) == 1
    assert fake.requests_to("POST", ORDERS) == posts  # resolving sends nothing


def test_an_unknown_outcome_after_a_timeout_before_create_resolves_to_none(world):
    sim, fake, executor = world
    result = _unknown(executor, fake, "lost")
    assert executor.resolve([result.client_order_id]) == {result.client_order_id: None}
    assert count_orders(sim) == 0  # the broker never got it: safe to decide again
    again = executor.execute_market_order("SPY", 5, "buy")  # the same decision, sent again
    assert again.outcome == "submitted" and count_orders(sim, result.client_order_id) == 1


def test_a_5xx_on_the_lookup_is_retried_then_the_answer_comes(world):
    sim, fake, executor = world
    found_first = _unknown(executor, fake, "timeout")
    lost = _unknown(executor, fake, "lost", qty=3)
    fake.inject("http_502_html", when="before", method="GET", path=LOOKUP)  # one failure: the read is retried
    lookups = fake.requests_to("GET", LOOKUP)
    answer = executor.resolve([found_first.client_order_id, lost.client_order_id])
    assert answer[found_first.client_order_id].qty == 5 and answer[lost.client_order_id] is None
    assert fake.requests_to("GET", LOOKUP) == lookups + 3  # 502, then the two answers
    fake.inject("http_500_html", when="before", method="GET", path=LOOKUP, times=3)  # every read retry
    with pytest.raises(OutcomeStillUnknown) as caught:
        executor.resolve([found_first.client_order_id, lost.client_order_id])
    assert list(caught.value.unresolved) == [found_first.client_order_id]  # still unknown: ask again later
    assert caught.value.resolved == {lost.client_order_id: None}
    assert executor.resolve([found_first.client_order_id])[found_first.client_order_id].qty == 5
    assert count_orders(sim) == 1


def test_a_rejection_is_never_retried(world):
    sim, fake, executor = world
    result = executor.execute_market_order("SPY", 500, "buy")  # $250k with $100k
    assert (result.outcome, result.attempts, result.status_code) == ("rejected", 1, 403)
    assert "insufficient buying power" in result.error
    assert fake.requests_to("POST", ORDERS) == 1 and count_orders(sim) == 0


def test_a_retry_of_the_whole_call_finds_the_first_order(world):
    sim, fake, executor = world
    first = executor.execute_market_order("SPY", 5, "buy")
    again = executor.execute_market_order("SPY", 5, "buy")  # same decision, same bar
    assert (first.outcome, again.outcome) == ("submitted", "duplicate")
    assert again.order.id == first.order.id and count_orders(sim) == 1
    executor.clock.minutes(1)
    later = executor.execute_market_order("SPY", 5, "buy")  # a new bar is a new decision
    assert later.outcome == "submitted" and count_orders(sim) == 2


def test_a_duplicate_reply_whose_lookup_fails_is_asked_again(world):
    sim, fake, executor = world
    fake.inject("duplicate_422", when="after")
    fake.inject("http_502_html", when="before", method="GET", path=LOOKUP, times=3)  # every read retry
    result = executor.execute_market_order("SPY", 5, "buy")
    assert (result.outcome, result.attempts) == ("recovered", 2), result.events
    assert count_orders(sim) == 1 and fake.requests_to("POST", ORDERS) == 2
