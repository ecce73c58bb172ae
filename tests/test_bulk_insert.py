"""The storage fast paths of the session loop (issue 15 item 5) store and return exactly
what the slow ones did:

- ``store.bulk.insert_rows`` (one VALUES statement for a few rows, an Arrow scan for
  more) against row-by-row ``executemany``, per table kind, on both sides of the
  threshold; ``upsert_row`` against ``INSERT ... ON CONFLICT DO UPDATE``;
- the records' time checks (UTC fast path, the remembered New York day) against a plain
  pandas conversion, and their errors still name the field and the value;
- ``FileMarketData.bars`` (a day's rows found by an index) against an independent pandas
  filter of the file.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tradenova_dagster.ledger import records
from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import MarketDataError, get_source
from tradenova_dagster.store import bulk, insert_rows, upsert_row

NY = ZoneInfo("America/New_York")
T0 = datetime(2024, 3, 8, 14, 30, tzinfo=timezone.utc)  # two days before a DST change
SIZES = (1, bulk.VALUES_MAX_ROWS, bulk.VALUES_MAX_ROWS + 1, 50)  # both sides of the threshold


def _instant(i: int):
    """Tz-aware times as the writers pass them: UTC and New York, datetime and Timestamp."""
    t = T0 + timedelta(days=i // 7, minutes=i, microseconds=i * 1001)
    return (t, t.astimezone(NY), pd.Timestamp(t), pd.Timestamp(t).tz_convert("America/New_York"))[i % 4]


def _risk_event(account: str, i: int) -> tuple:
    values = json.dumps({"limit": 0.02, "loss": -0.0213 * i, "note": "café ✓", "i": i}, sort_keys=True)
    return (account, None if i % 3 == 0 else f"run-{i}", _instant(i), "refusal", "daily_loss",
            None if i % 2 else "SPY", values, f"loss {i} exceeds the limit")


def _prediction(account: str, i: int) -> tuple:
    ts = _instant(i)
    p = (None, None, None) if i % 2 else (0.2, 0.5, 0.3)
    raw = (float("nan"), -1.0, 1e-300, 0.123456789012345)[i % 4]
    return (account, "run", ts, pd.Timestamp(ts).tz_convert("America/New_York").date(), f"ppo:v{i % 3}", "SPY",
            raw, -raw, "FLAT", *p)


def _sim_order(account: str, i: int) -> tuple:
    t = _instant(i)
    return (account, f"o{i}", f"c{i}", None, "SPY", "us_equity", "buy", "limit", "day", "simple",
            None if i % 2 else "take_profit", None, 3.0, float(i % 3), None if i % 2 else 501.25,
            500.5, None, "filled" if i % 2 else "new", bool(i % 2), t, None if i % 3 else t, t, t,
            t if i % 2 else None, None, None, None, None)


SIM_ORDER_COLUMNS = (
    "account", "id", "client_order_id", "run_id", "symbol", "asset_class", "side", "order_type",
    "time_in_force", "order_class", "leg_role", "parent_id", "qty", "filled_qty", "filled_avg_price",
    "limit_price", "stop_price", "status", "triggered", "eligible_after", "expires_at", "created_at",
    "updated_at", "filled_at", "canceled_at", "expired_at", "replaced_by", "replaces",
)
KINDS = {
    "risk_events": (("account", "run_id", "ts", "kind", "rule", "symbol", "values_json", "reason"), _risk_event),
    "rl_predictions": (("account", "run_id", "ts", "day", "model", "symbol", "raw_action", "smoothed_action",
                        "decision", "p_put", "p_flat", "p_call"), _prediction),
    "sim_orders": (SIM_ORDER_COLUMNS, _sim_order),
}


def _stored(con, table: str, columns, account: str) -> list[tuple]:
    """The account's rows in insertion order, without the account, with each value's type
    (NaN made comparable)."""
    rows = con.execute(f"SELECT {', '.join(columns[1:])} FROM {table} WHERE account = ? ORDER BY rowid",
                       [account]).fetchall()
    return [tuple(("NaN" if isinstance(v, float) and math.isnan(v) else v, type(v).__name__) for v in row)
            for row in rows]


@pytest.mark.parametrize("table", sorted(KINDS))
@pytest.mark.parametrize("size", SIZES)
def test_bulk_rows_read_back_exactly_as_row_by_row_inserts(store, table, size):
    columns, make = KINDS[table]
    with store.transaction() as con:
        con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                        [make("ref", i) for i in range(size)])
        assert insert_rows(con, table, columns, [make("bulk", i) for i in range(size)]) == size
    with store.connect() as con:
        expected, got = _stored(con, table, columns, "ref"), _stored(con, table, columns, "bulk")
    assert len(got) == size and got == expected
    if table == "risk_events":  # instants kept whatever zone they came in; the JSON text unchanged
        assert [v for (v, _) in (row[1] for row in got)] == [_instant(i) for i in range(size)]
        assert [json.loads(row[5][0])["note"] for row in got] == ["café ✓"] * size


@pytest.mark.parametrize("size", SIZES)
def test_replace_and_on_conflict_update_the_existing_rows(store, size):
    columns = ("account", "symbol", "ts", "price", "vix")
    first = [("a", f"S{i}", T0, 1.0, None) for i in range(size)]
    later = [("a", f"S{i}", T0 + timedelta(minutes=1), 2.0 + i, 15.5) for i in range(size)]
    with store.transaction() as con:
        insert_rows(con, "sim_marks", columns, first, replace=True)
        insert_rows(con, "sim_marks", columns, later, replace=True)
        rows = con.execute("SELECT symbol, ts, price, vix FROM sim_marks WHERE account = 'a' ORDER BY price").fetchall()
        assert rows == [(s, t, p, v) for (_, s, t, p, v) in later]
        insert_rows(con, "sim_marks", columns, first, on_conflict="(account, symbol) DO UPDATE SET vix = 99.0")
        assert con.execute("SELECT DISTINCT price > 1.5, vix FROM sim_marks WHERE account = 'a'").fetchall() == [
            (True, 99.0)]


def test_a_column_arrow_cannot_type_is_still_stored_as_values_would_store_it(store):
    columns, make = KINDS["risk_events"]
    size = bulk.VALUES_MAX_ROWS + 3
    mixed = [make("bulk", i)[:5] + ((7 if i == 1 else "SPY"),) + make("bulk", i)[6:] for i in range(size)]
    with store.transaction() as con:
        con.executemany(f"INSERT INTO risk_events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                        [("ref",) + row[1:] for row in mixed])
        insert_rows(con, "risk_events", columns, mixed)
        assert _stored(con, "risk_events", columns, "bulk") == _stored(con, "risk_events", columns, "ref")
        assert con.execute("SELECT symbol FROM risk_events WHERE account = 'bulk'").fetchall()[1] == ("7",)


@pytest.mark.parametrize("size", SIZES)
def test_a_row_of_the_wrong_length_is_refused_naming_the_table(store, size):
    columns, make = KINDS["risk_events"]
    rows = [make("bulk", i) for i in range(size)]
    rows[-1] = rows[-1][:-1]
    with store.transaction() as con, pytest.raises(ValueError, match=r"risk_events: a row has 7 values for 8"):
        insert_rows(con, "risk_events", columns, rows)


def test_upsert_row_inserts_then_updates_only_the_named_columns_like_on_conflict(store):
    columns = ("account", "day", "start_of_day_equity", "realized_pnl", "unrealized_json", "unrealized_pnl",
               "peak_equity", "trades_today", "loss_streak", "halted", "halt_reason", "updated_at")
    first = ("a", date(2024, 3, 8), 1000.0, 0.0, "{}", 0.0, 1000.0, 0, 0, False, None, T0)
    second = ("a", date(2024, 3, 9), 1100.0, -5.5, '{"SPY": -1.0}', -1.0, 1100.0, 2, 1, True, "why", _instant(5))
    with store.transaction() as con:
        upsert_row(con, "risk_state", columns, first, key=("account",), update=("realized_pnl", "halted"))
        upsert_row(con, "risk_state", columns, second, key=("account",), update=("realized_pnl", "halted"))
        got = con.execute(f"SELECT {', '.join(columns)} FROM risk_state").fetchall()
    assert got == [first[:3] + (-5.5,) + first[4:9] + (True,) + first[10:]]


# ---------------------------------------------------------------------- records' time checks


def test_utc_fast_path_gives_what_the_general_path_gives():
    for value in (T0, T0.astimezone(NY), pd.Timestamp(T0), pd.Timestamp(T0).tz_convert("America/New_York"),
                  "2024-03-08 09:30:00-05:00", datetime(2024, 3, 8, 14, 30, tzinfo=ZoneInfo("UTC"))):
        got = records._utc("ts", value)
        assert type(got) is pd.Timestamp and got.tzinfo is timezone.utc
        assert got == pd.Timestamp(value).tz_convert("UTC")


@pytest.mark.parametrize("value, message", [
    (datetime(2024, 3, 8, 14, 30), r"timestamp must be timezone-aware, got naive datetime.datetime\(2024, 3, 8"),
    (pd.NaT, r"timestamp must be a timezone-aware datetime, got NaT"),
    ("not a time", r"timestamp: 'not a time' is not a date and time"),
    (1709908200, r"timestamp must be a timezone-aware datetime, got 1709908200"),
])
def test_time_errors_still_name_the_field_and_the_value(value, message):
    with pytest.raises(ValueError, match=message):
        records._utc("timestamp", value)


def test_the_remembered_new_york_day_matches_a_plain_conversion_in_any_order():
    edges = ["2024-03-10 04:59:59.999999", "2024-03-10 05:00", "2024-03-10 06:59:59", "2024-03-10 07:00",
             "2024-11-03 03:59:59", "2024-11-03 04:00", "2024-11-03 05:00", "2024-11-04 04:59:59.999999",
             "2024-11-04 05:00", "2023-12-31 23:59", "2024-01-01 05:00"]
    rng = random.Random(7)
    spread = [pd.Timestamp("2015-01-01", tz="UTC") + pd.Timedelta(minutes=rng.randrange(6_000_000)) for _ in range(2000)]
    instants = [pd.Timestamp(e, tz="UTC") for e in edges] + spread + sorted(spread) + [pd.Timestamp(e, tz="UTC") for e in reversed(edges)]
    assert [records._session_day(ts) for ts in instants] == [ts.tz_convert("America/New_York").date() for ts in instants]


# ---------------------------------------------------------------------- a day's bars from files


def _expected_bars(path, day: date) -> pd.DataFrame:
    """The day's regular-session bars of one file, filtered the plain way, in file order."""
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    column = "timestamp" if "timestamp" in raw.columns else "datetime"
    times = pd.to_datetime(raw[column])
    times = times.dt.tz_localize("America/New_York") if times.dt.tz is None else times
    times = times.dt.tz_convert("UTC")
    open_, close = calendar.session_open_close(day)
    keep = (times >= open_) & (times < close)
    return raw[keep].assign(timestamp=times[keep]).reset_index(drop=True)


def _same_bars(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got["timestamp"]) == list(expected["timestamp"])
    for name in ("open", "high", "low", "close", "volume"):
        assert got[name].tolist() == expected[name].astype("float64").tolist(), name


def test_bars_of_real_spy_days_equal_a_plain_filter_of_the_file(shared_data):
    source = get_source("file", data_dir=shared_data)
    parquet = shared_data / "spy_1m_rth_2022-09-30_2023-09-29.parquet"
    one_minute_csv = shared_data / "spy_1min_rth_2025-09-15_2026-03-19.csv"
    for path, day in [(parquet, date(2022, 9, 30)), (parquet, date(2023, 3, 13)), (parquet, date(2023, 7, 3)),
                      (parquet, date(2023, 9, 29)), (one_minute_csv, date(2025, 11, 28)),
                      (one_minute_csv, date(2026, 3, 9))]:
        got = source.bars("SPY", day)
        assert len(got) > 0 and got.attrs["interval_minutes"] == 1
        _same_bars(got, _expected_bars(path, day))


def test_bars_of_a_file_out_of_time_order_keep_the_files_order(tmp_path):
    lines = [f"2024-03-{d:02d} {h:02d}:{m:02d}:00,{d}{h}.{m},{d}{h}.{m},{d}{h}.{m},{d}{h}.{m},{m}"
             for d in (7, 8, 11) for h in (9, 10, 15, 16) for m in (0, 29, 30, 59)]
    random.Random(3).shuffle(lines)  # each day's rows scattered through the file
    path = tmp_path / "abc_1min.csv"
    path.write_text("datetime,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    contiguous = tmp_path / "sorted" / "abc_1min.csv"
    contiguous.parent.mkdir()
    contiguous.write_text("datetime,open,high,low,close,volume\n" + "\n".join(sorted(lines)) + "\n")
    for folder, file in ((tmp_path, path), (contiguous.parent, contiguous)):
        source = get_source("file", data_dir=folder)
        for day in (date(2024, 3, 7), date(2024, 3, 8), date(2024, 3, 11)):
            got = source.bars("ABC", day)
            assert len(got) == 10  # 09:30, 09:59, 10:00 ... 15:59: the session's rows only
            _same_bars(got, _expected_bars(file, day))
        with pytest.raises(MarketDataError, match=r"ABC 2024-03-12: no bars in any file \(abc_1min.csv: "
                                                  r"2024-03-07 to 2024-03-11\)"):
            source.bars("ABC", date(2024, 3, 12))

