"""ProfitManager: how a trade ends — the take-profit ladder, the trailing stop, the stop loss.

The ladder (DESIGN.md §4; every number configurable through ``LadderConfig``):

=====  ===========  ============================
level  gain         sells
=====  ===========  ============================
TP1    +40%         50% of what remains
TP2    +60%         20% of what remains
TP3    +100%        10% of what remains
TP4    +150%        10% of what remains; arms the trailing stop
TP5    +200%        all of it
STOP   -15%         all of it (before the trail is armed)
TRAIL  see below    all of it (once armed)
=====  ===========  ============================

Gain is measured on the price of what was bought: ``(price - entry) / entry`` for a long
(a long call or put gains when its premium rises; so does an equity long) and
``(entry - price) / entry`` for a short equity. Reaching a level fires it (+40.00% fires
TP1); ``state.EPS`` absorbs floating-point noise. Each level fires once per position.

**Rounding (whole contracts/shares).** A level sells ``ceil(fraction x remaining)`` whole
units, computed exactly with fractions (1000 x 10% is 100, never 101), and never more
than remaining. So every level that fires sells at least one unit, and small positions
leave the ladder early: 1 contract exits entirely at TP1, 2 contracts sell 1 at TP1 and 1
at TP2. 10 contracts: 5, 1, 1, 1, then 2 at TP5; 1000: 500, 100, 40, 36, then 324.
STOP, TRAIL and TP5 sell everything, so any position, 1 contract included, always exits.

**Gaps.** When one price crosses several levels at once (a gap, a sparse feed), every
crossed level fires in order within that tick, each on what the previous one left, and
``check_exits`` returns them as one combined exit (``levels`` lists them, ``level`` is the
highest). The position ends exactly where a path through each level would have left it.

**Trailing stop.** Armed once the gain reaches ``trail_arm_pct`` (+150%, TP4). From then
on the position is protected at the *locked gain* ``max(trail_floor_pct, gain of
best_price x (1 - trail_pct))`` (``best_price x (1 + trail_pct)`` for a short), with
``trail_floor_pct`` = +100% and ``trail_pct`` = 20% of the best price: at +150% (2.5x
entry) the trail sits at exactly 2.0x = +100%, and it rises with the best price, never
falling. Any price at or below the locked gain sells all. Before arming, the locked gain
is the stop loss, -15%, so the locked gain never decreases over a position's life.

**State.** ``check_exits`` assumes its exit is executed: the levels are marked fired and
the remaining quantity reduced before it returns. The trading session instead calls
``propose_exits`` and, only when the exit order fills, ``exit_filled``: a rejected or
unfilled exit changes nothing, so the position keeps its stop.

**One owner per fact.** In a session the ladder ``follow``s the account's ledger: how many
contracts are held and at what average price is read from the ledger's book every time,
never copied. The ladder keeps only its own state per position id (the id of the fill that
opened the holding): levels fired, best price, trail armed. With a store that state lives
in the ledger file (``ladder_state``) so a restarted session neither fires a level twice
nor forgets an armed trail; a re-entry after a close (by the session or a flatten job) is
a new position id and starts a fresh ladder. Level changes are written at once,
best-price updates in batches (``flush_interval_s``, ``flush()``, or leaving a ``with``
block). Standalone (no ledger) the ladder keeps quantities itself, in memory.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Callable

from tradenova_dagster.domain import Side, position_side, require_price, require_symbol, utcnow
from tradenova_dagster.ledger.accounts import require_account
from tradenova_dagster.store import Store
from tradenova_dagster.risk.state import (
    EPS,
    Clock,
    FlushTimer,
    LadderPosition,
    LadderState,
    delete_ladder_states,
    load_ladder_states,
    save_ladder_state,
)
from tradenova_dagster.risk.ladder_config import DEFAULT_LEVELS, STOP, TRAIL, LadderConfig, TakeProfitLevel

__all__ = ["DEFAULT_LEVELS", "STOP", "TRAIL", "LadderConfig", "ProfitManager", "TakeProfitLevel"]


def _whole_qty(name: str, value, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(value, float) and (
        not math.isfinite(value) or not value.is_integer()
    ):
        raise ValueError(f"{name} must be a whole number of contracts or shares, got {value!r}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class ProfitManager:
    """The take-profit ladder, trailing stop and stop loss for the open positions of one account.

    Standalone (the seed's usage: ``add_position`` then ``check_exits``), it keeps each
    position's quantity and entry price itself, in memory. A trading session instead makes
    it ``follow`` the account's ledger: quantities and entry prices are then read from the
    ledger's book (their one owner) at every use, and the ladder keeps, and with a store
    persists, only its own state per position id (``LadderState``).
    """

    def __init__(
        self,
        levels: tuple[TakeProfitLevel, ...] = DEFAULT_LEVELS,
        stop_loss_pct: float = LadderConfig.stop_loss_pct,
        trail_arm_pct: float = LadderConfig.trail_arm_pct,
        trail_floor_pct: float = LadderConfig.trail_floor_pct,
        trail_pct: float = LadderConfig.trail_pct,
        *,
        store: Store | None = None,
        account: str = "sim:default",
        run_id: str | None = None,
        clock: Clock | None = None,
        flush_interval_s: float = 5.0,
    ):
        self.config = LadderConfig(tuple(levels), stop_loss_pct, trail_arm_pct, trail_floor_pct, trail_pct)
        self.store = store
        self.account = require_account(account)
        self.run_id = run_id
        self.clock: Callable[[], datetime] = clock or utcnow
        self._timer = FlushTimer(flush_interval_s)
        self._dirty: set[str] = set()  # position ids whose best price changed since the last write
        self._positions: dict[str, LadderPosition] = {}  # standalone only
        self._book = None  # the ledger's Book once following
        self._states: dict[str, LadderState] = {}  # following: by position id

    @classmethod
    def from_config(cls, config: LadderConfig, **kwargs) -> "ProfitManager":
        return cls(config.levels, config.stop_loss_pct, config.trail_arm_pct, config.trail_floor_pct,
                   config.trail_pct, **kwargs)

    def __repr__(self) -> str:
        return f"ProfitManager(account={self.account!r}, positions={sorted(self.positions())})"

    def __enter__(self) -> "ProfitManager":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    # ------------------------------------------------------------------ the ledger

    def follow(self, book) -> None:
        """Read quantities and entry prices from ``book`` (the account's ledger) from now
        on, and load the ladder's own state. State of a position the book no longer holds
        is dropped; state kept by an older version under its symbol is adopted by the
        position held in that symbol."""
        if self._positions:
            raise ValueError(f"follow: the ladder of {self.account} already keeps positions of its own "
                             f"({', '.join(sorted(self._positions))}); follow a ledger before adding any")
        self._book = book
        states: dict[str, LadderState] = {}
        if self.store is not None:
            with self.store.connect() as con:
                states = load_ladder_states(con, self.account)
        held = {p.position_id: p for p in book.positions.values() if p.qty > EPS}
        for pos in held.values():
            legacy = states.pop(f"legacy:{pos.symbol}", None)
            if pos.position_id not in states and legacy is not None:
                states[pos.position_id] = replace(legacy, position_id=pos.position_id)
                self._dirty.add(pos.position_id)
        gone = [pid for pid in states if pid not in held]
        self._states = {pid: st for pid, st in states.items() if pid in held}
        if self.store is not None:
            with self.store.transaction() as con:
                delete_ladder_states(con, self.account, gone + [f"legacy:{p.symbol}" for p in held.values()])
        self.flush()

    # ------------------------------------------------------------------ reading

    def position(self, symbol: str) -> LadderPosition:
        return replace(self._get(require_symbol("symbol", symbol)))

    def positions(self) -> dict[str, LadderPosition]:
        if self._book is None:
            return {k: replace(v) for k, v in self._positions.items()}
        return {s: self._get(s) for s, p in self._book.positions.items() if p.qty > EPS}

    def covers(self, symbol: str) -> bool:
        """Whether ``symbol`` is under the ladder (``symbol in positions()``, without
        building every position: a session asks on every bar it holds something)."""
        if self._book is None:
            return symbol in self._positions
        held = self._book.positions.get(symbol)
        return held is not None and held.qty > EPS

    def locked_gain(self, symbol: str) -> float:
        """The gain the position is protected at: -stop_loss_pct, or the trail once armed."""
        return self._locked_gain(self._get(require_symbol("symbol", symbol)))

    def stop_price(self, symbol: str) -> float:
        """The price at which the stop (or the armed trail) would sell everything."""
        pos = self._get(require_symbol("symbol", symbol))
        return max(0.0, pos.entry_price * (1 + pos.sign * self._locked_gain(pos)))

    # ------------------------------------------------------------------ changes (standalone)

    def add_position(self, symbol: str, qty: int, entry_price: float, side: Side | str = "buy") -> LadderPosition:
        """Put a new position under the ladder. ``side``: buy/long (calls, puts, equity longs) or sell/short."""
        self._standalone("add_position")
        symbol = require_symbol("symbol", symbol)
        qty = _whole_qty("qty", qty)
        entry_price = require_price("entry_price", entry_price)
        kind = position_side(side)
        if symbol in self._positions:
            raise ValueError(
                f"add_position: {symbol} is already under the ladder ({self._positions[symbol].remaining_qty} left); "
                f"use sync_quantity or remove_position first"
            )
        pos = LadderPosition(symbol=symbol, side=kind, entry_price=entry_price, initial_qty=qty, remaining_qty=qty,
                             fired=(), best_price=entry_price, trail_armed=False, opened_at=self.clock())
        self._write(pos)
        return replace(pos)

    def sync_quantity(self, symbol: str, qty: int) -> None:
        """Set the remaining quantity to what the broker holds (0 removes the position)."""
        self._standalone("sync_quantity")
        symbol = require_symbol("symbol", symbol)
        qty = _whole_qty("qty", qty, allow_zero=True)
        pos = replace(self._get(symbol))
        pos.remaining_qty = qty
        self._write(pos)

    def remove_position(self, symbol: str) -> None:
        self.sync_quantity(symbol, 0)

    # ------------------------------------------------------------------ exits

    def check_exits(self, symbol: str, price: float) -> dict | None:
        """None, or the exit to place now: ``{action, qty, reason, level, levels, ...}``,
        assumed executed at once (``propose_exits`` then ``exit_filled``).

        ``action`` is ``sell`` for a long and ``buy`` for a short; ``qty`` whole units;
        ``level`` the highest level fired (or ``STOP`` / ``TRAIL``); ``levels`` all fired
        in this tick; ``remaining`` what is left after it; ``closes_position`` whether
        that is nothing.
        """
        exit_ = self.propose_exits(symbol, price)
        if exit_ is not None:
            self.exit_filled(exit_["symbol"], exit_["levels"], exit_["remaining"])
        return exit_

    def propose_exits(self, symbol: str, price: float) -> dict | None:
        """The exit ``check_exits`` would return, without marking its levels fired or cutting
        the quantity: a session calls ``exit_filled`` only once the exit order fills, so a
        rejected or unfilled exit leaves the ladder (and the stop) exactly as it was.
        The best price and the trailing stop's arming are observations of the market and
        are kept either way."""
        symbol = require_symbol("symbol", symbol)
        price = require_price("price", price)
        pos = self._get(symbol)
        if self._book is None:
            pos = replace(pos)  # standalone, _get returns the kept position: work on a copy
        cfg = self.config
        best_before = pos.best_price
        if pos.sign * (price - pos.best_price) > 0:
            pos.best_price = price
        gain = pos.gain(price)
        before = pos.remaining_qty
        sold: list[tuple[str, int]] = []
        locked = self._locked_gain(pos)
        if pos.trail_armed and gain <= locked + EPS:
            sold = [(TRAIL, before)]
            why = (f"trailing stop: {symbol} at {price:g} is {gain:+.2%} from entry {pos.entry_price:g}, at or "
                   f"below the locked {locked:+.2%} (best {pos.best_price:g})")
        elif not pos.trail_armed and gain <= locked + EPS:
            sold = [(STOP, before)]
            why = f"stop loss: {symbol} at {price:g} is {gain:+.2%} from entry {pos.entry_price:g} (stop {locked:+.2%})"
        else:
            remaining = before
            for level in cfg.levels:
                if level.name in pos.fired:
                    continue
                if gain < level.gain_pct - EPS or remaining == 0:
                    break
                n = level.sell_qty(remaining)
                remaining -= n
                sold.append((level.name, n))
            if sold:
                names = "+".join(name for name, _ in sold)
                gap = f" (gap through {len(sold)} levels)" if len(sold) > 1 else ""
                why = f"take profit {names}{gap}: {symbol} at {price:g} is {gain:+.2%} from entry {pos.entry_price:g}"
        newly_armed = not pos.trail_armed and pos.gain(pos.best_price) >= cfg.trail_arm_pct - EPS
        if newly_armed:
            pos.trail_armed = True
            self._write(pos)
        elif pos.best_price != best_before:
            self._remember(pos)
            self._dirty.add(self._key(pos))
            self._maybe_flush()
        if not sold:
            return None
        qty = sum(n for _, n in sold)
        action = "sell" if pos.side == "long" else "buy"
        parts = "+".join(str(n) for _, n in sold)
        return {
            "symbol": symbol,
            "action": action,
            "qty": qty,
            "reason": f"{why}: {action} {parts if len(sold) > 1 else qty} of {before}",
            "level": sold[-1][0],
            "levels": [name for name, _ in sold],
            "price": price,
            "gain_pct": gain,
            "remaining": before - qty,
            "closes_position": before - qty == 0,
        }

    def exit_filled(self, symbol: str, levels, remaining: int | None = None) -> None:
        """An exit proposed for ``levels`` has filled: mark the take-profit levels fired
        (STOP and TRAIL are not levels). Standalone, ``remaining`` is what is now held (0
        removes the position); following a ledger, the book already says so."""
        symbol = require_symbol("symbol", symbol)
        if self._book is not None and self._book.qty(symbol) <= EPS:
            self.forget_closed()
            return
        pos = replace(self._get(symbol))
        new = tuple(name for name in levels if name not in (STOP, TRAIL) and name not in pos.fired)
        pos.fired = pos.fired + new
        if self._book is None:
            pos.remaining_qty = _whole_qty("remaining", remaining, allow_zero=True)
        self._write(pos)

    def forget_closed(self) -> None:
        """Following a ledger: drop the state of positions the book no longer holds."""
        if self._book is None:
            return
        held = {p.position_id for p in self._book.positions.values() if p.qty > EPS}
        gone = [pid for pid in self._states if pid not in held]
        if not gone:
            return
        if self.store is not None:
            with self.store.transaction() as con:
                delete_ladder_states(con, self.account, gone)
        for pid in gone:
            self._states.pop(pid, None)
            self._dirty.discard(pid)

    def flush(self) -> None:
        """Write batched best-price updates now."""
        if self.store is not None and self._book is not None and self._dirty:
            now = self.clock()
            with self.store.transaction() as con:
                for pid in sorted(self._dirty):
                    if pid in self._states:
                        save_ladder_state(con, self.account, self._states[pid], now, self.run_id)
        self._dirty.clear()
        self._timer.reset()

    close = flush

    # ------------------------------------------------------------------ internals

    def _standalone(self, what: str) -> None:
        if self._book is not None:
            raise ValueError(f"{what}: the ladder of {self.account} follows the ledger, which owns quantities "
                             "and entry prices; record fills in the ledger instead")

    @staticmethod
    def _key(pos: LadderPosition) -> str:
        return pos.position_id or pos.symbol

    def _get(self, symbol: str) -> LadderPosition:
        if self._book is None:
            try:
                return self._positions[symbol]
            except KeyError:
                known = ", ".join(sorted(self._positions)) or "none"
                raise ValueError(f"no open position in {symbol} under the ladder of {self.account} "
                                 f"(open: {known})") from None
        held = self._book.positions.get(symbol)
        if held is None or held.qty <= EPS:
            known = ", ".join(sorted(s for s, p in self._book.positions.items() if p.qty > EPS)) or "none"
            raise ValueError(f"no open position in {symbol} in the ledger of {self.account} (open: {known})")
        entry, qty = held.avg_entry_price, int(round(held.qty))
        st = self._states.get(held.position_id) or LadderState(held.position_id, symbol, (), entry, False)
        return LadderPosition(symbol, "long", entry, qty, qty, st.fired, st.best_price, st.trail_armed,
                              held.opened_at, held.position_id)

    def _locked_gain(self, pos: LadderPosition) -> float:
        cfg = self.config
        if not pos.trail_armed:
            return -cfg.stop_loss_pct
        trail_price = pos.best_price * (1 - pos.sign * cfg.trail_pct)
        return max(cfg.trail_floor_pct, pos.gain(trail_price))

    def _remember(self, pos: LadderPosition) -> None:
        """Adopt ``pos`` in memory: the whole position standalone, only its state following."""
        if self._book is None:
            if pos.remaining_qty == 0:
                self._positions.pop(pos.symbol, None)
            else:
                self._positions[pos.symbol] = pos
        else:
            self._states[pos.position_id] = LadderState(pos.position_id, pos.symbol, pos.fired, pos.best_price,
                                                        pos.trail_armed)

    def _write(self, pos: LadderPosition) -> None:
        """Following a ledger with a store: persist the position's state first, adopt it in
        memory only after (a failed write changes nothing). Standalone: memory only."""
        if self.store is not None and self._book is not None:
            state = LadderState(pos.position_id, pos.symbol, pos.fired, pos.best_price, pos.trail_armed)
            with self.store.transaction() as con:
                save_ladder_state(con, self.account, state, self.clock(), self.run_id)
        self._dirty.discard(self._key(pos))
        self._remember(pos)

    def _maybe_flush(self) -> None:
        if self.store is not None and self._timer.due():
            self.flush()
