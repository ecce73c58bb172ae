"""Writing many rows into DuckDB at once: the one insert helper every writer uses.

DuckDB's ``executemany`` runs one statement per row (~0.5-0.8 ms a row), which made the
risk events, the session records and the simulator's orders the slowest part of a
replayed day. Two ways are fast, each in its own range (median per insert inside a
transaction, DuckDB 2.0, on risk_events and rl_predictions):

- a few rows: one ``INSERT ... VALUES (...), (...)`` statement with parameters
  (0.6-0.9 ms for one row, +0.05-0.1 ms a row: 29-38 ms for 500);
- more: the rows as an Arrow table that the statement reads by name (DuckDB's
  replacement scan of the local ``_bulk_rows``): ~1-1.5 ms for 5 to 50 rows, 1.5-2.7 ms
  for 500. A registered pandas DataFrame costs ~2.3 ms before the first row, and stores
  NaN as NULL.

Both store the same values as ``executemany``: DuckDB casts each column to the table's
type the same way whether the value arrives as a parameter or as an Arrow column
(tz-aware datetimes in any zone become the same TIMESTAMPTZ instant, None becomes NULL,
NaN stays NaN). A column that Arrow cannot type as one kind (an int among strings) takes
the VALUES statement, which casts value by value.
"""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

# Above this many rows the Arrow scan wins: VALUES is ~0.1-0.2 ms faster at 3-5 rows,
# they cross between 6 and 8 rows (measured on risk_events and rl_predictions).
VALUES_MAX_ROWS = 6


def insert_rows(con, table: str, columns: Sequence[str], rows: Sequence[Sequence], *, replace: bool = False,
                on_conflict: str | None = None) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in one statement.

    ``replace`` writes ``INSERT OR REPLACE``; ``on_conflict`` is appended as
    ``ON CONFLICT <on_conflict>`` (e.g. ``"(account, id) DO UPDATE SET ..."``). Like any
    single statement, a batch may not name the same key twice with either. Returns the
    number of rows written.
    """
    if not rows:
        return 0
    for row in rows:  # a short row beside a long one would shift every value after it
        if len(row) != len(columns):
            raise ValueError(f"{table}: a row has {len(row)} values for {len(columns)} columns "
                             f"({', '.join(columns)}): {row!r}")
    verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
    names = ", ".join(columns)
    tail = f" ON CONFLICT {on_conflict}" if on_conflict else ""
    if len(rows) > VALUES_MAX_ROWS:
        _bulk_rows = _arrow_table(columns, rows)  # read by name in the statement below
        if _bulk_rows is not None:
            con.execute(f"{verb} {table} ({names}) SELECT {names} FROM _bulk_rows{tail}")
            return len(rows)
    marks = "(" + ", ".join("?" for _ in columns) + ")"
    con.execute(f"{verb} {table} ({names}) VALUES {', '.join(marks for _ in rows)}{tail}",
                [value for row in rows for value in row])
    return len(rows)


def upsert_row(con, table: str, columns: Sequence[str], row: Sequence, *, key: Sequence[str],
               update: Sequence[str]) -> None:
    """Write one row: update the ``update`` columns of the row with the same ``key``, or
    insert the whole row when there is none.

    What ``INSERT ... ON CONFLICT (key) DO UPDATE SET`` does, at a quarter of its cost
    (~0.7 ms for an UPDATE, ~3 ms for the upsert on a table with a primary key). The caller
    holds a transaction, so no other writer comes between the two statements.
    """
    values = dict(zip(columns, row, strict=True))
    updated = con.execute(
        f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in update)} WHERE {' AND '.join(f'{c} = ?' for c in key)}",
        [values[c] for c in update] + [values[c] for c in key],
    ).fetchone()[0]
    if not updated:
        insert_rows(con, table, columns, [row])


def _arrow_table(columns: Sequence[str], rows: Sequence[Sequence]) -> pa.Table | None:
    """The rows as an Arrow table, or None when a column mixes kinds Arrow cannot hold."""
    try:
        return pa.Table.from_arrays([pa.array(values) for values in zip(*rows)], names=list(columns))
    except pa.ArrowException:
        return None
