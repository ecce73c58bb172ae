"""The trading rules that more than one part of TradeNova applies, each defined once.

The session, the simulated broker, the RL environment, the risk framework and the
schedules import these; none keeps a copy (DESIGN.md §5, "one owner per fact"). The
ladder's numbers live with the ladder (``risk.ladder_config``: ``DEFAULT_LEVELS`` / ``LadderConfig``)
and the risk limits with the risk manager (``risk.manager.RiskLimits``); the flatten
time with the timetable (``session.timetable.FLATTEN_BEFORE_CLOSE``).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import numpy as np

from tradenova_dagster.domain import Decision, OptionContract, OptionType

# Action in [-1, 1]: below -DECISION_THRESHOLD BUY PUT, above it BUY CALL, else FLAT.
# (``Decision.from_action`` reads its default from here; domain imports it lazily, since
# this module imports domain.)
DECISION_THRESHOLD = 0.3

# Simulated cost per option contract per fill (Alpaca charges only regulatory fees;
# this errs on the expensive side). Charged once per fill, by the broker that fills.
OPTION_COMMISSION_PER_CONTRACT = 0.65

# The contract TradeNova trades: ATM on SPY's $1 strike grid, expiring this many
# sessions after the trading day.
STRIKE_STEP = 1.0
EXPIRY_SESSIONS = 2


def direction_for(action: float, threshold: float = DECISION_THRESHOLD) -> int:
    """The decision as a direction: +1 CALL (action > threshold), -1 PUT (< -threshold),
    0 FLAT. The one comparison behind ``Decision.from_action`` and the RL env's hot path
    (plain floats, no validation: callers check that ``action`` is finite)."""
    return 1 if action > threshold else (-1 if action < -threshold else 0)


def decision_for(action: float, threshold: float = DECISION_THRESHOLD) -> Decision:
    return Decision.from_action(action, threshold)


def atm_strike(spot: float, step: float = STRIKE_STEP) -> float:
    """The strike nearest ``spot`` on a ``step`` grid (halves round to even, as ``round``)."""
    return round(float(spot) / step) * step


def intrinsic_value(contract: OptionContract, spot: float) -> float:
    """Per-share value of an option at ``spot`` (its value at expiry)."""
    if contract.option_type is OptionType.CALL:
        return max(float(spot) - contract.strike, 0.0)
    return max(contract.strike - float(spot), 0.0)


def intrinsic(spot, strike, is_call):
    """``intrinsic_value`` over numpy arrays (spot, strike, is_call broadcast together):
    ``max(spot - strike, 0)`` for a call, ``max(strike - spot, 0)`` for a put. For the
    pricing grids (Black-Scholes at expiry, a chain's spreads); a test checks that it
    agrees with ``intrinsic_value``."""
    return np.where(is_call, np.maximum(spot - strike, 0.0), np.maximum(strike - spot, 0.0))


@lru_cache(maxsize=4096)
def expiry_for(day: date, expiry_sessions: int = EXPIRY_SESSIONS) -> date:
    """The expiry of the contract bought on ``day``: ``expiry_sessions`` sessions later
    (cached: a replayed day asks on every bar that wants an entry, and the calendar is fixed)."""
    from tradenova_dagster.market import calendar

    expiry = day
    for _ in range(expiry_sessions):
        expiry = calendar.next_session(expiry)
    return expiry


def select_contract(underlying: str, day: date, spot: float, direction: int,
                    expiry_sessions: int = EXPIRY_SESSIONS, step: float = STRIKE_STEP) -> OptionContract:
    """The contract a CALL (direction > 0) or PUT (< 0) decision buys on ``day``."""
    kind = OptionType.CALL if direction > 0 else OptionType.PUT
    return _contract(underlying, expiry_for(day, expiry_sessions), kind, atm_strike(spot, step))


@lru_cache(maxsize=4096)
def _contract(underlying: str, expiry: date, kind: OptionType, strike: float) -> OptionContract:
    """The validated contract (immutable, so one serves every caller): a replayed day asks
    on every bar that wants an entry, nearly always for one of a few strikes, and building
    an ``OptionContract`` validates every field."""
    return OptionContract(underlying, expiry, kind, strike)
