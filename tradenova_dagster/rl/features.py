"""The observation features, shared by TradingEnv (a whole day at once) and SignalModel
(bar by bar), so that what the agent was trained on and what it sees live cannot drift.

Every feature at bar ``t`` is a function of bars ``0..t`` of the session only (no
look-ahead, DESIGN.md §5): :func:`market_features` computed on the first ``t + 1`` bars
gives exactly row ``t`` of the same function computed on the whole day (a test checks
this bit for bit). The incremental :class:`FeatureBuilder` (the live session, one bar at a
time) does the same float64 operations in the same order on scalars, so its row is that
row bit for bit too (tests/test_rl_env.py and tests/test_signal_speed.py check it).

Features (all float32, clipped to ``±OBS_CLIP``):

- ``ret_0 .. ret_{W-1}``: the last ``W`` one-minute log returns (newest first), in units
  of the minute volatility implied by VIX, so a 1-sigma minute is 1.0 on calm and on
  wild days alike (the first bar's return is measured from its own open);
- ``realized_vol``: root-mean-square of the last 30 such returns (realised / implied);
- ``day_move``: the log move since the session's first open, as a z-score for the
  minutes elapsed;
- ``time_elapsed`` / ``time_left``: the fraction of the session done, and the minutes
  left over a full 390-minute day (early closes show less time left);
- ``vix`` / ``iv_rank``: the day's market context (previous session's VIX / 100, and its
  IV rank / 100), known at the open;
- ``position``, ``unrealized_pnl``, ``time_in_position``: the agent's own state
  (-1 put, 0 flat, +1 call; P&L as a fraction of the premium paid; hours held).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.options import MINUTES_PER_YEAR

RETURN_WINDOW = 10
RV_WINDOW = 30
OBS_CLIP = 10.0
FULL_DAY_MINUTES = 390

MARKET_FEATURE_NAMES = tuple(
    [f"ret_{k}" for k in range(RETURN_WINDOW)]
    + ["realized_vol", "day_move", "time_elapsed", "time_left", "vix", "iv_rank"]
)
POSITION_FEATURE_NAMES = ("position", "unrealized_pnl", "time_in_position")
FEATURE_NAMES = MARKET_FEATURE_NAMES + POSITION_FEATURE_NAMES
N_MARKET_FEATURES = len(MARKET_FEATURE_NAMES)
N_FEATURES = len(FEATURE_NAMES)


def minute_sigma(vix: float) -> float:
    """The one-minute log-return volatility implied by a VIX level."""
    return vix / 100.0 / math.sqrt(MINUTES_PER_YEAR)


@dataclass(frozen=True)
class DayContext:
    """What is known about a session at its open: previous VIX close and its IV rank."""

    vix: float
    iv_rank: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.vix) and self.vix > 0):
            raise ValueError(f"vix must be a positive number, got {self.vix!r}")
        if not (math.isfinite(self.iv_rank) and 0.0 <= self.iv_rank <= 100.0):
            raise ValueError(f"iv_rank must be in [0, 100], got {self.iv_rank!r}")


@dataclass(frozen=True)
class PositionState:
    """The agent's own position, as the env tracks it and as the session reports it.

    ``direction``: -1 holding a put, 0 flat, +1 holding a call; ``unrealized_pnl``: the
    position's mark-to-mid P&L as a fraction of the premium paid (0.25 = +25%);
    ``bars_held``: bars since the entry fill.
    """

    direction: int = 0
    unrealized_pnl: float = 0.0
    bars_held: int = 0

    def __post_init__(self) -> None:
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"direction must be -1, 0 or 1, got {self.direction!r}")
        if not math.isfinite(self.unrealized_pnl):
            raise ValueError(f"unrealized_pnl must be finite, got {self.unrealized_pnl!r}")
        if self.bars_held < 0:
            raise ValueError(f"bars_held must be >= 0, got {self.bars_held!r}")


FLAT = PositionState()


def _clip(value: float) -> float:
    """``np.clip(value, -OBS_CLIP, OBS_CLIP)`` on one float (a NaN stays NaN, as there)."""
    if -OBS_CLIP <= value <= OBS_CLIP or value != value:
        return value
    return OBS_CLIP if value > 0 else -OBS_CLIP


def position_features(direction: int, unrealized_pnl: float, bars_held: int) -> tuple[float, float, float]:
    """The three position features (the env writes them straight into its obs buffer)."""
    return (
        float(direction),
        max(-OBS_CLIP, min(OBS_CLIP, unrealized_pnl)),
        min(OBS_CLIP, bars_held / 60.0),
    )


def market_features(
    first_open: float,
    closes: np.ndarray,
    minutes: np.ndarray,
    session_minutes: int,
    context: DayContext,
) -> np.ndarray:
    """Market features for bars ``0..n-1`` of one session, shape ``(n, N_MARKET_FEATURES)``.

    ``closes``: the bar closes; ``minutes``: each bar's start in minutes after the open;
    ``session_minutes``: the session length (390, or 210 on an early close). Row ``t``
    depends on ``closes[:t+1]`` and ``minutes[t]`` only.
    """
    closes = np.asarray(closes, dtype=np.float64)
    minutes = np.asarray(minutes, dtype=np.float64)
    n = len(closes)
    if n == 0:
        raise ValueError("closes: need at least one bar, got none")
    if not (np.all(np.isfinite(closes)) and np.all(closes > 0) and first_open > 0):
        raise ValueError("closes: every price must be finite and > 0")
    sigma = minute_sigma(context.vix)
    log_closes = np.log(closes)
    z = np.empty(n)
    z[0] = log_closes[0] - math.log(first_open)
    z[1:] = np.diff(log_closes)
    z /= sigma

    out = np.zeros((n, N_MARKET_FEATURES), dtype=np.float64)
    padded = np.concatenate([np.zeros(RETURN_WINDOW - 1), z])
    windows = np.lib.stride_tricks.sliding_window_view(padded, RETURN_WINDOW)  # row t: z[t-W+1..t]
    out[:, :RETURN_WINDOW] = windows[:, ::-1]

    # The window sums are added oldest first, one term at a time: a fixed order that
    # FeatureBuilder repeats on scalars (numpy's pairwise ``sum`` has its own order).
    squares = np.concatenate([np.zeros(RV_WINDOW - 1), z * z])
    window_sums = np.zeros(n)
    for k in range(RV_WINDOW):
        window_sums += squares[k : k + n]  # row t: z[t-W+1+k]², zero before the first bar
    counts = np.minimum(np.arange(1, n + 1), RV_WINDOW)
    out[:, RETURN_WINDOW] = np.sqrt(window_sums / counts)

    elapsed = minutes + 1.0  # bar t is known at its close, one minute after its start
    out[:, RETURN_WINDOW + 1] = (log_closes - math.log(first_open)) / (sigma * np.sqrt(elapsed))
    out[:, RETURN_WINDOW + 2] = elapsed / session_minutes
    out[:, RETURN_WINDOW + 3] = (session_minutes - elapsed) / FULL_DAY_MINUTES
    out[:, RETURN_WINDOW + 4] = context.vix / 100.0
    out[:, RETURN_WINDOW + 5] = context.iv_rank / 100.0
    np.clip(out, -OBS_CLIP, OBS_CLIP, out=out)
    return out.astype(np.float32)


_NANOS_2000 = 946_684_800 * 10**9  # 2000-01-01 in UTC epoch nanoseconds: no bar is older


@dataclass
class DayData:
    """One session of bars for one symbol, as numpy arrays, with its market context.

    ``timestamps`` are UTC nanoseconds (bar starts); ``minutes`` are bar starts in
    minutes after the session open, from the calendar (so time features are right even
    when a data file has a gap).
    """

    symbol: str
    day: date
    timestamps: np.ndarray
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    minutes: np.ndarray
    session_minutes: int
    context: DayContext
    _features: np.ndarray | None = field(default=None, repr=False, compare=False)
    # Option-price grids per EnvConfig, filled by the env and shared by every env copy.
    pricing_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A dataset saved before bars in microseconds were converted holds a clock 1000x
        # too small, on which no option ever decays: refuse it rather than train on it.
        if len(self.timestamps) and int(self.timestamps[0]) < _NANOS_2000:
            raise ValueError(f"timestamps of {self.symbol} on {self.day}: {int(self.timestamps[0])} is not UTC "
                             "epoch nanoseconds (microseconds?); rebuild the dataset (materialize training_dataset)")

    @classmethod
    def from_bars(cls, symbol: str, day, bars: pd.DataFrame, context: DayContext) -> "DayData":
        """Build from a bar frame (``timestamp`` UTC, ``open/high/low/close``) of one session."""
        day = calendar.require_trading_day(day)
        if bars is None or len(bars) == 0:
            raise ValueError(f"bars: no bars for {symbol} on {day}")
        missing = {"timestamp", "open", "high", "low", "close"} - set(bars.columns)
        if missing:
            raise ValueError(f"bars: missing columns {sorted(missing)} for {symbol} on {day}")
        open_utc, _ = calendar.session_open_close(day)
        ts = pd.to_datetime(bars["timestamp"], utc=True)
        minutes = ((ts - open_utc).dt.total_seconds() / 60.0).to_numpy()
        session = calendar.session_minutes(day)
        inside = (minutes >= 0) & (minutes < session)
        if not inside.all():
            raise ValueError(
                f"bars: {int((~inside).sum())} bars of {symbol} on {day} lie outside the session "
                f"(first {ts.iloc[0]}, last {ts.iloc[-1]})"
            )
        return cls(
            symbol=symbol.upper(),
            day=day,
            timestamps=ts.dt.as_unit("ns").astype("int64").to_numpy(),  # bars from files come in microseconds
            opens=bars["open"].to_numpy(dtype=np.float64),
            highs=bars["high"].to_numpy(dtype=np.float64),
            lows=bars["low"].to_numpy(dtype=np.float64),
            closes=bars["close"].to_numpy(dtype=np.float64),
            minutes=minutes.astype(np.float64),
            session_minutes=session,
            context=context,
        )

    def __len__(self) -> int:
        return len(self.closes)

    @property
    def features(self) -> np.ndarray:
        """Market features of every bar (computed once, then cached)."""
        if self._features is None:
            self._features = market_features(
                self.opens[0], self.closes, self.minutes, self.session_minutes, self.context
            )
        return self._features


class FeatureBuilder:
    """Builds one observation per bar as bars arrive, for the live/replay session.

    Row ``t`` equals row ``t`` of :func:`market_features` on the whole day, bit for bit:
    the same float64 operations in the same order, on scalars kept from bar to bar (the
    last ``RETURN_WINDOW`` returns, the last ``RV_WINDOW`` squares, the previous log
    close), so a bar costs a few microseconds whatever the hour (recomputing the feature
    function on the recent bars each bar cost ~80 µs). Two details keep the bits equal:
    the log of a close is numpy's (``np.log``, as the whole-day function takes it; libm's
    ``math.log`` differs in the last bit now and then) and the volatility window is summed
    oldest first, as ``market_features`` sums it. ``tests/test_rl_env.py`` checks every
    row of a day against the env's features, ``tests/test_signal_speed.py`` random days.

    The row is built as Python floats and becomes a float32 array once (``add_bar``, or
    ``observation`` with the position appended: what the SignalModel asks for each bar).
    Clipping each float before the one float32 rounding gives the bits that clipping the
    float64 row and then rounding gives (±``OBS_CLIP`` are float32 numbers and rounding
    is monotonic), and each return is clipped once, when it arrives, not on every bar
    it stays in the window.
    """

    def __init__(self, day, context: DayContext):
        self.day = calendar.require_trading_day(day)
        self.context = context
        self.session_minutes = calendar.session_minutes(self.day)
        self._open_utc = calendar.session_open_close(self.day)[0]
        self._open_ns = int(self._open_utc.value)
        self._open_datetime = self._open_utc.to_pydatetime()
        self._sigma = minute_sigma(context.vix)
        self._count = 0
        self._log_first_open = 0.0
        self._last_log_close = 0.0
        self._last_minute = -1.0
        # Clipped, newest first; zeros before the first bars, as market_features pads the window.
        self._returns: deque[float] = deque([0.0] * RETURN_WINDOW, maxlen=RETURN_WINDOW)
        self._squares: deque[float] = deque(maxlen=RV_WINDOW)  # oldest first
        self._context_row = (_clip(context.vix / 100.0), _clip(context.iv_rank / 100.0))

    def __len__(self) -> int:
        return self._count

    def _minute(self, timestamp) -> float:
        """Minutes from the session open to ``timestamp``, as ``DayData.from_bars`` has them:
        UTC nanoseconds / 1e9 / 60 (a pandas Timestamp or a datetime: no conversion per bar)."""
        if isinstance(timestamp, pd.Timestamp):
            if timestamp.tzinfo is None:
                raise ValueError(f"timestamp must be timezone-aware, got {timestamp!r}")
            nanos = timestamp.value - self._open_ns
        elif isinstance(timestamp, datetime):
            if timestamp.utcoffset() is None:
                raise ValueError(f"timestamp must be timezone-aware, got {timestamp!r}")
            delta = timestamp - self._open_datetime
            nanos = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000
        else:  # a string or numpy datetime: let pandas read it
            return self._minute(pd.Timestamp(timestamp))
        return nanos / 1e9 / 60.0

    def add_bar(self, timestamp, open_: float, close: float) -> np.ndarray:
        """Append a bar (timestamp = its start) and return its market features.

        A refused bar (naive timestamp, outside the session, not after the previous bar,
        a price that is not finite and > 0) raises ValueError and leaves the state as it was.
        """
        return np.array(self._add(timestamp, open_, close), dtype=np.float32)

    def observation(self, timestamp, open_: float, close: float, position: PositionState) -> np.ndarray:
        """``add_bar``, then the full observation with ``position`` (what :func:`observation`
        builds from the row, bit for bit), in one float32 array."""
        row = self._add(timestamp, open_, close)
        row += position_features(position.direction, position.unrealized_pnl, position.bars_held)
        return np.array(row, dtype=np.float32)

    def _add(self, timestamp, open_: float, close: float) -> list[float]:
        """``add_bar``'s work: the bar's market features as clipped Python floats."""
        minute = self._minute(timestamp)
        if not 0 <= minute < self.session_minutes:
            raise ValueError(f"timestamp {timestamp} is outside the session of {self.day}")
        if minute <= self._last_minute:
            raise ValueError(f"timestamp {timestamp} is not after the previous bar's")
        close = float(close)
        if not (math.isfinite(close) and close > 0):
            raise ValueError(f"close: every price must be finite and > 0, got {close!r}")
        if self._count == 0:
            open_ = float(open_)
            if not (math.isfinite(open_) and open_ > 0):
                raise ValueError(f"open: every price must be finite and > 0, got {open_!r}")
            self._log_first_open = self._last_log_close = math.log(open_)  # as market_features
        log_close = float(np.log(close))
        z = (log_close - self._last_log_close) / self._sigma
        self._count += 1
        self._last_minute = minute
        self._last_log_close = log_close
        self._returns.appendleft(_clip(z))
        self._squares.append(z * z)

        window_sum = 0.0
        for square in self._squares:  # oldest first, as market_features adds them
            window_sum += square
        elapsed = minute + 1.0
        row = list(self._returns)
        row += (
            _clip(math.sqrt(window_sum / min(self._count, RV_WINDOW))),
            _clip((log_close - self._log_first_open) / (self._sigma * math.sqrt(elapsed))),
            _clip(elapsed / self.session_minutes),
            _clip((self.session_minutes - elapsed) / FULL_DAY_MINUTES),
        )
        row += self._context_row
        return row


def observation(market_row: np.ndarray, position: PositionState) -> np.ndarray:
    """A full observation: a market-feature row plus the position features."""
    obs = np.empty(N_FEATURES, dtype=np.float32)
    obs[:N_MARKET_FEATURES] = market_row
    obs[N_MARKET_FEATURES:] = position_features(position.direction, position.unrealized_pnl, position.bars_held)
    return obs
