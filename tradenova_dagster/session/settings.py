"""What a session is asked to do (``SessionSettings``), what it watches (``InFlight``)
and what it reports (``SessionReport``): the session loop's inputs and outputs, kept apart
from the loop (``engine.py``) so that each stays small."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from tradenova_dagster import rules
from tradenova_dagster.domain import Side


@dataclass(frozen=True)
class SessionSettings:
    """What to trade and how. Defaults mirror the RL environment's contract model."""

    symbol: str = "SPY"
    contracts: int = 1
    expiry_days: int = rules.EXPIRY_SESSIONS
    strike_step: float = rules.STRIKE_STEP
    entry_timeout_bars: int = 3  # an entry order still open after this many bars is canceled
    exit_retries: int = 3  # a failed exit is tried again at most this many times ...
    exit_backoff_bars: int = 2  # ... this many bars apart, then an alert
    persist_every_bar: bool = False  # live, paper and paced replays: commit each bar; else once at the end
    poll_seconds: float = 5.0  # live: how often the feed asks for new bars
    stale_after_minutes: int = 3  # live: no new bar for this long -> a stale feed (exits only, an alert)

    def __post_init__(self) -> None:
        for name in ("contracts", "entry_timeout_bars", "exit_backoff_bars"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("expiry_days", "exit_retries"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if not (math.isfinite(self.strike_step) and self.strike_step > 0):
            raise ValueError(f"strike_step must be > 0, got {self.strike_step!r}")


@dataclass
class InFlight:
    """An order the session sent (or found open in the ledger) and still watches."""

    client_order_id: str
    broker_order_id: str | None
    symbol: str
    side: Side
    intent: str
    reason: str
    levels: tuple[str, ...] = ()  # the ladder levels a take-profit exit is for
    bars: int = 0


@dataclass
class SessionReport:
    day: date
    account: str
    bars: int = 0
    decisions: Counter = field(default_factory=Counter)
    entries: int = 0
    exits: int = 0
    refusals: int = 0
    trades: int = 0
    realized_pnl: float = 0.0
    start_equity: float | None = None
    end_equity: float | None = None
    open_positions: int = 0
    resumed_after: pd.Timestamp | None = None
    stopped: str = ""
    orders: list[str] = field(default_factory=list)

    @property
    def flat(self) -> bool:
        return self.open_positions == 0

    def summary(self) -> str:
        if self.start_equity is None or self.end_equity is None:
            return f"session {self.day} [{self.account}]: no bar traded; {self.stopped}"
        pnl = self.end_equity - self.start_equity
        return (
            f"session {self.day} [{self.account}]: {self.bars} bars, signals "
            f"{dict(self.decisions) or '{}'}, {self.entries} entries, {self.exits} exits, "
            f"{self.refusals} refused, {self.trades} trades, realised {self.realized_pnl:+.2f}, "
            f"equity {self.start_equity:,.2f} -> {self.end_equity:,.2f} ({pnl:+.2f}), "
            f"{'flat' if self.flat else f'{self.open_positions} position(s) open'}; {self.stopped}"
        )
