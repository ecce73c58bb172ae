"""The kill switch: one flag that stops every new entry, everywhere, at once.

Setting it (``tradenova kill-switch on --reason ...``, the Dagster ``kill_switch_job``, or
``KillSwitch(store).turn_on(...)``) writes DuckDB (the current setting and a history row)
and then touches the risk signal file (see ``state.py``). Readers in other processes
stat that file on every check, so reading the switch in a hot loop costs microseconds
and a change is seen on the very next check; DuckDB is re-read only after a change, or
when the cached copy is older than ``max_age_s`` (default 30 s, a safety net for a
writer that bypasses this class).

Scope: the row for account ``'*'`` (``GLOBAL``) applies to every account except
backtests (accounts named ``backtest:...``): a backtest replays the past, and today's
emergency says nothing about what the strategy would have done then, so a backfill
launched while the switch is on must not silently produce empty days. Any account,
backtests included, can also be switched on by itself. The switch is on for an account
when its own row or (for non-backtests) the global row is on.

With no store the switch lives in memory (the seed's store-less usage, and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tradenova_dagster.domain import utcnow
from tradenova_dagster.store import Store
from tradenova_dagster.risk.state import ChangeSignal, Clock, SignalWatch, require_account

GLOBAL = "*"
BACKTEST_PREFIX = "backtest:"


@dataclass(frozen=True)
class KillSwitchState:
    """A setting of the switch. ``account`` says which row it came from ('*' = global)."""

    account: str
    on: bool
    reason: str
    set_by: str
    set_at: datetime | None
    run_id: str | None = None

    def describe(self) -> str:
        if self.set_at is None:
            return f"kill switch for {self.account}: off (never set)"
        word = "ON" if self.on else "off"
        when = self.set_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        return f"kill switch for {self.account}: {word} since {when} by {self.set_by}: {self.reason}"


def _never_set(account: str) -> KillSwitchState:
    return KillSwitchState(account=account, on=False, reason="never set", set_by="", set_at=None)


class KillSwitch:
    """Reads and sets the kill switch for ``account`` (default: the global row).

    ``is_on()`` / ``state()`` answer for ``account`` (its own row or the global one);
    ``turn_on`` / ``turn_off`` write ``account``'s own row.
    """

    def __init__(self, store: Store | None = None, account: str = GLOBAL, max_age_s: float | None = 30.0,
                 clock: Clock | None = None):
        self.store = store
        self.account = require_account(account)
        self.clock = clock or utcnow
        self._rows: dict[str, KillSwitchState] = {}
        self._history: list[KillSwitchState] = []  # only used without a store
        self._signal = ChangeSignal.for_store(store) if store is not None else None
        self._watch = SignalWatch(self._signal, max_age_s) if self._signal is not None else None

    def __repr__(self) -> str:
        return f"KillSwitch(account={self.account!r}, store={self.store!r})"

    # ------------------------------------------------------------------ reading

    def _scopes(self) -> tuple[str, ...]:
        if self.account == GLOBAL or self.account.startswith(BACKTEST_PREFIX):
            return (self.account,)
        return (GLOBAL, self.account)

    def _refresh(self) -> None:
        if self._watch is None or not self._watch.needs_reload():
            return
        stamp = self._watch.stamp_before_read()
        scopes = self._scopes()
        placeholders = ", ".join("?" for _ in scopes)
        rows = self.store.query(
            f"SELECT account, is_on, reason, set_by, set_at, run_id FROM kill_switch WHERE account IN ({placeholders})",
            list(scopes),
        )
        self._rows = {r[0]: KillSwitchState(r[0], bool(r[1]), r[2], r[3], r[4], r[5]) for r in rows}
        self._watch.loaded(stamp)

    def state(self) -> KillSwitchState:
        """The setting that decides for ``account``: an 'on' row (the global one first),
        else the most recent change of the rows that apply."""
        self._refresh()
        rows = [self._rows[s] for s in self._scopes() if s in self._rows]
        for row in rows:
            if row.on:
                return row
        if not rows:
            return _never_set(self.account)
        return max(rows, key=lambda r: r.set_at)

    def is_on(self) -> bool:
        return self.state().on

    def refresh(self) -> KillSwitchState:
        """Force a re-read from DuckDB (e.g. after someone edited the table by hand)."""
        if self._watch is not None:
            self._watch.invalidate()
        return self.state()

    def history(self, limit: int = 20) -> list[KillSwitchState]:
        """Changes to the rows that decide for ``account``, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        scopes = self._scopes()
        if self.store is None:
            return [h for h in reversed(self._history) if h.account in scopes][:limit]
        placeholders = ", ".join("?" for _ in scopes)
        rows = self.store.query(
            "SELECT account, is_on, reason, set_by, set_at, run_id FROM kill_switch_history"
            f" WHERE account IN ({placeholders}) ORDER BY set_at DESC LIMIT ?",
            [*scopes, limit],
        )
        return [KillSwitchState(r[0], bool(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    # ------------------------------------------------------------------ writing

    def turn_on(self, reason: str, set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        return self.set(True, reason, set_by=set_by, run_id=run_id)

    def turn_off(self, reason: str = "cleared", set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        return self.set(False, reason, set_by=set_by, run_id=run_id)

    def set(self, on: bool, reason: str, set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        """Set ``account``'s row; turning it on needs a reason (it lands in the history)."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be True or False, got {on!r}")
        if not isinstance(reason, str) or not reason.strip():
            if on:
                raise ValueError(f"a reason is required to turn the kill switch on, got {reason!r}")
            reason = "cleared"
        if not isinstance(set_by, str) or not set_by.strip():
            raise ValueError(f"set_by must be a non-empty string, got {set_by!r}")
        new = KillSwitchState(self.account, on, reason.strip(), set_by.strip(), self.clock(), run_id)
        if self.store is None:
            self._rows[self.account] = new
            self._history.append(new)
            return new
        values = [new.account, new.on, new.reason, new.set_by, new.set_at, new.run_id]
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO kill_switch (account, is_on, reason, set_by, set_at, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET is_on = excluded.is_on,"
                " reason = excluded.reason, set_by = excluded.set_by, set_at = excluded.set_at,"
                " run_id = excluded.run_id",
                values,
            )
            con.execute(
                "INSERT INTO kill_switch_history (account, is_on, reason, set_by, set_at, run_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        self._signal.touch()
        self._watch.invalidate()
        return new
