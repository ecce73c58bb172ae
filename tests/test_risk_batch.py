"""The risk manager's ``batch``: inside a unit of work a state change is adopted at once
and written once when the block ends, and what is stored equals what writing every change
at once stores (hypothesis: random days, trades, marks and refusals cut into random units)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

import tradenova_dagster.risk.manager as manager
from tradenova_dagster.risk import AdvancedRiskManager, RiskLevel
from tradenova_dagster.risk.state import load_state
from tradenova_dagster.store import Store

NOW = datetime(2025, 3, 3, 15, tzinfo=timezone.utc)
ops = st.lists(st.one_of(
    st.tuples(st.just("day"), st.integers(0, 1), st.floats(90_000, 110_000)),
    st.tuples(st.just("trade"), st.floats(-1_500, 900)),
    st.tuples(st.just("mark"), st.floats(95_000, 105_000)),
    st.tuples(st.just("entry"), st.floats(10, 40)),
), min_size=1, max_size=30)


def _apply(rm: AdvancedRiskManager, op: tuple, today: list) -> None:
    if op[0] == "day":
        today[0] += timedelta(days=op[1])
        rm.start_day(today[0], op[2])
    elif op[0] == "trade":
        rm.record_trade("SPY", 1, 2_000.0, 2_000.0 + op[1], op[1], "buy")
    elif op[0] == "mark":
        rm.mark(equity=op[1])
    else:  # an entry asked for at this VIX: refused (an event) above the limit, or while halted
        rm.check_trade_allowed("SPY", 1, 1.0, "buy", vix=op[1])


def _stored(store: Store) -> tuple:
    with store.connect() as con:
        state = load_state(con, "sim:risk")
    events = store.query("SELECT kind, rule, reason, symbol, values_json FROM risk_events ORDER BY ALL")
    return state, events


@settings(max_examples=25, deadline=None)
@given(ops=ops, cuts=st.lists(st.integers(1, 8), min_size=1, max_size=30))
def test_a_batched_manager_stores_what_an_unbatched_one_stores(tmp_path_factory, ops, cuts):
    folder = tmp_path_factory.mktemp("risk")
    at_once, batched = Store(folder / "once.duckdb"), Store(folder / "batched.duckdb")
    make = lambda store: AdvancedRiskManager(initial_balance=100_000, store=store, account="sim:risk",  # noqa: E731
                                             clock=lambda: NOW, flush_interval_s=1e9)
    plain, rm = make(at_once), make(batched)
    days_plain, days_batched = [date(2025, 3, 3)], [date(2025, 3, 3)]
    plain.start_day(days_plain[0], 100_000)
    rm.start_day(days_batched[0], 100_000)
    i = 0
    for size in cuts:
        unit = ops[i:i + size]
        if not unit:
            break
        i += size
        for op in unit:
            _apply(plain, op, days_plain)
        plain.flush()
        with batched.unit_of_work(), rm.batch():
            for op in unit:
                _apply(rm, op, days_batched)
        assert rm.state == plain.state
        assert _stored(batched) == _stored(at_once)
        assert make(batched).state == make(at_once).state  # a new process reads the same


def test_a_batch_writes_the_row_once_inside_a_unit_and_at_once_outside_one(tmp_path, monkeypatch):
    writes = []
    save_state = manager.save_state
    monkeypatch.setattr(manager, "save_state", lambda con, state, now: (writes.append(state.loss_streak),
                                                                        save_state(con, state, now)))
    store = Store(tmp_path / "risk.duckdb")
    rm = AdvancedRiskManager(initial_balance=100_000, store=store, account="sim:risk", clock=lambda: NOW)
    rm.start_day(date(2025, 3, 3), 100_000)
    writes.clear()
    with store.unit_of_work(), rm.batch():
        for _ in range(3):
            rm.record_trade("SPY", 1, 100.0, 99.0, -1.0, "buy")
        assert rm.state.loss_streak == 3 and rm.is_halted  # adopted at once: the third loss halts
        rm._watch.invalidate()  # as when its max age passes: the stored row is older than ours
        assert rm.risk_level is RiskLevel.HALTED and rm.state.loss_streak == 3
        assert writes == []
    assert writes == [3]
    with rm.batch():  # no unit of work: another process may write between changes
        rm.record_trade("SPY", 1, 100.0, 101.0, 1.0, "buy")
        assert writes == [3, 0]
    with store.connect() as con:
        assert load_state(con, "sim:risk").halted
