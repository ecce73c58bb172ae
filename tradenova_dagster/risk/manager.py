"""AdvancedRiskManager: decides whether a trade may happen (DESIGN.md §4).

The rules, each configurable (``RiskLimits``, exposed on the Dagster ``RiskResource``):

======================  ==========================================  ======================
rule                    breached when                               effect
======================  ==========================================  ======================
``kill_switch``         the kill switch is on                       no new entries
``daily_loss``          loss >= 2% of start-of-day equity           halt for the day
``loss_streak``         3rd losing trade in a row (today)           halt for the day
``max_drawdown``        equity >= 10% below its peak                stop until cleared
``iv_rank``             IV rank > 95  (95 allowed, 95.01 not)       no new entries
``vix``                 VIX > 32      (32 allowed, 32.01 not)       no new entries
``spread``              quoted spread > 5% of mid (5% allowed)      no entry
``max_open_positions``  a new symbol while 3 are already open       no entry
``max_position_size``   position after the trade > 10% of equity    no entry
======================  ==========================================  ======================

Reaching a loss limit halts (a loss of exactly 2.00% halts; so does a drawdown of exactly
10.00%); the market-condition limits refuse only strictly above (VIX 32.00 is allowed).
Ratio comparisons tolerate 1e-9 of floating-point noise (``state.EPS``).

Daily P&L is realised + unrealised since ``start_day``: today's realised P&L from
``record_trade`` plus the latest unrealised P&L from ``update_equity``; when the broker's
equity is reported too, the lower of the two equities counts (see ``RiskState.equity``).

Loss streak: a losing trade (pnl < 0) adds one, a winning trade (pnl > 0) resets it to
zero, a scratch trade (pnl == 0) leaves it as it is. The streak counts within a session
day; ``start_day`` of a new day resets it.

Entries and exits: **exits are always allowed** — a lockout blocks new risk, never the
flatten. ``check_trade_allowed(..., is_exit=True)`` says so explicitly (the flatten and the
ladder should); when ``is_exit`` is left out the side decides: an order that reduces a
position known from ``set_positions`` is an exit; for an option symbol with no known
position, ``sell`` is an exit (TradeNova only buys options to open — calls and puts
alike — and sells them to close; it never writes options) and ``buy`` is an entry; for
an equity with no known position every order is an entry.

``risk_level``: HALTED when halted or the kill switch is on; otherwise from the largest
share of a loss limit already used, ``u = max(daily loss / limit, drawdown / limit,
loss streak / limit)``: LOW when u < 0.5, MEDIUM when 0.5 <= u < 0.8, HIGH when u >= 0.8.

Persistence: with ``store=Store(...)`` and ``account=...`` the state lives in DuckDB's
``risk_state`` row for the account, so every process shares it (``initial_balance`` only
seeds an account seen for the first time). Changes that others must see at once (halts,
cleared halts, trades, a new day) are written immediately; refusal events and
mark-to-market updates are batched and written every ``flush_interval_s`` seconds, by
``flush()``, with the next immediate write, or on leaving a ``with`` block. Without a store
everything stays in memory.

One owner per fact: a trading session makes the manager ``follow`` the account's ledger.
Positions, the day's realised P&L (partial exits included), the trades and the loss
streak are then read from the ledger's fills (``Book.realized_on``, ``round_trips_on``);
the ``risk_state`` row keeps what only risk knows (start-of-day equity, peak, halts, the
marks it was last given) and a snapshot of the rest for people and the UI.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable

from tradenova_dagster.domain import (
    OPTION_MULTIPLIER,
    AssetClass,
    Position,
    Side,
    asset_class_of,
    require_finite,
    require_price,
    require_quantity,
    require_symbol,
    utcnow,
)
from tradenova_dagster.ledger.accounts import require_account
from tradenova_dagster.store import Store
from tradenova_dagster.risk.kill_switch import KillSwitch
from tradenova_dagster.risk.state import (
    EPS,
    ChangeSignal,
    Clock,
    FlushTimer,
    RiskEvent,
    RiskState,
    SignalWatch,
    insert_events,
    load_state,
    save_marks,
    save_state,
)

MEDIUM_AT = 0.5
HIGH_AT = 0.8
UNATTRIBUTED = "*"  # key of an unrealised P&L total given without a per-symbol split
_MAX_PENDING_EVENTS = 1000


class RiskLevel(str, enum.Enum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    HALTED = "HALTED"


def _fraction(name: str, value, allow_one: bool = True) -> float:
    value = require_finite(name, value)
    if not 0 < value <= 1 or (value == 1 and not allow_one):
        raise ValueError(f"{name} must be a fraction in (0, 1], e.g. 0.02 for 2%, got {value!r}")
    return value


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class RiskLimits:
    """Every threshold of the risk rules; validated on construction."""

    daily_loss_limit_pct: float = 0.02
    max_drawdown_pct: float = 0.10
    max_loss_streak: int = 3
    max_iv_rank: float = 95.0
    max_vix: float = 32.0
    max_spread_pct: float = 0.05
    max_position_pct: float = 0.10
    max_open_positions: int = 3

    def __post_init__(self) -> None:
        for name in ("daily_loss_limit_pct", "max_drawdown_pct", "max_spread_pct", "max_position_pct"):
            object.__setattr__(self, name, _fraction(name, getattr(self, name)))
        _positive_int("max_loss_streak", self.max_loss_streak)
        _positive_int("max_open_positions", self.max_open_positions)
        iv = require_finite("max_iv_rank", self.max_iv_rank)
        if not 0 < iv <= 100:
            raise ValueError(f"max_iv_rank must be in (0, 100] (IV rank is a percentile), got {iv!r}")
        object.__setattr__(self, "max_iv_rank", iv)
        vix = require_finite("max_vix", self.max_vix)
        if vix <= 0:
            raise ValueError(f"max_vix must be > 0, got {vix!r}")
        object.__setattr__(self, "max_vix", vix)


def _streak(pnls, start: int = 0) -> int:
    """Losing trades in a row after ``pnls``: a loss adds one, a win resets, a scratch leaves it."""
    streak = start
    for pnl in pnls:
        if pnl < 0:
            streak += 1
        elif pnl > 0:
            streak = 0
    return streak


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def _pair(a: float, b: float, scale: float = 1.0, suffix: str = "") -> tuple[str, str]:
    """Format two numbers with 2 decimals, or more if 2 would print them equal."""
    for digits in range(2, 9):
        sa, sb = f"{a * scale:.{digits}f}", f"{b * scale:.{digits}f}"
        if sa != sb:
            break
    return sa + suffix, sb + suffix


def _optional(name: str, value, low: float, high: float | None) -> float | None:
    if value is None:
        return None
    value = require_finite(name, value)
    if value < low or (high is not None and value > high):
        bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return value


class AdvancedRiskManager:
    """The risk rules for one account; see the module docstring for the rules."""

    def __init__(
        self,
        initial_balance: float = 100_000.0,
        # the limits' defaults are RiskLimits' own (the one home of DESIGN.md §4's numbers)
        daily_loss_limit_pct: float = RiskLimits.daily_loss_limit_pct,
        max_drawdown_pct: float = RiskLimits.max_drawdown_pct,
        max_loss_streak: int = RiskLimits.max_loss_streak,
        max_iv_rank: float = RiskLimits.max_iv_rank,
        max_vix: float = RiskLimits.max_vix,
        max_spread_pct: float = RiskLimits.max_spread_pct,
        max_position_pct: float = RiskLimits.max_position_pct,
        max_open_positions: int = RiskLimits.max_open_positions,
        *,
        store: Store | None = None,
        account: str = "sim:default",
        run_id: str | None = None,
        kill_switch: KillSwitch | None = None,
        clock: Clock | None = None,
        flush_interval_s: float = 5.0,
        max_age_s: float | None = 30.0,
    ):
        self.limits = RiskLimits(
            daily_loss_limit_pct=daily_loss_limit_pct,
            max_drawdown_pct=max_drawdown_pct,
            max_loss_streak=max_loss_streak,
            max_iv_rank=max_iv_rank,
            max_vix=max_vix,
            max_spread_pct=max_spread_pct,
            max_position_pct=max_position_pct,
            max_open_positions=max_open_positions,
        )
        initial_balance = require_price("initial_balance", initial_balance)
        self.account = require_account(account)
        self.run_id = run_id
        self.store = store
        self.clock: Callable[[], datetime] = clock or utcnow
        self.kill_switch = kill_switch or KillSwitch(store, account=self.account, clock=self.clock)
        self.events: list[RiskEvent] = []  # everything this instance decided, oldest first
        self._pending: list[RiskEvent] = []  # refusals not yet written to DuckDB
        self._marks_dirty = False
        self._positions: dict[str, float] = {}  # standalone only (set_positions)
        self._book = None  # the ledger's Book once following
        self._timer = FlushTimer(flush_interval_s)
        self._holds = 0  # depth of ``held`` blocks
        self._batching = False  # inside ``batch``: state changes are written by ``flush``
        self._state_dirty = False  # the state changed since it was last written (only while batching)
        self._fresh_in_hold = False  # the shared state was checked in the current ``held`` block
        fresh = RiskState(account=self.account, day=None, start_of_day_equity=initial_balance,
                          peak_equity=initial_balance)
        if store is None:
            self._signal = self._watch = None
            self.state = fresh
        else:
            self._signal = ChangeSignal.for_store(store)
            self._watch = SignalWatch(self._signal, max_age_s)
            stamp = self._watch.stamp_before_read()
            with store.transaction() as con:
                loaded = load_state(con, self.account)
                if loaded is None:
                    save_state(con, fresh, self.clock())
            self.state = loaded or fresh
            self._watch.loaded(stamp)
        if self._halt_due(self.state):  # e.g. a limit lowered since the state was written
            self._commit(self._halt_if_breached)

    @classmethod
    def from_limits(cls, limits: RiskLimits, initial_balance: float = 100_000.0, **kwargs) -> "AdvancedRiskManager":
        return cls(initial_balance, **vars(limits), **kwargs)

    def __repr__(self) -> str:
        return f"AdvancedRiskManager(account={self.account!r}, level={self.risk_level.value})"

    def __enter__(self) -> "AdvancedRiskManager":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    @contextmanager
    def held(self):
        """One reading of the shared risk state for the whole block: it is checked for
        changes by other processes once (at the block's first read), not at every read. A
        session holds a bar (marking, the entry gate and the halt check each read the
        state): a halt set by another process during a bar counts from the next bar;
        this manager's own changes count at once. The kill switch has its own
        (``KillSwitch.held``). Blocks nest (the outermost decides)."""
        self._holds += 1
        try:
            yield self
        finally:
            self._holds -= 1
            if not self._holds:
                self._fresh_in_hold = False

    @contextmanager
    def batch(self):
        """Inside a unit of work, a change to the state is adopted at once and written when
        the block ends (``flush``), with the refusals and marks: a replayed day writes its
        risk row once instead of at every trade. Other processes see it when the unit
        commits, as they would anyway, and none can write the file meanwhile. Outside a
        unit of work every change is written at once. Blocks nest; the row is written also
        when the block ends with an exception (the trades it counts did happen)."""
        if self._batching or self.store is None or not self.store.in_unit_of_work:
            yield self
            return
        self._batching = True
        try:
            yield self
        finally:
            self._batching = False
            self.flush()

    # ------------------------------------------------------------------ reading

    @property
    def is_halted(self) -> bool:
        self._refresh()
        return self.state.halted

    @property
    def risk_level(self) -> RiskLevel:
        self._refresh()
        return self._level()

    def snapshot(self) -> dict:
        """The numbers a monitor or a report shows (plain types, JSON-able)."""
        self._refresh()
        s = self.state
        ks = self.kill_switch.state()
        return {
            "account": s.account,
            "day": s.day.isoformat() if s.day else None,
            "start_of_day_equity": s.start_of_day_equity,
            "equity": s.equity,
            "realized_pnl": s.realized_pnl,
            "unrealized_pnl": s.unrealized_pnl,
            "daily_pnl": s.daily_pnl,
            "daily_loss_pct": s.daily_loss_pct,
            "peak_equity": s.peak_equity,
            "drawdown_pct": s.drawdown_pct,
            "trades_today": s.trades_today,
            "loss_streak": s.loss_streak,
            "halted": s.halted,
            "halt_rule": s.halt_rule,
            "halt_reason": s.halt_reason,
            "kill_switch_on": ks.on,
            "kill_switch_reason": ks.reason if ks.on else None,
            "risk_level": self._level().value,
        }

    def is_exit_order(self, symbol: str, side: Side | str) -> bool:
        """Whether an order closes risk rather than opening it (see the module docstring)."""
        symbol = require_symbol("symbol", symbol)
        side = Side.parse(side)
        held = self._held().get(symbol, 0.0)
        if held > 0:
            return side is Side.SELL
        if held < 0:
            return side is Side.BUY
        return asset_class_of(symbol) is AssetClass.OPTION and side is Side.SELL

    # ------------------------------------------------------------------ the check

    def check_trade_allowed(
        self,
        symbol: str,
        qty: float,
        price: float,
        side: Side | str,
        iv_rank: float | None = None,
        vix: float | None = None,
        spread_pct: float | None = None,
        *,
        is_exit: bool | None = None,
    ) -> tuple[bool, str, RiskLevel]:
        """``(allowed, reason, risk_level)``; every refusal is recorded as a risk event.

        ``iv_rank`` is 0..100, ``vix`` the index level, ``spread_pct`` the quoted spread as a
        fraction of the mid (``Quote.spread_pct``); a value left as None is not known and
        its rule is not applied.
        """
        symbol = require_symbol("symbol", symbol)
        qty = require_quantity("qty", qty)
        price = require_price("price", price)
        side = Side.parse(side)
        iv_rank = _optional("iv_rank", iv_rank, 0.0, 100.0)
        vix = _optional("vix", vix, 0.0, None)
        spread_pct = _optional("spread_pct", spread_pct, 0.0, None)
        if is_exit is not None and not isinstance(is_exit, bool):
            raise ValueError(f"is_exit must be True, False or None, got {is_exit!r}")
        exiting = self.is_exit_order(symbol, side) if is_exit is None else is_exit
        order = {"symbol": symbol, "qty": qty, "price": price, "side": side.value}
        if exiting:
            try:
                self._refresh()
                self.kill_switch.state()
            except Exception as exc:  # noqa: BLE001 - exits never wait on what cannot be read
                return True, f"exit of {symbol}: always allowed (risk state unreadable: {exc!r})", RiskLevel.HALTED
            return True, f"exit of {symbol}: always allowed (lockouts block entries only)", self._level()
        refused = self._price_free_rules(symbol, order, iv_rank, vix)
        if refused is not None:
            return refused
        s, lim = self.state, self.limits
        if spread_pct is not None and spread_pct > lim.max_spread_pct + EPS:
            a, b = _pair(spread_pct, lim.max_spread_pct, 100, "%")
            return self._refuse("spread", symbol, f"spread {a} of mid > {b}: no entry in {symbol}",
                                {**order, "spread_pct": spread_pct, "limit": lim.max_spread_pct})
        held = self._held().get(symbol, 0.0)
        multiplier = OPTION_MULTIPLIER if asset_class_of(symbol) is AssetClass.OPTION else 1
        size = (abs(held) + qty) * price * multiplier
        cap = lim.max_position_pct * s.equity
        if size > cap * (1 + EPS):
            return self._refuse(
                "max_position_size", symbol,
                f"position in {symbol} would be {size:,.2f}, above {_pct(lim.max_position_pct)} of equity "
                f"({cap:,.2f}): no entry",
                {**order, "position_value": size, "equity": s.equity, "limit_pct": lim.max_position_pct},
            )
        return True, f"entry in {symbol} allowed", self._level()

    def entry_gate(self, symbol: str, qty: float, iv_rank: float | None = None,
                   vix: float | None = None) -> tuple[bool, str, RiskLevel]:
        """The entry rules that need no price, ``(allowed, reason, risk_level)``: the risk
        state and kill switch readable, the switch off, no halt, IV rank and VIX within
        their limits, room for another position. A session asks this before it prices a
        contract, so a bar whose entry is refused anyway prices nothing (in a replayed day
        nearly every refusal is one of these: a halt or a lockout lasts for hours). A
        refusal is recorded as ``check_trade_allowed`` records it, without a price;
        ``check_trade_allowed`` applies these same rules again, then the priced ones."""
        symbol = require_symbol("symbol", symbol)
        qty = require_quantity("qty", qty)
        iv_rank = _optional("iv_rank", iv_rank, 0.0, 100.0)
        vix = _optional("vix", vix, 0.0, None)
        refused = self._price_free_rules(symbol, {"symbol": symbol, "qty": qty, "side": Side.BUY.value}, iv_rank, vix)
        return refused or (True, f"entry in {symbol} may be priced", self._level())

    def _price_free_rules(self, symbol: str, order: dict, iv_rank: float | None,
                          vix: float | None) -> tuple[bool, str, RiskLevel] | None:
        """The refusal of an entry by a rule that needs no price, or None when none refuses."""
        try:
            self._refresh()
            ks = self.kill_switch.state()
        except Exception as exc:  # noqa: BLE001 - fail closed: what cannot be read cannot allow an entry
            return self._refuse("unreadable", symbol, f"risk state or kill switch of {self.account} could not be "
                                f"read ({exc!r}): no new entries (fail closed)", {**order, "error": repr(exc)},
                                level=RiskLevel.HALTED)
        if ks.on:
            return self._refuse(
                "kill_switch", symbol,
                f"kill switch on (set by {ks.set_by} for {ks.account}): {ks.reason}: no new entries",
                {**order, "kill_switch_account": ks.account, "kill_switch_reason": ks.reason},
            )
        s = self.state
        if s.halted:
            return self._refuse(s.halt_rule or "halt", symbol, f"halted: {s.halt_reason}: no new entries",
                                {**order, "halt_rule": s.halt_rule, "halt_scope": s.halt_scope})
        lim = self.limits
        if iv_rank is not None and iv_rank > lim.max_iv_rank + EPS:
            a, b = _pair(iv_rank, lim.max_iv_rank)
            return self._refuse("iv_rank", symbol, f"IV rank {a} > {b}: no new entries",
                                {**order, "iv_rank": iv_rank, "limit": lim.max_iv_rank})
        if vix is not None and vix > lim.max_vix + EPS:
            a, b = _pair(vix, lim.max_vix)
            return self._refuse("vix", symbol, f"VIX {a} > {b}: no new entries",
                                {**order, "vix": vix, "limit": lim.max_vix})
        if self._held().get(symbol, 0.0) == 0:
            open_now = sum(1 for q in self._held().values() if q != 0)
            if open_now >= lim.max_open_positions:
                return self._refuse(
                    "max_open_positions", symbol,
                    f"{open_now} positions open, the limit is {lim.max_open_positions}: no new position in {symbol}",
                    {**order, "open_positions": open_now, "limit": lim.max_open_positions},
                )
        return None

    # ------------------------------------------------------------------ updates

    def follow(self, book) -> RiskLevel:
        """Read positions, the day's realised P&L, trades and loss streak from ``book`` (the
        account's ledger, their one owner) from now on; ``record_trade`` then only tells
        risk to look again. Standalone (the seed's usage) the manager tallies them itself."""
        self._book = book

        def mutate(s: RiskState, events: list[RiskEvent]) -> None:
            self._from_ledger(s, events)
            self._halt_if_breached(s, events)

        self._commit(mutate)
        return self._level()

    def set_positions(self, positions: Mapping[str, float] | Iterable[Position]) -> None:
        """The open positions, from the broker: ``{symbol: signed qty}`` or domain Positions.

        Used to tell exits from entries and for the position limits. Not persisted: each
        process reads its positions from the broker, which is the truth. A manager that
        follows a ledger reads them from the ledger instead.
        """
        if self._book is not None:
            raise ValueError(f"set_positions: the risk manager of {self.account} follows the ledger, "
                             "which owns the positions")
        if isinstance(positions, Mapping):
            items = [(require_symbol("symbol", k), require_finite(f"qty of {k}", v)) for k, v in positions.items()]
        else:
            items = []
            for p in positions:
                if not isinstance(p, Position):
                    raise ValueError(f"positions must be a mapping or Position objects, got {p!r}")
                items.append((p.symbol, p.qty))
        self._positions = {k: v for k, v in items if v != 0}

    def start_day(self, day: date, equity: float) -> RiskLevel:
        """Begin a session day: start-of-day equity, zeroed daily counters, day halts lifted.

        Idempotent within a day: the warmup and a restarted session both call it, and the
        second call must not wipe the morning's losses. A day earlier than the state's is
        refused. The first start_day of an account sets its baseline: the peak becomes this
        equity (``initial_balance`` was only a placeholder until the broker was asked).
        """
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ValueError(f"day must be a date, got {day!r}")
        equity = require_price("equity", equity)

        def mutate(s: RiskState, events: list[RiskEvent]) -> None:
            if s.day == day:
                self._from_ledger(s, events)  # a restart: the ledger may know trades the row missed
                return
            if s.day is not None and day < s.day:
                raise ValueError(f"start_day({day}): the risk state of {s.account} is already on {s.day}")
            if s.day is None and s.trades_today == 0 and not s.halted:
                s.peak_equity = equity
            if s.halted and s.halt_scope == "day":
                events.append(self._event("clear", s.halt_rule or "halt", None,
                                          f"new session day {day}: lifted '{s.halt_reason}'",
                                          {"day": day.isoformat(), "previous_day": str(s.day)}))
                s.halted, s.halt_rule, s.halt_scope, s.halt_reason, s.halted_at = False, None, None, None, None
            s.day = day
            s.start_of_day_equity = equity
            s.broker_equity = equity
            s.realized_pnl = 0.0
            s.unrealized = {}
            s.trades_today = 0
            s.loss_streak = 0
            s.streak_after = 0
            s.peak_equity = max(s.peak_equity, equity)
            self._from_ledger(s, events)
            self._halt_if_breached(s, events)

        self._commit(mutate)
        return self._level()

    def update_equity(self, equity: float | None = None,
                      unrealized_pnl: float | Mapping[str, float] | None = None) -> RiskLevel:
        """Mark to market: the broker's equity and/or the unrealised P&L of open positions.

        ``unrealized_pnl`` is either ``{symbol: pnl}`` (preferred: ``record_trade`` then
        drops the closed symbol's mark) or one total. Halts at once when a loss limit is
        reached; otherwise the marks are written with the next batch.
        """
        self.mark(equity, unrealized_pnl)
        return self._level()

    def mark(self, equity: float | None = None, unrealized_pnl: float | Mapping[str, float] | None = None) -> None:
        """``update_equity`` without the risk level it answers: the level reads the kill
        switch, and a session, which marks every bar, reads the switch at its controls."""
        if equity is None and unrealized_pnl is None:
            raise ValueError("update_equity needs equity, unrealized_pnl or both")
        if equity is not None:
            equity = require_finite("equity", equity)
        if isinstance(unrealized_pnl, Mapping):
            marks = {require_symbol("symbol", k): require_finite(f"unrealized_pnl of {k}", v)
                     for k, v in unrealized_pnl.items()}
        elif unrealized_pnl is not None:
            marks = {UNATTRIBUTED: require_finite("unrealized_pnl", unrealized_pnl)}
        else:
            marks = None
        self._refresh()
        s = self.state
        if equity is not None:
            s.broker_equity = equity
        if marks is not None:
            s.unrealized = marks
        s.peak_equity = max(s.peak_equity, s.equity)
        self._marks_dirty = True
        if self._halt_due(s):
            self._commit(self._halt_if_breached)
        else:
            self._maybe_flush()

    def record_trade(self, symbol: str, qty: float, entry_price: float, exit_price: float, pnl: float,
                     side: Side | str) -> RiskLevel:
        """A closed (or partly closed) trade: realised P&L, the loss streak, maybe a halt.

        ``side`` is the side of the entry (buy for a long call/put). The symbol's
        unrealised mark (and an unattributed total) is dropped, since its P&L is now
        realised; the next ``update_equity`` marks what is still open.
        """
        symbol = require_symbol("symbol", symbol)
        qty = require_quantity("qty", qty)
        require_price("entry_price", entry_price)
        require_price("exit_price", exit_price)
        pnl = require_finite("pnl", pnl)
        Side.parse(side)

        def mutate(s: RiskState, events: list[RiskEvent]) -> None:
            s.unrealized.pop(symbol, None)
            s.unrealized.pop(UNATTRIBUTED, None)
            if self._book is not None:
                self._from_ledger(s, events)  # the ledger booked the fill: its numbers, not a tally
            else:
                s.realized_pnl += pnl
                s.trades_today += 1
                s.loss_streak = _streak([pnl], s.loss_streak)
            s.peak_equity = max(s.peak_equity, s.equity)
            self._halt_if_breached(s, events)

        self._commit(mutate)
        return self._level()

    def halt(self, reason: str, rule: str = "manual") -> RiskLevel:
        """Halt new entries for the rest of the day (e.g. the session saw bad data)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"halt needs a reason, got {reason!r}")
        if not isinstance(rule, str) or not rule.strip():
            raise ValueError(f"rule must be a non-empty string, got {rule!r}")

        def mutate(s: RiskState, events: list[RiskEvent]) -> None:
            self._apply_halt(s, events, rule.strip(), "day", reason.strip(), {})

        self._commit(mutate)
        return self._level()

    def clear_halt(self, reason: str) -> RiskLevel:
        """Lift a halt by hand, resetting what caused it so that it does not return at once.

        A loss-streak halt resets the streak; a drawdown stop takes the current equity as
        the new peak (whoever clears it accepts the loss). A daily-loss halt cannot be
        cleared while the loss is still at or beyond the limit: the loss is real.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"clear_halt needs a reason, got {reason!r}")

        def mutate(s: RiskState, events: list[RiskEvent]) -> None:
            if not s.halted:
                return
            if s.halt_rule == "daily_loss" and s.daily_loss_pct >= self.limits.daily_loss_limit_pct - EPS:
                raise ValueError(
                    f"cannot clear the daily-loss halt of {s.account}: the loss is still "
                    f"{_pct(s.daily_loss_pct)} of start-of-day equity (limit {_pct(self.limits.daily_loss_limit_pct)})"
                )
            values = {"halt_rule": s.halt_rule, "halt_reason": s.halt_reason}
            if s.halt_rule == "loss_streak":
                s.loss_streak = 0
                s.streak_after = s.trades_today
            if s.halt_rule == "max_drawdown":
                values["previous_peak"] = s.peak_equity
                s.peak_equity = s.equity
            events.append(self._event("clear", s.halt_rule or "halt", None, reason.strip(), values))
            s.halted, s.halt_rule, s.halt_scope, s.halt_reason, s.halted_at = False, None, None, None, None
            self._halt_if_breached(s, events)

        self._commit(mutate)
        return self._level()

    def flush(self) -> None:
        """Write the batched state (``batch``), refusal events and marks now."""
        if self.store is None or (not self._pending and not self._marks_dirty and not self._state_dirty):
            self._timer.reset()
            return
        now, stamp = self.clock(), None
        with self.store.transaction() as con:
            if self._state_dirty:  # the whole row, marks included
                save_state(con, self.state, now)
            elif self._marks_dirty:
                save_marks(con, self.state, now)
            insert_events(con, self._pending)
            if self._state_dirty:
                stamp = self._signal.touch()  # while the lock is held, as in ``_commit``
        self._pending.clear()
        self._marks_dirty = self._state_dirty = False
        self._timer.reset()
        if stamp is not None:
            self._watch.loaded(stamp)

    close = flush

    # ------------------------------------------------------------------ internals

    def _level(self) -> RiskLevel:
        s = self.state
        if s.halted or self.kill_switch.is_on():
            return RiskLevel.HALTED
        lim = self.limits
        used = max(s.daily_loss_pct / lim.daily_loss_limit_pct, s.drawdown_pct / lim.max_drawdown_pct,
                   s.loss_streak / lim.max_loss_streak)
        if used >= HIGH_AT:
            return RiskLevel.HIGH
        if used >= MEDIUM_AT:
            return RiskLevel.MEDIUM
        return RiskLevel.LOW

    def _event(self, kind: str, rule: str, symbol: str | None, reason: str, values: dict) -> RiskEvent:
        return RiskEvent(account=self.account, ts=self.clock(), kind=kind, rule=rule, reason=reason,
                         values=values, symbol=symbol, run_id=self.run_id)

    def _refuse(self, rule: str, symbol: str, reason: str, values: dict,
                level: RiskLevel | None = None) -> tuple[bool, str, RiskLevel]:
        """Record a refusal (batched). ``level`` given: the state could not be read, so it
        is neither consulted nor flushed now; the event goes with the next write."""
        event = self._event("refusal", rule, symbol, reason, values)
        self.events.append(event)
        if self.store is not None:
            self._pending.append(event)
            if level is None:
                self._maybe_flush()
        return False, reason, level or self._level()

    def _maybe_flush(self) -> None:
        if self.store is not None and (len(self._pending) >= _MAX_PENDING_EVENTS or self._timer.due()):
            self.flush()

    def _breach(self, s: RiskState) -> tuple[str, str, str, dict] | None:
        """The first loss limit reached as (rule, scope, reason, values), the stop first."""
        lim = self.limits
        if s.drawdown_pct >= lim.max_drawdown_pct - EPS:
            return ("max_drawdown", "stop",
                    f"drawdown {_pct(s.drawdown_pct)} from the equity peak {s.peak_equity:,.2f} (equity "
                    f"{s.equity:,.2f}) reaches the {_pct(lim.max_drawdown_pct)} limit: trading stopped until cleared",
                    {"drawdown_pct": s.drawdown_pct, "peak_equity": s.peak_equity, "equity": s.equity,
                     "limit": lim.max_drawdown_pct})
        if s.daily_loss_pct >= lim.daily_loss_limit_pct - EPS:
            return ("daily_loss", "day",
                    f"daily loss {-s.daily_pnl:,.2f} = {_pct(s.daily_loss_pct)} of start-of-day equity "
                    f"{s.start_of_day_equity:,.2f} reaches the {_pct(lim.daily_loss_limit_pct)} limit",
                    {"daily_pnl": s.daily_pnl, "realized_pnl": s.realized_pnl, "unrealized_pnl": s.unrealized_pnl,
                     "start_of_day_equity": s.start_of_day_equity, "daily_loss_pct": s.daily_loss_pct,
                     "limit": lim.daily_loss_limit_pct})
        if s.loss_streak >= lim.max_loss_streak:
            return ("loss_streak", "day",
                    f"{s.loss_streak} losing trades in a row reaches the limit of {lim.max_loss_streak}: "
                    f"shut down for the rest of the day",
                    {"loss_streak": s.loss_streak, "limit": lim.max_loss_streak})
        return None

    def _halt_due(self, s: RiskState) -> bool:
        """Whether a limit is reached that the current halt (if any) does not cover yet."""
        breach = self._breach(s)
        if breach is None:
            return False
        return not s.halted or (breach[1] == "stop" and s.halt_scope == "day")

    def _halt_if_breached(self, s: RiskState, events: list[RiskEvent]) -> None:
        breach = self._breach(s)
        if breach is not None:
            rule, scope, reason, values = breach
            self._apply_halt(s, events, rule, scope, reason, values)

    def _apply_halt(self, s: RiskState, events: list[RiskEvent], rule: str, scope: str, reason: str,
                    values: dict) -> None:
        """Halt, keeping the first reason; a stop (drawdown) upgrades a day halt."""
        if s.halted and not (scope == "stop" and s.halt_scope == "day"):
            return
        s.halted, s.halt_rule, s.halt_scope, s.halt_reason, s.halted_at = True, rule, scope, reason, self.clock()
        events.append(self._event("halt", rule, None, reason, values))

    def _refresh(self) -> None:
        """Re-read the shared row when another process changed it (cheap when it did not;
        once per ``held`` block)."""
        if self._watch is None or self._fresh_in_hold or self._state_dirty:  # unwritten: ours is the newest
            return
        if self._watch.needs_reload():
            stamp = self._watch.stamp_before_read()
            with self.store.connect() as con:
                row = load_state(con, self.account)
            if row is not None:
                self.state = self._merge(row)
            self._watch.loaded(stamp)
        self._fresh_in_hold = self._holds > 0

    def _merge(self, row: RiskState) -> RiskState:
        """The stored row, keeping this process's unsaved marks if they are for the same day."""
        if self._marks_dirty and row.day == self.state.day:
            row.unrealized = dict(self.state.unrealized)
            row.broker_equity = self.state.broker_equity
            row.peak_equity = max(row.peak_equity, self.state.peak_equity)
        else:
            self._marks_dirty = False
        return row

    def _held(self) -> dict[str, float]:
        if self._book is None:
            return self._positions
        return {s: p.qty for s, p in self._book.positions.items() if p.qty > EPS}

    def _from_ledger(self, s: RiskState, events: list[RiskEvent]) -> None:
        """Following a ledger: the day's realised P&L, trades and loss streak, from its fills."""
        if self._book is None or s.day is None:
            return
        trips = self._book.round_trips_on(s.day)
        s.realized_pnl = self._book.realized_on(s.day)
        s.trades_today = len(trips)
        s.loss_streak = _streak(trips[s.streak_after:])

    def _commit(self, mutate: Callable[[RiskState, list[RiskEvent]], None]) -> None:
        """Apply a change to the freshest state and write it (with pending events) at once.

        The change is made on a copy and adopted only after the write commits, so a
        failure (bad input found late, a database error) leaves the state unchanged.
        """
        events: list[RiskEvent] = []
        # Every writer touches the signal while it holds the lock, so inside a batch an
        # unchanged stamp means the row is what this process last read or wrote: changed
        # here, written by ``flush``.
        deferred = self._batching and (self._state_dirty or not self._watch.needs_reload())
        if self.store is None or deferred:
            new = self.state.copy()
            mutate(new, events)
            self.state = new
            self.events.extend(events)
            if deferred:
                self._pending.extend(events)
                self._state_dirty = True
            return
        with self.store.transaction() as con:
            row = load_state(con, self.account)
            base = self.state.copy() if row is None else self._merge(row)
            new = base.copy()
            mutate(new, events)
            save_state(con, new, self.clock())
            insert_events(con, self._pending + events)
            # Touched while the lock is held: a reader that sees the new stamp waits for
            # the lock and so reads what this transaction committed.
            stamp = self._signal.touch()
        self.state = new
        self.events.extend(events)
        self._pending.clear()
        self._marks_dirty = False
        self._timer.reset()
        self._watch.loaded(stamp)
