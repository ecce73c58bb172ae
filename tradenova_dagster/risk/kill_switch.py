"""The kill switch: one flag that stops every new entry, everywhere, at once.

Setting it (``tradenova kill-switch on --reason ...``, the Dagster ``kill_switch_job``, or
``KillSwitch(store).turn_on(...)``) replaces a small JSON file atomically
(``$TRADENOVA_HOME/controls/kill_switch/<scope>.json``, written to a temporary file and
renamed into place) and appends the change to ``history.jsonl`` beside it. Controls never
wait on storage (DESIGN.md §5): no database lock is involved, so the switch is set within
milliseconds even while a session holds its ledger, and a session reads it every bar by
a ``stat`` of the file (microseconds), re-reading the JSON only when the file changed.
From its controls to the end of a bar the session holds one reading (``KillSwitch.held``):
the controls, the entry gate and the risk level each ask, the file is looked at once; a
switch set after the controls read it is seen on the next bar.

Scope: ``global.json`` (account ``'*'``, ``GLOBAL``) applies to every account except
backtests (accounts named ``backtest:...``): a backtest replays the past, and today's
emergency says nothing about what the strategy would have done then, so a backfill
launched while the switch is on must not silently produce empty days. Any account,
backtests included, can also be switched on by itself (``<kind>+<id>.json``). The switch
is on for an account when its own file or (for non-backtests) the global one is on.

With no store and no folder the switch lives in memory (the seed's store-less usage, and
tests). A switch an older TradeNova kept in the shared database (table ``kill_switch``)
is carried over into the files the first time they are looked for.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from tradenova_dagster import config
from tradenova_dagster.domain import utcnow
from tradenova_dagster.ledger.accounts import GLOBAL, require_account
from tradenova_dagster.risk.state import Clock
from tradenova_dagster.store import Store

BACKTEST_PREFIX = "backtest:"
HISTORY = "history.jsonl"


@dataclass(frozen=True)
class KillSwitchState:
    """A setting of the switch. ``account`` says which scope it came from ('*' = global)."""

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

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "set_at": self.set_at.isoformat() if self.set_at else None})

    @classmethod
    def from_json(cls, text: str) -> "KillSwitchState":
        raw = json.loads(text)
        return cls(raw["account"], bool(raw["on"]), raw["reason"], raw["set_by"],
                   datetime.fromisoformat(raw["set_at"]) if raw.get("set_at") else None, raw.get("run_id"))


def _never_set(account: str) -> KillSwitchState:
    return KillSwitchState(account=account, on=False, reason="never set", set_by="", set_at=None)


def switch_folder() -> Path:
    path = config.home() / "controls" / "kill_switch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_name(scope: str) -> str:
    return "global.json" if scope == GLOBAL else scope.replace(":", "+") + ".json"


class KillSwitch:
    """Reads and sets the kill switch for ``account`` (default: the global scope).

    ``is_on()`` / ``state()`` answer for ``account`` (its own setting or the global one);
    ``turn_on`` / ``turn_off`` write ``account``'s own. ``store`` (or ``folder``) makes it
    persistent in the home's ``controls/kill_switch`` folder; the store is read only once,
    to carry over a switch an older version kept there.
    """

    def __init__(self, store: Store | None = None, account: str = GLOBAL, clock: Clock | None = None,
                 folder: str | Path | None = None):
        self.store = store
        self.account = require_account(account, allow_global=True)
        self.clock = clock or utcnow
        persistent = store is not None or folder is not None
        self.folder = (Path(folder) if folder is not None else switch_folder()) if persistent else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, KillSwitchState] = {}  # without a folder
        self._history: list[KillSwitchState] = []  # without a folder
        self._cache: dict[str, tuple[tuple, KillSwitchState | None]] = {}  # scope -> (file stamp, state)
        self._paths: dict[str, str] = {}  # scope -> its file (read every bar: built once)
        self._unset = _never_set(self.account)
        self._holds = 0  # depth of ``held`` blocks
        self._pinned: KillSwitchState | None = None  # the reading a ``held`` block answers with
        if store is not None:
            _carry_over(store, self.folder)

    def __repr__(self) -> str:
        return f"KillSwitch(account={self.account!r}, folder={str(self.folder) if self.folder else None!r})"

    # ------------------------------------------------------------------ reading

    def _scopes(self) -> tuple[str, ...]:
        if self.account == GLOBAL or self.account.startswith(BACKTEST_PREFIX):
            return (self.account,)
        return (GLOBAL, self.account)

    def _read(self, scope: str) -> KillSwitchState | None:
        """The scope's setting: from memory, or from its file when the file changed."""
        if self.folder is None:
            return self._memory.get(scope)
        path = self._paths.get(scope)
        if path is None:
            path = self._paths[scope] = str(self.folder / _file_name(scope))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(scope, None)
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(scope)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        state = KillSwitchState.from_json(Path(path).read_text())
        self._cache[scope] = (stamp, state)
        return state

    @contextmanager
    def held(self):
        """Within the block ``state()`` answers with the block's first reading, however
        often it is asked: a session holds one reading for a bar's decisions (its
        controls, the entry gate and the risk level each ask), so the file is looked at
        once, and a switch set after that reading counts from the next bar. Blocks nest
        (the outermost decides); ``set`` and ``refresh`` drop the reading, so a writer
        sees its own change at once."""
        self._holds += 1
        try:
            yield self
        finally:
            self._holds -= 1
            if not self._holds:
                self._pinned = None

    def state(self) -> KillSwitchState:
        """The setting that decides for ``account``: an 'on' one (the global first), else
        the most recent change of the scopes that apply.

        A file that cannot be read or parsed counts as ON (fail closed): the reason says
        which file and why, so a person can fix it; exits are never blocked by the switch.
        """
        if self._pinned is not None:
            return self._pinned
        state = self._state()
        if self._holds:
            self._pinned = state
        return state

    def _state(self) -> KillSwitchState:
        rows = []
        for scope in self._scopes():
            try:
                row = self._read(scope)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                return KillSwitchState(scope, True, f"unreadable kill switch file {_file_name(scope)}: {exc} "
                                       "(treated as ON; fix or delete the file)", "tradenova", self.clock())
            if row is not None:
                rows.append(row)
        for row in rows:
            if row.on:
                return row
        if not rows:
            return self._unset
        return max(rows, key=lambda r: r.set_at)

    def is_on(self) -> bool:
        return self.state().on

    def refresh(self) -> KillSwitchState:
        """Forget what was read and read again (e.g. after a file was edited by hand)."""
        self._cache.clear()
        self._pinned = None
        return self.state()

    def history(self, limit: int = 20) -> list[KillSwitchState]:
        """Changes to the scopes that decide for ``account``, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        scopes = self._scopes()
        if self.folder is None:
            changes = self._history
        else:
            path = self.folder / HISTORY
            lines = path.read_text().splitlines() if path.exists() else []
            changes = [KillSwitchState.from_json(line) for line in lines if line.strip()]
        return [h for h in reversed(changes) if h.account in scopes][:limit]

    # ------------------------------------------------------------------ writing

    def turn_on(self, reason: str, set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        return self.set(True, reason, set_by=set_by, run_id=run_id)

    def turn_off(self, reason: str = "cleared", set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        return self.set(False, reason, set_by=set_by, run_id=run_id)

    def set(self, on: bool, reason: str, set_by: str = "api", run_id: str | None = None) -> KillSwitchState:
        """Set ``account``'s own switch; turning it on needs a reason (it lands in the history)."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be True or False, got {on!r}")
        if not isinstance(reason, str) or not reason.strip():
            if on:
                raise ValueError(f"a reason is required to turn the kill switch on, got {reason!r}")
            reason = "cleared"
        if not isinstance(set_by, str) or not set_by.strip():
            raise ValueError(f"set_by must be a non-empty string, got {set_by!r}")
        new = KillSwitchState(self.account, on, reason.strip(), set_by.strip(), self.clock(), run_id)
        self._pinned = None
        if self.folder is None:
            self._memory[self.account] = new
            self._history.append(new)
            return new
        _write(self.folder, new)
        return new


def _write(folder: Path, state: KillSwitchState) -> None:
    """Replace the scope's file atomically, then append the change to the history."""
    path = folder / _file_name(state.account)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(state.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    with open(folder / HISTORY, "a") as handle:  # one short line per append: appends do not interleave
        handle.write(state.to_json() + "\n")


def _carry_over(store: Store, folder: Path) -> None:
    """Copy a switch an older TradeNova kept in the database into the files, once."""
    marker = folder / f".carried_over_{hashlib.sha1(str(store.path).encode()).hexdigest()[:12]}"
    if marker.exists():
        return
    try:
        rows = store.query("SELECT account, is_on, reason, set_by, set_at, run_id FROM kill_switch")
    except Exception:  # noqa: BLE001 - no such table (a new home): nothing to carry over
        rows = []
    for account, is_on, reason, set_by, set_at, run_id in rows:
        if not (folder / _file_name(account)).exists():
            _write(folder, KillSwitchState(account, bool(is_on), reason, set_by, set_at, run_id))
    marker.touch()
