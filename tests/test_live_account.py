"""live_account: the broker observed and checked against the ledger, and the ledger view a
lease holder publishes (``tradenova_dagster.ledger.view``)."""

import json
import textwrap
import threading

import dagster as dg
import pandas as pd
import pytest
from process_helpers import LineProcess

from assets.account import CHECK, live_account
from broker_helpers import StepClock, bar, call_symbol
from fake_alpaca_trading import API_KEY, SECRET_KEY, FakeAlpacaTrading
from resources.broker import BrokerResource
from resources.store import StoreResource
from tradenova_dagster.broker import SimBroker
from tradenova_dagster.domain import Decision, Order, OrderStatus, Side, Signal
from tradenova_dagster.ledger import AccountLedger, Book, BookPosition, LedgerOrder
from tradenova_dagster.ledger import view as view_mod
from tradenova_dagster.ledger.accounts import ledger_path, ledger_store
from tradenova_dagster.ledger.lease import lease_holder
from tradenova_dagster.ledger.view import current_view, read_view, view_path, write_view

DAY = "2026-11-20"
CALL = call_symbol(500)
PUT = call_symbol(495, kind="P")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# --------------------------------------------------------------------------- helpers


def _materialize(account: str, store, broker: BrokerResource | None = None):
    result = dg.materialize(
        [live_account],
        resources={"broker": broker or BrokerResource(), "store": StoreResource(db_path=str(store.path))},
        run_config={**QUIET, "ops": {"live_account": {"config": {"account": account}}}},
    )
    assert result.success
    [event] = result.get_asset_materialization_events()
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == CHECK
    return event.materialization.metadata, check


def _md(value: dg.TableMetadataValue) -> str:
    """A typed table as text: its column names, then its rows' values, " | " between cells."""
    assert isinstance(value, dg.TableMetadataValue), type(value)
    lines = [" | ".join(column.name for column in value.schema.columns)]
    lines += [" | ".join("none" if v is None else str(v) for v in record.data.values()) for record in value.records]
    return "\n".join(lines)


class Traded:
    """A simulated account that has traded by hand: the broker (SimBroker in the account's
    ledger file, as the jobs keep it) and the ledger recording what the session would."""

    def __init__(self, account: str):
        self.account = account
        self.clock = StepClock()
        self.store = ledger_store(account)
        self.sim = SimBroker(account, self.store, clock=self.clock)
        self.sim.on_bar(self.clock.t, "SPY", 500.0, vix=15)
        self.ledger = AccountLedger(self.store, account,
                                    fee_per_contract=self.sim.config.option_commission_per_contract)
        self.n = 0

    def send(self, symbol, qty, side, record=True, **order):
        self.n += 1
        coid = f"lv-{self.n}"
        placed = self.sim.submit_order(Order(symbol, qty, side, coid, **order))
        if record:
            self.ledger.record_order(coid, placed, symbol=symbol, side=Side(side), qty=qty, intent="test",
                                     reason="test", decision_ts=self.clock.t.to_pydatetime())
        return coid

    def next_bar(self, spot):
        self.sim.on_bar(self.clock.minutes(1), "SPY", bar(spot))
        end = (self.clock.t + pd.Timedelta(minutes=1)).to_pydatetime()
        for coid, record in list(self.ledger.orders.items()):
            if record.is_open:
                self.ledger.observe(self.sim.get_order_by_client_id(coid), end)


def _traded(account="sim:lv") -> Traded:
    """Bought 3 calls, sold 1 (2 held), and a put limit bid far below the market (open)."""
    t = Traded(account)
    t.send(CALL, 3, "buy")
    t.next_bar(500.5)
    t.send(CALL, 1, "sell")
    t.send(PUT, 1, "buy", order_type="limit", limit_price=0.05)
    t.next_bar(501.0)
    assert [(p.symbol, p.qty) for p in t.sim.get_positions()] == [(CALL, 2)]
    assert [o.client_order_id for o in t.ledger.open_orders()] == ["lv-3"]
    return t


# --------------------------------------------------------------------------- the sim account


def test_live_account_observes_the_broker_and_agrees_with_the_ledger(store):
    t = _traded()
    meta, check = _materialize("sim:lv", store)
    broker_account = t.sim.get_account()
    assert meta["account"].value == "sim:lv" and meta["observed"].value is True
    assert meta["equity"].value == pytest.approx(broker_account.equity)
    assert meta["cash"].value == pytest.approx(broker_account.cash)
    assert meta["buying_power"].value == pytest.approx(broker_account.buying_power)
    assert meta["num_positions"].value == 1 and meta["num_open_orders"].value == 1
    positions, orders = _md(meta["positions"]), _md(meta["open_orders"])
    assert CALL in positions and positions.startswith("symbol | qty") and PUT not in positions
    assert "lv-3" in orders and PUT in orders and "lv-1" not in orders
    assert check.passed, check.description
    assert check.metadata["ledger_source"].value == "the ledger file"
    assert check.metadata["differences"].value == 0
    assert lease_holder("sim:lv") is None  # the lease was taken for the look only


def test_a_fill_the_ledger_did_not_record_fails_the_check_naming_the_symbol(store):
    t = _traded()
    t.send(PUT, 4, "buy", record=False)  # the broker fills it; the ledger never hears of it
    t.next_bar(500.0)
    meta, check = _materialize("sim:lv", store)
    assert meta["num_positions"].value == 2
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    assert PUT in check.description and CALL not in check.description
    table = _md(check.metadata["difference_table"])
    assert PUT in table and "qty 4" in table and "none" in table
    assert check.metadata["differences"].value == 1


def test_an_open_order_on_one_side_only_fails_the_check(store):
    t = _traded()
    t.send(CALL, 1, "sell", record=False, order_type="limit", limit_price=999.0)  # rests at the broker only
    _, check = _materialize("sim:lv", store)
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    table = _md(check.metadata["difference_table"])
    assert "lv-4" in table and "open order" in table and "not open" in table
    assert CALL in check.description


def test_a_replayed_session_day_leaves_broker_and_ledger_agreeing(store):
    """The session's own ledger (a replayed morning, cut short so positions stay open)
    matches the simulated broker it traded on."""
    from ops.trading import build_runtime
    from resources.risk import RiskResource
    from tradenova_dagster.market.data import get_source
    from tradenova_dagster.session import day as trading_day

    class Morning:  # the day's first 45 bars only: the session ends with what it holds
        def __init__(self, source):
            self.source = source

        def __getattr__(self, name):
            return getattr(self.source, name)

        def bars(self, symbol, day, *args, **kwargs):
            return self.source.bars(symbol, day, *args, **kwargs).head(45)

    class AlwaysCall:
        model_id = "scripted"

        def reset(self, day=None, context=None):
            pass

        def on_bar(self, b, position=None):
            return Signal(b.timestamp, b.symbol, 0.9, 0.9, Decision.BUY_CALL, self.model_id)

    runtime = build_runtime("sim:replay", BrokerResource(), RiskResource(), StoreResource(db_path=str(store.path)),
                            run_id="test", session_day=pd.Timestamp(DAY).date())
    report = trading_day.run_session(runtime, DAY, Morning(get_source("synthetic")), AlwaysCall(), mode="replay")
    assert report.entries >= 1
    held = runtime.broker.get_positions()
    assert held, "the replay should end holding a call"
    meta, check = _materialize("sim:replay", store)
    assert meta["num_positions"].value == len(held)
    assert all(p.symbol in _md(meta["positions"]) for p in held)
    assert check.passed, check.description

    extra = runtime.broker.submit_order(Order(held[0].symbol, 1, "buy", "outside-the-ledger"))
    runtime.sim.advance(pd.Timestamp(runtime.sim.market_time) + pd.Timedelta(seconds=1))
    assert runtime.broker.get_order(extra.id).filled_qty == 1
    _, check = _materialize("sim:replay", store)
    assert not check.passed and held[0].symbol in check.description


# --------------------------------------------------------------------------- a held account

HOLDER = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    from tradenova_dagster.ledger import AccountLedger
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.ledger.lease import AccountLease
    from tradenova_dagster.ledger.view import write_view
    account, run_id = sys.argv[1:3]
    with AccountLease(account, run_id, "session"):
        store = ledger_store(account)
        with store.hold():  # the ledger file open and locked for the run, as a session holds it
            print("held", flush=True)
            for line in sys.stdin:
                if line.strip() == "view":
                    ledger = AccountLedger(store, account)
                    write_view(account, ledger.book, ledger.open_orders(), datetime.now(timezone.utc))
                    print("viewed", flush=True)
                elif line.strip() == "release":
                    break
    print("released", flush=True)
""")


class Holder(LineProcess):
    """A real session-like process: the account's lease and its ledger file, held."""

    def __init__(self, account: str, run_id: str):
        super().__init__(HOLDER, account, run_id)


@pytest.fixture
def holder(tradenova_home):
    made = []

    def start(account, run_id):
        made.append(Holder(account, run_id))
        return made[-1]

    yield start
    for h in made:
        h.close()


@pytest.fixture
def alpaca(store):
    """An Alpaca account behind the local Alpaca server (its state in the shared file), and
    its ledger ``alpaca_paper:lv`` in its own file."""
    clock = StepClock()
    sim = SimBroker("alpaca_paper:lv", store, clock=clock)
    sim.on_bar(clock.t, "SPY", 500.0, vix=15)
    with FakeAlpacaTrading(sim) as fake:
        resource = BrokerResource(mode="alpaca_paper", api_key=API_KEY, secret_key=SECRET_KEY,
                                  url_override=fake.url, data_url=fake.url, timeout_s=5.0, max_attempts=1)
        yield sim, clock, resource


def _spy_on_ledger_reads(monkeypatch) -> list:
    calls = []
    real = view_mod.ledger_view

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(view_mod, "ledger_view", spy)
    return calls


def test_a_held_account_is_checked_against_the_published_view_not_the_file(store, alpaca, holder, monkeypatch):
    sim, clock, resource = alpaca
    account = "alpaca_paper:lv"
    ledger = AccountLedger(ledger_store(account), account)
    placed = sim.submit_order(Order(CALL, 2, "buy", "al-1"))
    ledger.record_order("al-1", placed, symbol=CALL, side=Side.BUY, qty=2, intent="entry", reason="test",
                        decision_ts=clock.t.to_pydatetime())
    sim.on_bar(clock.minutes(1), "SPY", bar(500.5))
    ledger.observe(sim.get_order_by_client_id("al-1"), (clock.t + pd.Timedelta(minutes=1)).to_pydatetime())
    write_view(account, Book(0.0), [], clock.t)  # left by an earlier run: empty, and not this holder's

    reads = _spy_on_ledger_reads(monkeypatch)
    h = holder(account, "run-lv")
    meta, check = _materialize(account, store, resource)  # held, nothing published yet
    assert meta["num_positions"].value == 1 and CALL in _md(meta["positions"])  # Alpaca is observed regardless
    assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    assert "has not published a ledger view yet" in check.description and "run-lv" in check.description

    h.say("view")
    h.expect("viewed")
    meta, check = _materialize(account, store, resource)
    assert check.passed, check.description
    assert "published by session run run-lv" in check.metadata["ledger_source"].value

    sim.submit_order(Order(PUT, 1, "buy", "al-2"))  # the broker moves on; the view has not seen it
    sim.on_bar(clock.minutes(1), "SPY", bar(500.0))
    _, check = _materialize(account, store, resource)
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    assert PUT in check.description and "run-lv" in check.metadata["ledger_source"].value
    assert reads == []  # never a look at the held ledger file
    assert lease_holder(account).run_id == "run-lv"

    h.say("release")
    h.expect("released")
    h.proc.wait(timeout=30)
    _, check = _materialize(account, store, resource)  # released: the file itself, which lacks al-2's fill
    assert reads and check.metadata["ledger_source"].value == "the ledger file"
    assert not check.passed and PUT in check.description


def test_a_sim_account_held_by_a_session_is_not_observed_and_the_check_warns(store, holder, monkeypatch):
    _traded("sim:busy")
    h = holder("sim:busy", "run-busy")
    meta, check = _materialize("sim:busy", store)
    assert meta["observed"].value is False
    assert "lives in its ledger file" in meta["reason"].value and "run-busy" in meta["reason"].value
    assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    assert "run-busy" in check.description
    h.say("release")
    h.expect("released")
    h.proc.wait(timeout=30)
    meta, check = _materialize("sim:busy", store)
    assert meta["observed"].value is True and check.passed


# --------------------------------------------------------------------------- the view itself


def _book(n: int) -> Book:
    book = Book(1000.0)
    for i in range(n):
        symbol = call_symbol(400 + i)
        book.positions[symbol] = BookPosition(symbol, qty=float(i + 1), basis=100.0 * (i + 1) * 2.5)
    return book


def test_a_view_round_trips_and_current_view_reads_the_file_when_nobody_holds_it(tradenova_home):
    account = "sim:view"
    assert read_view(account) is None
    assert current_view(account)["positions"] == [] and not ledger_path(account).exists()  # no file created
    order = LedgerOrder("c-1", "b-1", PUT, Side.BUY, 2.0, "entry", "test", pd.Timestamp("2024-03-04 14:31", tz="UTC"),
                        OrderStatus.PARTIALLY_FILLED, 1.0)
    path = write_view(account, _book(2), [order], pd.Timestamp("2024-03-04 14:32", tz="UTC"))
    assert path == view_path(account) and path.name == "sim+view.duckdb.view.json"
    view = read_view(account)
    assert view["cash"] == 1000.0 and view["ts"].startswith("2024-03-04T14:32")
    assert view["positions"] == [{"symbol": call_symbol(400), "qty": 1.0, "avg_entry_price": 2.5},
                                 {"symbol": call_symbol(401), "qty": 2.0, "avg_entry_price": 2.5}]
    assert view["open_orders"] == [{"client_order_id": "c-1", "symbol": PUT, "side": "buy", "qty": 2.0,
                                    "filled_qty": 1.0, "status": "partially_filled"}]
    assert read_view("sim:view:sub") is None  # the same file, another account
    assert current_view(account)["source"] == "ledger"  # nobody holds it: the ledger, not the published view
    path.write_text('{"account": "sim:vi')
    with pytest.raises(ValueError, match="is not a ledger view"):
        read_view(account)


def test_view_files_are_replaced_atomically(tradenova_home):
    account = "sim:atomic"
    books = {3: _book(3), 400: _book(400)}  # a small and a large file, replaced back and forth
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        try:
            while not stop.is_set():
                n = 3 if i % 2 else 400
                write_view(account, books[n], [], pd.Timestamp("2024-03-04 14:30", tz="UTC") + pd.Timedelta(minutes=n))
                i += 1
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    write_view(account, books[3], [], pd.Timestamp("2024-03-04 14:33", tz="UTC"))
    thread = threading.Thread(target=writer)
    thread.start()
    seen = set()
    try:
        for _ in range(3000):
            view = read_view(account)  # raises on half a file
            assert view is not None
            n = len(view["positions"])
            assert n in books and view["ts"] == (pd.Timestamp("2024-03-04 14:30", tz="UTC")
                                                 + pd.Timedelta(minutes=n)).isoformat()
            seen.add(n)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors
    assert seen == {3, 400}  # the reader did see both while they were being replaced
    assert [p.name for p in view_path(account).parent.iterdir() if p.name.endswith(".tmp")] == []
    json.loads(view_path(account).read_text())
