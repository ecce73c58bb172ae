"""A backtest run carries its broker, risk manager, records, kill switch and ledger from one
day to the next (``backtest_runtime``'s ``carried``) instead of building and reading them
again each day. The same days replayed one call each (every part built afresh from the
file, the day cleared first) must give the same reports and the same rows, value for value."""

import random
import uuid

import pytest

from tradenova_dagster.ledger.accounts import ACCOUNT_TABLES, ledger_store
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.session.day import backtest_days
from tradenova_dagster.store import Store
from tradenova_dagster.strategies import build_strategy

DAYS = calendar.trading_days("2026-11-16", "2026-11-20")
WALL_CLOCK = {"recorded_at", "committed_at", "created_at", "updated_at"}  # stamped by the wall clock, not the replay


def _seed_ids(monkeypatch):
    """The simulator's order ids (uuid4) the same in both runs."""
    rnd = random.Random(7)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rnd.getrandbits(128), version=4))


def _rows(account):
    store = ledger_store(account)
    found = {}
    with store.connect() as con:
        for table in ACCOUNT_TABLES:
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall() if c not in WALL_CLOCK and not (table == "session_events" and c == "ts")]
            rows = con.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE account LIKE ?",
                               [account + "%"]).fetchall()
            found[table] = sorted(map(repr, rows))
    return found


def _report(report):
    return (report.bars, report.trades, report.entries, report.refusals, report.realized_pnl, report.start_equity,
            report.end_equity, report.stopped, dict(report.decisions))


@pytest.mark.parametrize("strategy", ["random", "always-put"])
def test_a_carried_run_equals_each_day_built_afresh(tradenova_home, monkeypatch, strategy):
    """Both under one id (client order ids hash the account): the second run starts fresh."""
    store, source, signal = Store(), get_source("synthetic"), build_strategy(strategy, seed=5)
    _seed_ids(monkeypatch)
    carried = [_report(r) for _, r in backtest_days(store, source, DAYS, signal, "same")]
    carried_rows = _rows("backtest:same")
    _seed_ids(monkeypatch)
    signal = build_strategy(strategy, seed=5)
    afresh = [_report(r) for i, day in enumerate(DAYS)
              for _, r in backtest_days(store, source, [day], signal, "same", fresh=i == 0)]
    assert carried == afresh
    assert sum(r[1] for r in carried) > 0  # it traded
    assert carried_rows == _rows("backtest:same")


def test_a_carried_run_started_again_replaces_itself(tradenova_home, monkeypatch):
    """The days after the first are not cleared (a fresh run emptied the account); running
    the backtest again under its id still gives the same rows, not twice as many."""
    store, source = Store(), get_source("synthetic")
    runs = []
    for _ in range(2):
        _seed_ids(monkeypatch)
        list(backtest_days(store, source, DAYS, build_strategy("random", seed=5), "again"))
        runs.append(_rows("backtest:again"))
    assert runs[0] == runs[1] and runs[0]["trades"]
