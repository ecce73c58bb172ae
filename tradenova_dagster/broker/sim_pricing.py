"""SimBroker's market: its settings (``SimConfig``), what an update says, quotes and costs.

Equities are quoted ``max($0.01, equity_spread_bps × price)`` wide around the last
price. Options are quoted by ``market.chain.OptionMarketModel`` (``SimConfig.options``),
a ``market.model.MarketModel``: its premium (Black-Scholes on a fitted smile, from the
underlying's price, the VIX level and the time to expiry) and its spread model around
it — this module prices nothing of its own, and the RL environment quotes with the same
model, so the two charge the same for the same contract. Intrinsic value comes from
``rules.intrinsic_value``.

Costs: options pay ``SimConfig.option_commission_per_contract`` (default
``rules.OPTION_COMMISSION_PER_CONTRACT``) on every buy and sell, through
``market.model.option_commission`` (the env's commission function too); equities pay
``equity_commission_per_share`` and the SEC fee on the notional of sales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from tradenova_dagster.domain import (
    AssetClass,
    OptionContract,
    Quote,
    Side,
    asset_class_of,
    require_non_negative,
    require_price,
    require_quantity,
    require_symbol,
)
from tradenova_dagster.market.chain import DEFAULT_MODEL, OptionMarketModel
from tradenova_dagster.market.model import option_commission
from tradenova_dagster.rules import OPTION_COMMISSION_PER_CONTRACT, intrinsic_value

EPS = 1e-9
_OHLC = ("open", "high", "low", "close")


@dataclass(frozen=True)
class SimConfig:
    """Everything about the simulated market and account that a user may want to change."""

    initial_cash: float = 100_000.0
    option_commission_per_contract: float = OPTION_COMMISSION_PER_CONTRACT
    equity_commission_per_share: float = 0.0
    sec_fee_rate: float = 0.0000278  # of the notional of equity sales
    equity_spread_bps: float = 0.1  # quoted width, in basis points of price (min $0.01)
    equity_slippage_bps: float = 0.0  # market and stop orders, against you
    option_slippage: float = 0.0  # dollars per share, market and stop orders, against you
    equity_displayed_size: float = 10_000.0  # shares one update can fill
    market_buy_buffer: float = 0.04  # buying power reserved above the ask for a market buy
    default_vix: float = 19.0  # option quotes before any VIX level has been given
    symbols: tuple[str, ...] = ("SPY", "QQQ", "IWM", "DIA")  # equities (and underlyings) it lists
    options: OptionMarketModel = field(default_factory=lambda: DEFAULT_MODEL)

    def __post_init__(self) -> None:
        require_price("initial_cash", self.initial_cash)
        for name in ("option_commission_per_contract", "equity_commission_per_share", "sec_fee_rate",
                     "equity_spread_bps", "equity_slippage_bps", "option_slippage", "market_buy_buffer"):
            require_non_negative(name, getattr(self, name))
        require_quantity("equity_displayed_size", self.equity_displayed_size)
        require_price("default_vix", self.default_vix)
        object.__setattr__(self, "symbols", tuple(require_symbol("symbols", s) for s in self.symbols))


@dataclass(frozen=True)
class Prices:
    """One update's prices for a symbol: the open is where orders waiting for it fill."""

    open: float
    high: float
    low: float
    close: float

    @classmethod
    def flat(cls, price: float) -> "Prices":
        return cls(price, price, price, price)


@dataclass
class Mark:
    """The latest price (and VIX level, for option quotes) of an underlying."""

    ts: datetime
    price: float
    vix: float | None


def as_prices(symbol: str, bar: Any) -> Prices:
    """A Bar, a mapping or row with open/high/low/close, or a single price."""
    if isinstance(bar, (int, float)) and not isinstance(bar, bool):
        return Prices.flat(require_price(f"price of {symbol}", bar))
    if type(bar) is dict or isinstance(bar, Mapping):  # a dict first: the session's bars, every bar
        get = bar.get
    else:
        def get(key, default=None):
            return getattr(bar, key, default)
    raw = [get(k) for k in _OHLC]
    if any(v is None for v in raw):
        raise ValueError(f"bar for {symbol}: expected open/high/low/close or a price, got {bar!r}")
    o, h, low, c = [_price(k, symbol, v) for k, v in zip(_OHLC, raw)]
    if low > min(o, c) + EPS or h < max(o, c) - EPS:
        values = dict(zip(_OHLC, (o, h, low, c)))
        raise ValueError(f"bar for {symbol}: need low <= open,close <= high, got {values}")
    return Prices(o, h, low, c)


def _price(key: str, symbol: str, value: Any) -> float:
    """``require_price`` of one bar field, naming it only when it is refused (a finite
    positive float is returned as it is, as ``require_price`` returns it)."""
    if type(value) is float and 0.0 < value < math.inf:
        return value
    return require_price(f"{key} of {symbol}", value)


def round_price(price: float) -> float:
    return round(price, 6)


def is_option(symbol: str) -> bool:
    return asset_class_of(symbol) is AssetClass.OPTION


def underlying_of(symbol: str) -> str:
    return OptionContract.parse(symbol).underlying if is_option(symbol) else symbol


def fee(config: SimConfig, symbol: str, side: Side, qty: float, price: float) -> float:
    """What one fill of ``qty`` at ``price`` costs in commission and fees."""
    if is_option(symbol):
        return option_commission(config.option_commission_per_contract, qty)
    cost = config.equity_commission_per_share * qty
    if side is Side.SELL:
        cost += config.sec_fee_rate * qty * price
    return round(cost, 6)


class Pricer:
    """Quotes for equities and option contracts from the latest marks of their underlyings."""

    def __init__(self, config: SimConfig, marks: dict[str, Mark]):
        self.config = config
        self.marks = marks
        # Option quotes of the latest instant, by every input of the price: a bar asks for
        # the same contract's quote several times (the mark, the signal, the ladder, the
        # matching engine). Only one instant is kept, so it cannot grow or go stale.
        self._memo: dict[tuple, tuple[float, float]] = {}
        self._memo_at: tuple | None = None
        # The latest Quote of each symbol, handed out again while nothing in it changed
        # (a Quote is frozen; building one checks every field).
        self._quotes: dict[str, Quote] = {}

    def vix_for(self, underlying: str) -> float:
        mark = self.marks.get(underlying)
        return mark.vix if mark is not None and mark.vix is not None else self.config.default_vix

    def displayed_size(self, symbol: str) -> float:
        return self.config.options.displayed_size if is_option(symbol) else self.config.equity_displayed_size

    def slippage(self, symbol: str, price: float) -> float:
        """Market and stop orders fill this much worse than the quote (per share)."""
        if is_option(symbol):
            return self.config.option_slippage
        return self.config.equity_slippage_bps * 1e-4 * price

    def bid_ask_at(self, symbol: str, underlying_price: float, ts: datetime) -> tuple[float, float]:
        """The bid and ask of ``symbol`` when its underlying is at ``underlying_price`` at ``ts``."""
        if is_option(symbol):
            contract = OptionContract.parse(symbol)
            model = self.config.options
            vix = self.vix_for(contract.underlying)
            if self._memo_at is None or self._memo_at[0] != ts or self._memo_at[1] is not model:
                self._memo, self._memo_at = {}, (ts, model)
            key = (symbol, underlying_price, vix)
            quote = self._memo.get(key)
            if quote is None:
                mid = float(model.mid(contract, underlying_price, ts, vix))
                quote = self._memo[key] = model.bid_ask(mid, intrinsic_value(contract, underlying_price))
            return quote
        half = max(0.01, self.config.equity_spread_bps * 1e-4 * underlying_price) / 2
        return round_price(max(underlying_price - half, 0.0)), round_price(underlying_price + half)

    def quote(self, symbol: str, now: datetime) -> Quote | None:
        """The quote shown at ``now`` (None before any price of the underlying)."""
        mark = self.marks.get(underlying_of(symbol))
        if mark is None:
            return None
        at = max(now, mark.ts)
        bid, ask = self.bid_ask_at(symbol, mark.price, at)
        size = self.displayed_size(symbol)
        last = self._quotes.get(symbol)
        if (last is not None and last.timestamp == at and last.timestamp.tzinfo is at.tzinfo and last.bid == bid
                and last.ask == ask and last.bid_size == size):
            return last
        quote = self._quotes[symbol] = Quote(symbol, at, bid, ask, size, size)
        return quote

    def mark_price(self, symbol: str, at: datetime) -> float | None:
        """What a position is worth a share: the last price, or an option's quoted mid.

        The quoted mid (not the model's raw premium) marks options, as a broker marks
        them: it is never below half a tick, so a nearly worthless contract still has
        the positive price a Position carries, and equity agrees with it."""
        mark = self.marks.get(underlying_of(symbol))
        if mark is None:
            return None
        if is_option(symbol):
            bid, ask = self.bid_ask_at(symbol, mark.price, max(at, mark.ts))
            return (bid + ask) / 2
        return mark.price
