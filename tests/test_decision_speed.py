"""The decision path's fast paths: one reading of the kill switch and of the shared risk
state per bar (``held``), and the cached contract selection. Each must answer exactly
what the slow path answers, and a change made elsewhere must still be seen on the next bar."""

from __future__ import annotations

import os
from datetime import date

import pytest
from hypothesis import given, settings, strategies as st

from tradenova_dagster import rules
from tradenova_dagster.domain import OptionContract, OptionType
from tradenova_dagster.risk import AdvancedRiskManager, KillSwitch

CALL = "SPY260116C00600000"


def _stats(monkeypatch, module) -> list:
    """Count the ``os.stat`` calls made through ``module``'s ``os``."""
    calls = []
    real = os.stat

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module.os, "stat", counting)
    return calls


def test_a_held_kill_switch_is_read_once_and_a_change_counts_from_the_next_hold(tmp_path, monkeypatch):
    import tradenova_dagster.risk.kill_switch as ks_module

    reader = KillSwitch(folder=tmp_path, account="sim:a")
    writer = KillSwitch(folder=tmp_path, account="sim:a")  # another process
    writer.turn_off("start")
    stats = _stats(monkeypatch, ks_module)
    with reader.held():
        assert not reader.is_on()
        writer.turn_on("drill", set_by="test")
        assert not reader.state().on and not reader.is_on()  # the bar decides on one reading
        with reader.held():  # nested: the outermost block decides
            assert not reader.is_on()
    assert len([p for p in stats if p.endswith("sim+a.json")]) == 1
    assert reader.is_on() and reader.state().reason == "drill"  # the next bar sees it
    with reader.held():
        assert reader.is_on()
        reader.turn_off("cleared by the reader")  # its own change counts at once
        assert not reader.is_on()
        writer.turn_on("again", set_by="test")
        assert reader.refresh().on  # refresh reads again, even while held
    assert reader.is_on()


def test_an_unreadable_kill_switch_is_on_while_held_and_read_again_after(tmp_path):
    reader = KillSwitch(folder=tmp_path, account="sim:a")
    path = tmp_path / "sim+a.json"
    path.write_text("{not json")
    with reader.held():
        assert reader.is_on() and "unreadable" in reader.state().reason  # fail closed, for the whole bar
        path.unlink()
        assert reader.is_on()
    assert not reader.is_on()


def test_a_held_risk_manager_checks_the_shared_state_once_and_sees_its_own_changes(store, monkeypatch):
    import tradenova_dagster.risk.state as state_module

    mine = AdvancedRiskManager(store=store, account="sim:a")
    other = AdvancedRiskManager(store=store, account="sim:a")  # another process
    mine.start_day(date(2026, 1, 5), 100_000.0)
    stats = _stats(monkeypatch, state_module)
    with mine.held():
        assert not mine.is_halted
        other.halt("operator halt", rule="manual")
        assert not mine.is_halted  # one reading for the bar
        assert mine.entry_gate(CALL, 1)[0]
        mine.update_equity(100_000.0, {})
    assert len([p for p in stats if p.endswith(".risk-signal")]) == 1
    assert mine.is_halted and mine.state.halt_reason == "operator halt"  # the next bar sees it
    allowed, reason, _ = mine.entry_gate(CALL, 1)
    assert not allowed and reason == "halted: operator halt: no new entries"
    with mine.held():
        assert mine.is_halted
        mine.clear_halt("checked")  # its own change counts at once
        assert not mine.is_halted and mine.entry_gate(CALL, 1)[0]
    other.halt("second halt", rule="manual")  # outside a hold every read checks
    assert mine.is_halted
    other.clear_halt("lifted")
    assert not mine.is_halted


def test_a_risk_state_that_cannot_be_read_is_read_again_within_the_hold(store, monkeypatch):
    """Fail closed: a failed read is not held; the next read in the same bar tries again."""
    mine = AdvancedRiskManager(store=store, account="sim:a")
    mine.start_day(date(2026, 1, 5), 100_000.0)
    real = store.connect

    def broken():
        raise OSError("the ledger is locked")

    with mine.held():
        mine._watch.invalidate()  # the state must be read again (e.g. another process wrote it)
        monkeypatch.setattr(store, "connect", broken)
        allowed, reason, _ = mine.entry_gate(CALL, 1)
        assert not allowed and "could not be read" in reason and "fail closed" in reason
        monkeypatch.setattr(store, "connect", real)
        assert mine.entry_gate(CALL, 1)[0]


@settings(max_examples=200, deadline=None)
@given(spot=st.floats(min_value=10.0, max_value=5000.0, allow_nan=False),
       direction=st.sampled_from([1, -1, 2, -3]),
       day=st.sampled_from([date(2022, 9, 30), date(2023, 3, 17), date(2026, 1, 5)]),
       step=st.sampled_from([1.0, 0.5, 5.0]),
       sessions=st.sampled_from([0, 1, 2, 5]))
def test_the_cached_contract_is_the_contract_built_from_scratch(spot, direction, day, step, sessions):
    contract = rules.select_contract("SPY", day, spot, direction, sessions, step)
    fresh = OptionContract("SPY", rules.expiry_for(day, sessions),
                           OptionType.CALL if direction > 0 else OptionType.PUT, rules.atm_strike(spot, step))
    assert contract == fresh and contract.symbol == fresh.symbol
    assert rules.select_contract("SPY", day, spot, direction, sessions, step) is contract


def test_a_contract_that_cannot_exist_is_refused_every_time():
    for _ in range(2):  # an error is not cached as an answer
        with pytest.raises(ValueError):
            rules.select_contract("TOOLONGROOT", date(2026, 1, 5), 600.0, 1)


def test_covers_answers_as_membership_in_positions_standalone_and_following():
    from datetime import datetime, timezone

    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger import Book, LedgerFill
    from tradenova_dagster.risk import ProfitManager

    alone = ProfitManager()
    alone.add_position(CALL, 2, 1.0)
    book = Book(100_000)
    following = ProfitManager()
    following.follow(book)
    t0 = datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc)
    book.apply(LedgerFill("f1", CALL, Side.BUY, 2, 1.0, 0.0, t0))
    for pm in (alone, following):
        for symbol in (CALL, "SPY260116P00600000"):
            assert pm.covers(symbol) == (symbol in pm.positions())
    book.apply(LedgerFill("f2", CALL, Side.SELL, 2, 1.5, 0.0, t0))
    alone.remove_position(CALL)
    for pm in (alone, following):
        assert not pm.covers(CALL) and CALL not in pm.positions()


def test_a_following_ladder_proposes_on_a_copy_and_keeps_only_its_state():
    from datetime import datetime, timezone

    from tradenova_dagster.domain import Side
    from tradenova_dagster.ledger import Book, LedgerFill
    from tradenova_dagster.risk import ProfitManager

    book = Book(100_000)
    pm = ProfitManager()
    pm.follow(book)
    book.apply(LedgerFill("f1", CALL, Side.BUY, 10, 1.0, 0.0, datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc)))
    exit_ = pm.propose_exits(CALL, 1.45)  # TP1 proposed, not fired until it fills
    assert exit_["levels"] == ["TP1"] and exit_["qty"] == 5
    assert pm.position(CALL).fired == () and pm.position(CALL).best_price == 1.45
    assert pm.propose_exits(CALL, 1.45)["levels"] == ["TP1"]  # proposed again: nothing was marked
