"""ProfitManager: the exact ladder in whole units, gaps, trailing stop, stop loss, persistence."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from tradenova_dagster.domain import Side
from tradenova_dagster.ledger import Book, LedgerFill
from tradenova_dagster.risk import LadderConfig, ProfitManager, TakeProfitLevel

CALL = "SPY260116C00600000"


def walk(pm, symbol, prices):
    """(price, qty, level) for every exit along a price path."""
    out = []
    for price in prices:
        exit_ = pm.check_exits(symbol, price)
        if exit_:
            out.append((price, exit_["qty"], exit_["level"]))
            if exit_["closes_position"]:
                break
    return out


@pytest.mark.parametrize(
    "qty, expected",
    [
        (10, [(1.40, 5, "TP1"), (1.60, 1, "TP2"), (2.00, 1, "TP3"), (2.50, 1, "TP4"), (3.00, 2, "TP5")]),
        (1000, [(1.40, 500, "TP1"), (1.60, 100, "TP2"), (2.00, 40, "TP3"), (2.50, 36, "TP4"), (3.00, 324, "TP5")]),
        (1, [(1.40, 1, "TP1")]),
        (2, [(1.40, 1, "TP1"), (1.60, 1, "TP2")]),
    ],
)
def test_full_ladder_on_a_rising_path(qty, expected):
    pm = ProfitManager()
    pm.add_position(CALL, qty, 1.00, "buy")
    path = [1.10, 1.39, 1.40, 1.50, 1.60, 1.80, 2.00, 2.20, 2.50, 2.70, 2.90, 3.00]
    assert walk(pm, CALL, path) == expected
    assert sum(q for _, q, _ in expected) == qty
    assert pm.positions() == {}


def test_each_level_fires_once():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 2.00)
    assert pm.check_exits(CALL, 2.80)["level"] == "TP1"
    assert pm.check_exits(CALL, 2.50) is None
    assert pm.check_exits(CALL, 2.85) is None  # back above +40%: TP1 does not fire again
    assert pm.position(CALL).fired == ("TP1",)
    assert pm.position(CALL).remaining_qty == 5


def test_exit_dict_contents():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 2.00, "buy")
    out = pm.check_exits(CALL, 2.80)
    assert out["action"] == "sell" and out["qty"] == 5 and out["level"] == "TP1" and out["levels"] == ["TP1"]
    assert out["remaining"] == 5 and out["closes_position"] is False
    assert out["reason"] == f"take profit TP1: {CALL} at 2.8 is +40.00% from entry 2: sell 5 of 10"


def test_gap_through_several_levels_is_one_combined_exit():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 1.00)
    out = pm.check_exits(CALL, 2.10)  # +110%: TP1, TP2 and TP3 at once
    assert out["levels"] == ["TP1", "TP2", "TP3"] and out["level"] == "TP3"
    assert out["qty"] == 7 and out["remaining"] == 3  # 5 + 1 + 1, as if the path had passed each level
    assert "gap through 3 levels" in out["reason"] and "sell 5+1+1 of 10" in out["reason"]
    assert pm.position(CALL).fired == ("TP1", "TP2", "TP3")
    assert not pm.position(CALL).trail_armed


def test_gap_through_every_level_sells_all():
    pm = ProfitManager()
    pm.add_position(CALL, 1000, 1.00)
    out = pm.check_exits(CALL, 3.50)
    assert out["levels"] == ["TP1", "TP2", "TP3", "TP4", "TP5"]
    assert out["qty"] == 1000 and out["closes_position"]


def test_gap_to_tp4_arms_the_trail():
    pm = ProfitManager()
    pm.add_position(CALL, 1000, 1.00)
    out = pm.check_exits(CALL, 2.60)
    assert out["levels"] == ["TP1", "TP2", "TP3", "TP4"] and out["qty"] == 676 and out["remaining"] == 324
    assert pm.position(CALL).trail_armed
    assert pm.locked_gain(CALL) == pytest.approx(1.08)  # 2.60 x 0.8 = 2.08


def test_trailing_stop_arms_at_tp4_and_never_locks_less_than_100pct():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 1.00)
    walk(pm, CALL, [1.40, 1.60, 2.00])
    assert pm.locked_gain(CALL) == -0.15
    assert pm.check_exits(CALL, 2.50)["level"] == "TP4"
    assert pm.locked_gain(CALL) == pytest.approx(1.00)  # 2.5 x 0.8 = 2.0: exactly +100%
    assert pm.stop_price(CALL) == pytest.approx(2.00)
    assert pm.check_exits(CALL, 2.80) is None
    assert pm.locked_gain(CALL) == pytest.approx(1.24)  # 2.8 x 0.8 = 2.24
    assert pm.check_exits(CALL, 2.40) is None  # still above the trail
    assert pm.locked_gain(CALL) == pytest.approx(1.24), "a dip never lowers the locked gain"
    out = pm.check_exits(CALL, 2.24)
    assert out["level"] == "TRAIL" and out["qty"] == 2 and out["closes_position"]
    assert "locked +124.00%" in out["reason"]


def test_trail_floor_holds_right_after_arming():
    pm = ProfitManager(trail_pct=0.30)  # 2.5 x 0.7 = 1.75 would lock only +75%
    pm.add_position(CALL, 10, 1.00)
    pm.check_exits(CALL, 2.50)
    assert pm.locked_gain(CALL) == pytest.approx(1.00)
    assert pm.check_exits(CALL, 2.01) is None
    assert pm.check_exits(CALL, 2.00)["level"] == "TRAIL"


def test_stop_loss_at_exactly_minus_15pct_sells_all_even_after_tp1():
    pm = ProfitManager()
    pm.add_position(CALL, 1, 2.00)
    assert pm.check_exits(CALL, 1.71) is None
    out = pm.check_exits(CALL, 1.70)
    assert (out["level"], out["qty"], out["closes_position"]) == ("STOP", 1, True)
    assert "stop loss" in out["reason"]
    pm.add_position(CALL, 10, 1.00)
    pm.check_exits(CALL, 1.40)
    out = pm.check_exits(CALL, 0.85)
    assert (out["level"], out["qty"]) == ("STOP", 5)


def test_short_equity_ladder():
    pm = ProfitManager()
    pm.add_position("TSLA", 100, 200.0, "sell")
    out = pm.check_exits("TSLA", 120.0)  # price down 40%: +40% for a short
    assert (out["action"], out["qty"], out["level"]) == ("buy", 50, "TP1")
    assert pm.check_exits("TSLA", 110.0) is None
    out = pm.check_exits("TSLA", 80.0)
    assert (out["qty"], out["level"]) == (10, "TP2")
    out = pm.check_exits("TSLA", 230.0)  # +15% against a short
    assert (out["action"], out["qty"], out["level"]) == ("buy", 40, "STOP")


def test_equity_long_with_fractional_level_amounts():
    pm = ProfitManager()
    pm.add_position("AAPL", 7, 100.0, "long")
    assert [q for _, q, _ in walk(pm, "AAPL", [140, 160, 200, 250, 300])] == [4, 1, 1, 1]  # ceil(3.5), ceil(0.6)...


def test_custom_ladder():
    levels = (TakeProfitLevel("A", 0.10, 0.25), TakeProfitLevel("B", 0.30, 1.0))
    pm = ProfitManager(levels, stop_loss_pct=0.05, trail_arm_pct=0.2, trail_floor_pct=0.1, trail_pct=0.05)
    pm.add_position("SPY", 8, 100.0)
    assert pm.check_exits("SPY", 110.0)["qty"] == 2
    assert pm.check_exits("SPY", 120.0) is None and pm.position("SPY").trail_armed
    assert pm.check_exits("SPY", 113.99)["level"] == "TRAIL"  # 120 x 0.95 = 114


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_and_state_is_unchanged():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 2.0)
    before = pm.positions()
    for call, match in [
        (lambda: pm.check_exits(CALL, math.nan), "price must be a finite number, got nan"),
        (lambda: pm.check_exits(CALL, -1.0), "price must be > 0, got -1.0"),
        (lambda: pm.check_exits("QQQ", 1.0), "no open position in QQQ under the ladder of sim:default"),
        (lambda: pm.add_position("QQQ", 0, 1.0), "qty must be > 0, got 0"),
        (lambda: pm.add_position("QQQ", 2.5, 1.0), "qty must be a whole number of contracts or shares, got 2.5"),
        (lambda: pm.add_position("QQQ", True, 1.0), "qty must be a whole number"),
        (lambda: pm.add_position("QQQ", 1, math.nan), "entry_price must be a finite number"),
        (lambda: pm.add_position("QQQ", 1, 1.0, "hold"), "side: unknown value 'hold'"),
        (lambda: pm.add_position(CALL, 1, 1.0), "already under the ladder"),
        (lambda: pm.sync_quantity(CALL, -1), "qty must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
        assert pm.positions() == before


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stop_loss_pct": 1.5}, "stop_loss_pct must be in \\(0, 1\\)"),
        ({"stop_loss_pct": -0.15}, "stop_loss_pct must be in \\(0, 1\\)"),
        ({"trail_pct": 0}, "trail_pct must be in \\(0, 1\\)"),
        ({"trail_floor_pct": 2.0}, "trail_floor_pct must be in \\[0, trail_arm_pct=1.5\\]"),
        ({"levels": (TakeProfitLevel("A", 0.5, 0.5), TakeProfitLevel("B", 0.4, 1.0))}, "strictly increasing"),
        ({"levels": ()}, "non-empty"),
    ],
)
def test_bad_ladder_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProfitManager(**kwargs)


def test_bad_level():
    with pytest.raises(ValueError, match="TP1.sell_fraction must be in \\(0, 1\\], got 1.5"):
        TakeProfitLevel("TP1", 0.4, 1.5)
    with pytest.raises(ValueError, match="gain_pct must be > 0"):
        TakeProfitLevel("TP1", -0.4, 0.5)
    assert LadderConfig().levels[0].sell_qty(1) == 1


def test_sync_quantity_and_remove():
    pm = ProfitManager()
    pm.add_position(CALL, 10, 1.0)
    pm.check_exits(CALL, 1.4)  # assumes 5 sold; the broker filled only 3
    pm.sync_quantity(CALL, 7)
    assert pm.check_exits(CALL, 1.6)["qty"] == 2  # ceil(0.2 x 7)
    pm.remove_position(CALL)
    assert pm.positions() == {}


# --------------------------------------------------------------------------- persistence


T0 = datetime(2026, 1, 5, 15, 0, tzinfo=timezone.utc)


def _fill(book: Book, fill_id: str, side: str, qty: int, price: float) -> None:
    book.apply(LedgerFill(fill_id, CALL, Side.parse(side), qty, price, 0.0, T0))


def _ladder(store, book: Book, **kwargs) -> ProfitManager:
    pm = ProfitManager(store=store, account="sim:default", **kwargs)
    pm.follow(book)
    return pm


def _exit(pm: ProfitManager, book: Book, price: float, fill_id: str) -> dict:
    """What a session does: propose, the sell fills in the ledger, then the ladder learns."""
    exit_ = pm.propose_exits(CALL, price)
    _fill(book, fill_id, "sell", exit_["qty"], price)
    pm.exit_filled(CALL, exit_["levels"])
    return exit_


def test_following_the_ledger_the_ladder_stores_only_its_own_state_and_survives_a_restart(store):
    book = Book(100_000)
    _fill(book, "buy-1", "buy", 10, 1.00)
    pm = _ladder(store, book, run_id="r1", flush_interval_s=3600)
    assert _exit(pm, book, 2.10, "sell-1")["levels"] == ["TP1", "TP2", "TP3"]  # 5 + 1 + 1
    pm.propose_exits(CALL, 2.30)  # a best-price mark, batched
    pos = _ladder(store, book).position(CALL)
    assert (pos.remaining_qty, pos.entry_price, pos.fired, pos.best_price) == (3, 1.00, ("TP1", "TP2", "TP3"), 2.10)
    pm.flush()
    assert _ladder(store, book).position(CALL).best_price == 2.30
    assert _exit(pm, book, 2.50, "sell-2")["level"] == "TP4"  # arms the trail, written at once
    restarted = _ladder(store, book)
    assert restarted.position(CALL).trail_armed and restarted.position(CALL).remaining_qty == 2
    assert restarted.propose_exits(CALL, 2.10) is None  # TP3 does not fire twice
    assert _exit(restarted, book, 1.99, "sell-3")["level"] == "TRAIL"
    columns = {r[0] for r in store.query("SELECT column_name FROM information_schema.columns "
                                         "WHERE table_name = 'ladder_state'")}
    assert not columns & {"remaining_qty", "initial_qty", "entry_price", "qty"}  # the ledger's facts
    assert store.query("SELECT count(*) FROM ladder_state")[0][0] == 0  # closed: its state is gone
    _fill(book, "buy-2", "buy", 4, 3.00)  # a re-entry is a new position: a fresh ladder at its own price
    fresh = _ladder(store, book).position(CALL)
    assert (fresh.fired, fresh.trail_armed, fresh.entry_price, fresh.remaining_qty) == ((), False, 3.00, 4)


def test_a_position_closed_elsewhere_drops_its_ladder_and_a_quantity_change_is_seen_at_once(store):
    book = Book(100_000)
    _fill(book, "buy-1", "buy", 10, 1.00)
    pm = _ladder(store, book)
    _exit(pm, book, 1.40, "sell-1")  # TP1: 5 sold
    _fill(book, "flatten-1", "sell", 2, 1.10)  # a partial fill the ladder did not propose
    assert pm.position(CALL).remaining_qty == 3  # read from the ledger, not a copy
    assert pm.propose_exits(CALL, 1.60)["qty"] == 1  # ceil(0.2 x 3)
    _fill(book, "flatten-2", "sell", 3, 1.10)  # flattened by another job
    assert pm.positions() == {}
    assert _ladder(store, book).positions() == {} and store.query("SELECT count(*) FROM ladder_state") == [(0,)]
    with pytest.raises(ValueError, match="follows the ledger"):
        pm.add_position(CALL, 1, 1.0)


def test_a_ladder_row_of_the_old_layout_is_adopted_by_the_position_in_its_symbol(store):
    store.execute("INSERT INTO ladder_state VALUES ('sim:default', ?, ?, '[\"TP1\"]', 1.5, false, now(), 'old')",
                  [f"legacy:{CALL}", CALL])
    book = Book(100_000)
    _fill(book, "buy-1", "buy", 5, 1.00)
    assert _ladder(store, book).position(CALL).fired == ("TP1",)
    assert store.query("SELECT position_id FROM ladder_state") == [("buy-1",)]


def test_failed_write_leaves_state_unchanged(store, monkeypatch):
    book = Book(100_000)
    _fill(book, "buy-1", "buy", 10, 1.00)
    pm = _ladder(store, book)

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("tradenova_dagster.risk.profit.save_ladder_state", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        pm.propose_exits(CALL, 2.60)  # arms the trail: a write
    assert not pm.position(CALL).trail_armed and pm.position(CALL).best_price == 1.00
    with pytest.raises(RuntimeError, match="disk full"):
        _exit(pm, book, 1.40, "sell-1")
    assert pm.position(CALL).fired == ()
