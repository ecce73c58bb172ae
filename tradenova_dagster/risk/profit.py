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
unfilled exit changes nothing, so the position keeps its stop. With a store, state lives in
DuckDB (``profit_ladder``) so a restarted session neither fires a level twice nor forgets
an armed trail: level changes are written at once, best-price updates in batches
(``flush_interval_s``, ``flush()``, or leaving a ``with`` block). One process (the
session) manages an account's ladder at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from fractions import Fraction
from typing import Callable

from tradenova_dagster.domain import Side, require_finite, require_price, require_symbol, utcnow
from tradenova_dagster.store import Store
from tradenova_dagster.risk.state import (
    EPS,
    Clock,
    FlushTimer,
    LadderPosition,
    delete_ladder,
    load_ladders,
    require_account,
    save_ladder,
)

STOP = "STOP"
TRAIL = "TRAIL"


@dataclass(frozen=True)
class TakeProfitLevel:
    name: str
    gain_pct: float  # 0.40 = +40% on the entry price
    sell_fraction: float  # of what remains when the level fires; 1.0 = all

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or self.name in (STOP, TRAIL):
            raise ValueError(f"take-profit level name must be a non-empty string other than STOP/TRAIL, got {self.name!r}")
        gain = require_finite(f"{self.name}.gain_pct", self.gain_pct)
        if gain <= 0:
            raise ValueError(f"{self.name}.gain_pct must be > 0 (a profit), got {gain!r}")
        fraction = require_finite(f"{self.name}.sell_fraction", self.sell_fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"{self.name}.sell_fraction must be in (0, 1], got {fraction!r}")
        object.__setattr__(self, "gain_pct", gain)
        object.__setattr__(self, "sell_fraction", fraction)

    def sell_qty(self, remaining: int) -> int:
        """ceil(sell_fraction x remaining), exactly, and never more than remaining."""
        f = Fraction(self.sell_fraction).limit_denominator(1_000_000)
        return min(remaining, -(-remaining * f.numerator // f.denominator))


DEFAULT_LEVELS = (
    TakeProfitLevel("TP1", 0.40, 0.50),
    TakeProfitLevel("TP2", 0.60, 0.20),
    TakeProfitLevel("TP3", 1.00, 0.10),
    TakeProfitLevel("TP4", 1.50, 0.10),
    TakeProfitLevel("TP5", 2.00, 1.00),
)


@dataclass(frozen=True)
class LadderConfig:
    levels: tuple[TakeProfitLevel, ...] = DEFAULT_LEVELS
    stop_loss_pct: float = 0.15
    trail_arm_pct: float = 1.50
    trail_floor_pct: float = 1.00
    trail_pct: float = 0.20

    def __post_init__(self) -> None:
        levels = tuple(self.levels)
        if not levels or not all(isinstance(lv, TakeProfitLevel) for lv in levels):
            raise ValueError(f"levels must be a non-empty sequence of TakeProfitLevel, got {self.levels!r}")
        names = [lv.name for lv in levels]
        if len(set(names)) != len(names):
            raise ValueError(f"take-profit level names must be unique, got {names}")
        gains = [lv.gain_pct for lv in levels]
        if any(b <= a for a, b in zip(gains, gains[1:])):
            raise ValueError(f"take-profit gains must be strictly increasing, got {gains}")
        object.__setattr__(self, "levels", levels)
        stop = require_finite("stop_loss_pct", self.stop_loss_pct)
        if not 0 < stop < 1:
            raise ValueError(f"stop_loss_pct must be in (0, 1), e.g. 0.15 for -15%, got {stop!r}")
        trail = require_finite("trail_pct", self.trail_pct)
        if not 0 < trail < 1:
            raise ValueError(f"trail_pct must be in (0, 1), e.g. 0.20 for 20% below the best price, got {trail!r}")
        arm = require_finite("trail_arm_pct", self.trail_arm_pct)
        if arm <= 0:
            raise ValueError(f"trail_arm_pct must be > 0, got {arm!r}")
        floor = require_finite("trail_floor_pct", self.trail_floor_pct)
        if not 0 <= floor <= arm:
            raise ValueError(
                f"trail_floor_pct must be in [0, trail_arm_pct={arm!r}] (a trail cannot lock more than the "
                f"gain that arms it), got {floor!r}"
            )
        for name, value in (("stop_loss_pct", stop), ("trail_pct", trail), ("trail_arm_pct", arm),
                            ("trail_floor_pct", floor)):
            object.__setattr__(self, name, value)


def _whole_qty(name: str, value, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(value, float) and (
        not math.isfinite(value) or not value.is_integer()
    ):
        raise ValueError(f"{name} must be a whole number of contracts or shares, got {value!r}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def _position_side(value) -> str:
    if isinstance(value, str) and value.strip().lower() in ("long", "short"):
        return value.strip().lower()
    try:
        return "long" if Side.parse(value) is Side.BUY else "short"
    except ValueError:
        raise ValueError(f"side: unknown value {value!r}; expected buy, sell, long or short") from None


class ProfitManager:
    """The take-profit ladder, trailing stop and stop loss for the open positions of one account."""

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
        self._dirty: set[str] = set()
        self._positions: dict[str, LadderPosition] = {}
        if store is not None:
            with store.connect() as con:
                self._positions = {p.symbol: p for p in load_ladders(con, self.account)}

    @classmethod
    def from_config(cls, config: LadderConfig, **kwargs) -> "ProfitManager":
        return cls(config.levels, config.stop_loss_pct, config.trail_arm_pct, config.trail_floor_pct,
                   config.trail_pct, **kwargs)

    def __repr__(self) -> str:
        return f"ProfitManager(account={self.account!r}, positions={sorted(self._positions)})"

    def __enter__(self) -> "ProfitManager":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    # ------------------------------------------------------------------ reading

    def position(self, symbol: str) -> LadderPosition:
        return replace(self._get(require_symbol("symbol", symbol)))

    def positions(self) -> dict[str, LadderPosition]:
        return {k: replace(v) for k, v in self._positions.items()}

    def locked_gain(self, symbol: str) -> float:
        """The gain the position is protected at: -stop_loss_pct, or the trail once armed."""
        return self._locked_gain(self._get(require_symbol("symbol", symbol)))

    def stop_price(self, symbol: str) -> float:
        """The price at which the stop (or the armed trail) would sell everything."""
        pos = self._get(require_symbol("symbol", symbol))
        return max(0.0, pos.entry_price * (1 + pos.sign * self._locked_gain(pos)))

    # ------------------------------------------------------------------ changes

    def add_position(self, symbol: str, qty: int, entry_price: float, side: Side | str = "buy") -> LadderPosition:
        """Put a new position under the ladder. ``side``: buy/long (calls, puts, equity longs) or sell/short."""
        symbol = require_symbol("symbol", symbol)
        qty = _whole_qty("qty", qty)
        entry_price = require_price("entry_price", entry_price)
        kind = _position_side(side)
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
        symbol = require_symbol("symbol", symbol)
        qty = _whole_qty("qty", qty, allow_zero=True)
        pos = replace(self._get(symbol))
        pos.remaining_qty = qty
        self._write(pos)

    def set_entry(self, symbol: str, qty: int, entry_price: float) -> None:
        """An entry filled further (a partial fill grew): adopt the held quantity and the
        average entry price, keeping the levels already fired and the trail."""
        symbol = require_symbol("symbol", symbol)
        pos = replace(self._get(symbol))
        pos.remaining_qty = _whole_qty("qty", qty, allow_zero=True)
        pos.initial_qty = max(pos.initial_qty, pos.remaining_qty)
        pos.entry_price = require_price("entry_price", entry_price)
        self._write(pos)

    def remove_position(self, symbol: str) -> None:
        self.sync_quantity(symbol, 0)

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
        pos = replace(self._get(symbol))
        cfg = self.config
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
        elif pos.best_price != self._positions[symbol].best_price:
            self._positions[symbol] = pos
            self._dirty.add(symbol)
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

    def exit_filled(self, symbol: str, levels, remaining: int) -> None:
        """An exit proposed for ``levels`` has filled and ``remaining`` is what is now held:
        mark the take-profit levels fired (STOP and TRAIL are not levels) and adopt the
        quantity; nothing remaining removes the position."""
        symbol = require_symbol("symbol", symbol)
        pos = replace(self._get(symbol))
        new = tuple(name for name in levels if name not in (STOP, TRAIL) and name not in pos.fired)
        pos.fired = pos.fired + new
        pos.remaining_qty = _whole_qty("remaining", remaining, allow_zero=True)
        self._write(pos)

    def flush(self) -> None:
        """Write batched best-price updates now."""
        if self.store is not None and self._dirty:
            now = self.clock()
            with self.store.transaction() as con:
                for symbol in sorted(self._dirty):
                    if symbol in self._positions:
                        save_ladder(con, self.account, self._positions[symbol], now, self.run_id)
        self._dirty.clear()
        self._timer.reset()

    close = flush

    # ------------------------------------------------------------------ internals

    def _get(self, symbol: str) -> LadderPosition:
        try:
            return self._positions[symbol]
        except KeyError:
            known = ", ".join(sorted(self._positions)) or "none"
            raise ValueError(f"no open position in {symbol} under the ladder of {self.account} (open: {known})") from None

    def _locked_gain(self, pos: LadderPosition) -> float:
        cfg = self.config
        if not pos.trail_armed:
            return -cfg.stop_loss_pct
        trail_price = pos.best_price * (1 - pos.sign * cfg.trail_pct)
        return max(cfg.trail_floor_pct, pos.gain(trail_price))

    def _write(self, pos: LadderPosition) -> None:
        """Persist (or delete, when nothing remains) first; adopt in memory only after."""
        if self.store is not None:
            with self.store.transaction() as con:
                if pos.remaining_qty == 0:
                    delete_ladder(con, self.account, pos.symbol)
                else:
                    save_ladder(con, self.account, pos, self.clock(), self.run_id)
        self._dirty.discard(pos.symbol)
        if pos.remaining_qty == 0:
            self._positions.pop(pos.symbol, None)
        else:
            self._positions[pos.symbol] = pos

    def _maybe_flush(self) -> None:
        if self.store is not None and self._timer.due():
            self.flush()
