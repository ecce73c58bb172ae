"""The partials snapshot beside the ledger (metrics/partials.py): a fresh tracker on an idle
ledger answers from it without a connect, in another process too; whatever the ledger did
since is still seen; a file that is not a snapshot, or a folder that cannot be written,
costs only a read; a held read, which may see rows that roll back, never keeps one."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tradenova_dagster.metrics import MetricsTracker
from tradenova_dagster.metrics.partials import DayPartials, snapshot_path
from tradenova_dagster.store import Store

NY = "America/New_York"
ACCOUNT = "backtest:snap"
AS_OF = "2024-03-08"
_AGES = itertools.count()


def at(day: str, clock: str = "15:00") -> pd.Timestamp:
    return pd.Timestamp(f"{day} {clock}", tz=NY)


def record(tracker: MetricsTracker, pnl: float, day: str, clock: str = "15:00") -> None:
    tracker.record_trade("SPY", 1.0, 2.0, 1, "long", pnl, "ppo", at(day, clock), at(day, clock))
    tracker.flush()


def age(store: Store) -> None:
    """As if the ledger had been idle for an hour (a stat then vouches for it), each time a
    moment later than the last, as the clock moves between real writes."""
    when = time.time() - 3600 + next(_AGES) * 0.01
    for part in (store.path, store.path.with_name(store.path.name + ".wal")):
        if part.exists():
            os.utime(part, (when, when))


def fresh(store: Store) -> MetricsTracker:
    return MetricsTracker(store=store, account=ACCOUNT)


def answer(tracker: MetricsTracker) -> dict:
    return tracker.calculate_metrics(lookback_days=None, as_of=AS_OF)


def unsnapshotted_answer(store: Store) -> dict:
    """What a tracker says with no snapshot and nothing kept: every trade aggregated."""
    snapshot_path(store.path, ACCOUNT).unlink(missing_ok=True)
    return answer(fresh(store))


@pytest.fixture
def idle_snapshot(store) -> dict:
    """Three trades, the ledger idle, a tracker's read kept beside it; its answer."""
    writer = fresh(store)
    record(writer, 100.0, "2024-03-04")
    record(writer, -30.0, "2024-03-05")
    record(writer, 12.5, "2024-03-05", "15:30")
    age(store)
    return answer(fresh(store))


def test_a_fresh_tracker_on_an_idle_ledger_answers_from_the_snapshot_without_a_connect(store, idle_snapshot):
    assert (idle_snapshot["num_trades"], idle_snapshot["total_pnl"]) == (3, 82.5)
    connects = store.connects
    assert answer(fresh(store)) == idle_snapshot
    assert store.connects == connects
    folder = snapshot_path(store.path, ACCOUNT).parent
    assert [p.name for p in folder.iterdir()] == ["backtest+snap.npy"]  # no temporary file left
    assert not list(store.path.parent.glob("*.tmp"))
    assert idle_snapshot == unsnapshotted_answer(store)


def test_a_new_process_answers_from_the_snapshot_without_a_connect(store, idle_snapshot):
    code = ("import json, sys\n"
            "from tradenova_dagster.metrics import MetricsTracker\n"
            f"t = MetricsTracker({str(store.path)!r}, account={ACCOUNT!r})\n"
            "connects = t.store.connects\n"
            f"m = t.calculate_metrics(lookback_days=None, as_of={AS_OF!r})\n"
            "print(json.dumps([t.store.connects - connects, m]))\n")
    connects, metrics = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                  text=True).stdout)
    assert connects == 0
    assert metrics == idle_snapshot


def test_whatever_the_ledger_did_since_the_snapshot_is_seen_by_a_fresh_tracker(store, idle_snapshot):
    other = MetricsTracker(store=Store(store.path), account=ACCOUNT)  # another writer
    record(other, -40.0, "2024-03-06")
    age(store)
    m = answer(fresh(store))
    assert (m["num_trades"], m["total_pnl"], m["worst_trade"]) == (4, 42.5, -40.0)
    assert m == unsnapshotted_answer(store)
    age(store)
    answer(fresh(store))  # kept again, then a replayed day cleared
    assert other.clear_day("2024-03-05") == 2
    age(store)
    m = answer(fresh(store))
    assert (m["num_trades"], m["total_pnl"], m["best_trade"]) == (2, 60.0, 100.0)
    assert m == unsnapshotted_answer(store)
    answer(fresh(store))  # kept again (a connect: the ledger was written), then an earlier equity day
    other.record_equity(at("2024-02-29"), 100_000.0, 100_000.0, 0.0)
    other.flush()
    m = answer(fresh(store))  # written just now: not settled, so it connects and folds
    assert (m["num_days"], m["start"]) == (7, "2024-02-29")
    assert m == unsnapshotted_answer(store)


def _write_snapshot(path, header, record) -> None:
    with open(path, "wb") as out:
        np.save(out, header)
        np.save(out, record)


def _spoil(path, how: str) -> None:
    good = path.read_bytes()
    with open(path, "rb") as snapshot:
        header, record = np.load(snapshot), np.load(snapshot)
    if how == "garbage":
        path.write_bytes(b"not a snapshot at all")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(good[:-40])
    elif how == "another version":
        header[0] = 99
        _write_snapshot(path, header, record)
    elif how == "objects":  # loading it would need pickle: refused
        with open(path, "wb") as out:
            np.save(out, np.array([{"n": 1}], dtype=object), allow_pickle=True)
    elif how == "other columns":
        _write_snapshot(path, header, np.zeros(len(record), dtype=[("day", "datetime64[D]"), ("pnl", float)]))


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "another version", "objects", "other columns"])
def test_a_file_that_is_not_a_snapshot_is_ignored_and_replaced(store, idle_snapshot, how):
    path = snapshot_path(store.path, ACCOUNT)
    _spoil(path, how)
    assert DayPartials.load(path) is None
    assert answer(fresh(store)) == idle_snapshot
    assert DayPartials.load(path) is not None  # the read kept a good one again
    connects = store.connects
    assert answer(fresh(store)) == idle_snapshot
    assert store.connects == connects


def test_a_folder_that_cannot_be_written_costs_only_a_read(store):
    writer = fresh(store)
    record(writer, 100.0, "2024-03-04")
    folder = snapshot_path(store.path, ACCOUNT).parent
    folder.write_text("a file where the folder would go")  # mkdir fails, as on a read-only disk
    age(store)
    first = answer(fresh(store))
    assert (first["num_trades"], first["total_pnl"]) == (1, 100.0)
    assert answer(fresh(store)) == first
    assert folder.read_text() == "a file where the folder would go"


def test_a_held_read_never_keeps_a_snapshot_its_rows_may_roll_back(store, idle_snapshot):
    """Inside a unit of work a read sees the unit's own rows. Here the unit replaces the day
    of two trades by as many trades, is read, and rolls back: a snapshot of what it saw
    would pass for the ledger (same count, nothing newer) in every later process."""
    path = snapshot_path(store.path, ACCOUNT)
    kept = path.read_bytes()
    with pytest.raises(RuntimeError, match="bar failed"):
        with store.unit_of_work():
            unit = fresh(store)
            unit.clear_day("2024-03-05")
            for pnl in (-500.0, -1.0):
                record(unit, pnl, "2024-03-05")
            seen = answer(fresh(store))
            assert (seen["num_trades"], seen["total_pnl"]) == (3, -401.0)
            raise RuntimeError("bar failed")
    assert path.read_bytes() == kept
    age(store)
    m = answer(fresh(store))
    assert (m["num_trades"], m["total_pnl"]) == (3, 82.5)
    assert m == idle_snapshot
