"""Value types shared by every part of TradeNova.

They validate on construction, so that a NaN price or a negative quantity is refused
where it enters the system (with the field and the value in the message) instead of
surfacing later as a wrong P&L. They are frozen: a fill or a bar does not change.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from numbers import Real

OPTION_MULTIPLIER = 100  # one US equity option contract is on 100 shares


class Side(str, enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @classmethod
    def parse(cls, value: "Side | str", field_name: str = "side") -> "Side":
        return _parse_enum(cls, value, field_name)

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY


class OptionType(str, enum.Enum):
    CALL = "call"
    PUT = "put"

    @classmethod
    def parse(cls, value: "OptionType | str", field_name: str = "option_type") -> "OptionType":
        if isinstance(value, str) and value.upper() in ("C", "P"):
            return cls.CALL if value.upper() == "C" else cls.PUT
        return _parse_enum(cls, value, field_name)


class OrderType(str, enum.Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"

    @classmethod
    def parse(cls, value: "OrderType | str", field_name: str = "order_type") -> "OrderType":
        return _parse_enum(cls, value, field_name)


class TimeInForce(str, enum.Enum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"

    @classmethod
    def parse(cls, value: "TimeInForce | str", field_name: str = "time_in_force") -> "TimeInForce":
        return _parse_enum(cls, value, field_name)


class OrderClass(str, enum.Enum):
    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"

    @classmethod
    def parse(cls, value: "OrderClass | str", field_name: str = "order_class") -> "OrderClass":
        if value in ("", None):
            return cls.SIMPLE
        return _parse_enum(cls, value, field_name)


class OrderStatus(str, enum.Enum):
    """Alpaca's order states (the subset a trading system acts on; others map to NEW)."""

    NEW = "new"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    REPLACED = "replaced"
    HELD = "held"  # a bracket child waiting for its entry to fill
    PENDING_CANCEL = "pending_cancel"

    @property
    def is_open(self) -> bool:
        return self in _OPEN_STATUSES


_OPEN_STATUSES = {
    OrderStatus.NEW,
    OrderStatus.ACCEPTED,
    OrderStatus.PENDING_NEW,
    OrderStatus.PARTIALLY_FILLED,
    OrderStatus.HELD,
    OrderStatus.PENDING_CANCEL,
}


class AssetClass(str, enum.Enum):
    EQUITY = "us_equity"
    OPTION = "us_option"


class Decision(str, enum.Enum):
    """What the RL signal asks for: the seed's three actions."""

    BUY_PUT = "BUY_PUT"
    FLAT = "FLAT"
    BUY_CALL = "BUY_CALL"

    @classmethod
    def from_action(cls, action: float, threshold: float | None = None) -> "Decision":
        """Map a continuous action in [-1, 1]: < -threshold PUT, > threshold CALL, else FLAT.

        The rule and its default threshold (0.3) are ``rules.direction_for`` and
        ``rules.DECISION_THRESHOLD`` (imported here, not at the top: rules imports domain).
        """
        from tradenova_dagster.rules import DECISION_THRESHOLD, direction_for

        action = require_finite("action", action)
        return cls.from_direction(direction_for(action, DECISION_THRESHOLD if threshold is None else threshold))

    @classmethod
    def from_direction(cls, direction: int) -> "Decision":
        """+1 BUY_CALL, -1 BUY_PUT, 0 FLAT (the sign of ``rules.direction_for``)."""
        return cls.BUY_CALL if direction > 0 else (cls.BUY_PUT if direction < 0 else cls.FLAT)


# --------------------------------------------------------------------------- validation


def _parse_enum(cls, value, field_name: str):
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        for member in cls:
            if member.value == lowered or member.name.lower() == lowered:
                return member
    allowed = ", ".join(m.value for m in cls)
    raise ValueError(f"{field_name}: unknown value {value!r}; expected one of {allowed}")


def require_finite(field_name: str, value) -> float:
    if type(value) is float and math.isfinite(value):  # the common case, without the ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{field_name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{field_name} must be a finite number, got {value!r}")
    return value


def require_price(field_name: str, value) -> float:
    """A price: finite and strictly positive."""
    value = require_finite(field_name, value)
    if value <= 0:
        raise ValueError(f"{field_name} must be > 0, got {value!r}")
    return value


def require_non_negative(field_name: str, value) -> float:
    value = require_finite(field_name, value)
    if value < 0:
        raise ValueError(f"{field_name} must be >= 0, got {value!r}")
    return value


def require_quantity(field_name: str, value) -> float:
    """An order or fill quantity: finite and strictly positive (direction lives in the side)."""
    value = require_finite(field_name, value)
    if value <= 0:
        raise ValueError(f"{field_name} must be > 0, got {value!r}")
    return value


def require_symbol(field_name: str, value) -> str:
    if type(value) is str:
        return _require_symbol_text(field_name, value)
    return _require_symbol(field_name, value)


@lru_cache(maxsize=4096)
def _require_symbol_text(field_name: str, value: str) -> str:
    """``_require_symbol`` for a str, cached: a session checks the same few symbols on every
    bar (a bad one raises, and an exception is never cached)."""
    return _require_symbol(field_name, value)


def _require_symbol(field_name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field_name} must be a non-empty symbol, got {value!r}")
    if not re.fullmatch(r"[A-Z0-9.\-/ ]+", value.strip().upper()):
        raise ValueError(f"{field_name}: {value!r} is not a valid symbol")
    return value.strip().upper()


def position_side(value, field_name: str = "side") -> str:
    """'long' or 'short': the direction of a position (or a round trip's entry), from
    long/short or the entry's buy/sell."""
    if isinstance(value, str) and value.strip().lower() in ("long", "short"):
        return value.strip().lower()
    try:
        return "long" if Side.parse(value) is Side.BUY else "short"
    except ValueError:
        raise ValueError(f"{field_name}: unknown value {value!r}; expected long, short, buy or sell") from None


def require_aware(field_name: str, value) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{field_name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field_name} must be timezone-aware, got naive {value!r}")
    return value


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- market data


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar, stamped at its start time (timezone-aware)."""

    symbol: str
    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        require_aware("timestamp", self.timestamp)
        o, h, low, c, v = self.open, self.high, self.low, self.close, self.volume
        # The common case (a session builds a Bar every bar) in one chain of comparisons:
        # plain floats with 0 < low <= open, close <= high < inf and 0 <= volume < inf are
        # exactly what the checks below accept unchanged (NaN fails every comparison).
        # Anything else (another number type, a bad value) goes through them.
        if (type(o) is float and type(h) is float and type(low) is float and type(c) is float and type(v) is float
                and 0.0 < low <= o <= h < math.inf and low <= c <= h and 0.0 <= v < math.inf):
            return
        for name in ("open", "high", "low", "close"):
            object.__setattr__(self, name, require_price(name, getattr(self, name)))
        object.__setattr__(self, "volume", require_non_negative("volume", self.volume))
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError(
                f"bar for {self.symbol} at {self.timestamp}: need low <= open,close <= high, got "
                f"open={self.open} high={self.high} low={self.low} close={self.close}"
            )


@dataclass(frozen=True)
class Quote:
    symbol: str
    timestamp: datetime
    bid: float
    ask: float
    bid_size: float = 0.0
    ask_size: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        require_aware("timestamp", self.timestamp)
        # A zero bid is real (deep out-of-the-money options); a zero ask is not a market.
        object.__setattr__(self, "bid", require_non_negative("bid", self.bid))
        object.__setattr__(self, "ask", require_price("ask", self.ask))
        object.__setattr__(self, "bid_size", require_non_negative("bid_size", self.bid_size))
        object.__setattr__(self, "ask_size", require_non_negative("ask_size", self.ask_size))
        if self.bid > self.ask:
            raise ValueError(f"quote for {self.symbol}: bid {self.bid} is above ask {self.ask}")

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> float:
        return self.ask - self.bid

    @property
    def spread_pct(self) -> float:
        """Quoted spread as a fraction of the mid (the risk rule's 'spread > 5% of mid')."""
        return self.spread / self.mid


_OCC_RE = re.compile(r"^([A-Z][A-Z0-9.]{0,5})(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")


@dataclass(frozen=True)
class OptionContract:
    """A listed US equity option, identified by its OCC symbol (e.g. ``SPY260116C00600000``)."""

    underlying: str
    expiry: date
    option_type: OptionType
    strike: float
    multiplier: int = OPTION_MULTIPLIER

    def __post_init__(self) -> None:
        object.__setattr__(self, "underlying", require_symbol("underlying", self.underlying))
        if isinstance(self.expiry, datetime) or not isinstance(self.expiry, date):
            raise ValueError(f"expiry must be a date, got {self.expiry!r}")
        object.__setattr__(self, "option_type", OptionType.parse(self.option_type))
        strike = require_price("strike", self.strike)
        if abs(strike * 1000 - round(strike * 1000)) > 1e-6:
            raise ValueError(f"strike must have at most 3 decimals (OCC format), got {strike!r}")
        object.__setattr__(self, "strike", strike)
        if len(self.underlying) > 6:
            raise ValueError(f"underlying {self.underlying!r} is longer than OCC's 6 characters")

    @property
    def symbol(self) -> str:
        """OCC symbol: root, YYMMDD, C/P, strike × 1000 in 8 digits."""
        kind = "C" if self.option_type is OptionType.CALL else "P"
        return f"{self.underlying}{self.expiry:%y%m%d}{kind}{round(self.strike * 1000):08d}"

    @classmethod
    def parse(cls, symbol: str) -> "OptionContract":
        if cls is OptionContract and type(symbol) is str:
            return _parse_occ(symbol)  # immutable, so one parse per symbol serves every caller
        return cls._parse(symbol)

    @classmethod
    def _parse(cls, symbol: str) -> "OptionContract":
        if not isinstance(symbol, str):
            raise ValueError(f"option symbol must be a string, got {symbol!r}")
        match = _OCC_RE.match(symbol.strip().upper().replace(" ", ""))
        if not match:
            raise ValueError(
                f"option symbol {symbol!r} is not an OCC symbol (expected e.g. SPY260116C00600000)"
            )
        root, yy, mm, dd, kind, strike = match.groups()
        try:
            expiry = date(2000 + int(yy), int(mm), int(dd))
        except ValueError as exc:
            raise ValueError(f"option symbol {symbol!r} has an invalid expiry: {exc}") from None
        return cls(root, expiry, OptionType.parse(kind), int(strike) / 1000)

    @staticmethod
    def is_option_symbol(symbol: str) -> bool:
        return isinstance(symbol, str) and _is_occ(symbol)


@lru_cache(maxsize=4096)
def _parse_occ(symbol: str) -> OptionContract:
    return OptionContract._parse(symbol)


@lru_cache(maxsize=4096)
def _is_occ(symbol: str) -> bool:
    return bool(_OCC_RE.match(symbol.strip().upper()))


def asset_class_of(symbol: str) -> AssetClass:
    return AssetClass.OPTION if OptionContract.is_option_symbol(symbol) else AssetClass.EQUITY


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class Order:
    """An order as TradeNova asks for it and as the broker reports it back.

    ``client_order_id`` is deterministic (derived from what the order is for), so that a
    retry after an unknown outcome finds the first attempt instead of creating a second
    order (DESIGN.md §5).
    """

    symbol: str
    qty: float
    side: Side
    client_order_id: str
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: float | None = None
    stop_price: float | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_price: float | None = None
    stop_loss_price: float | None = None
    stop_loss_limit_price: float | None = None
    id: str | None = None
    status: OrderStatus = OrderStatus.NEW
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_id: str | None = None
    legs: tuple["Order", ...] = field(default=())
    filled_at: datetime | None = None  # when it became completely filled (Alpaca's filled_at)

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        object.__setattr__(self, "qty", require_quantity("qty", self.qty))
        object.__setattr__(self, "side", Side.parse(self.side))
        object.__setattr__(self, "order_type", OrderType.parse(self.order_type))
        object.__setattr__(self, "time_in_force", TimeInForce.parse(self.time_in_force))
        object.__setattr__(self, "order_class", OrderClass.parse(self.order_class))
        if isinstance(self.status, str) and not isinstance(self.status, OrderStatus):
            object.__setattr__(self, "status", _parse_enum(OrderStatus, self.status, "status"))
        if not isinstance(self.client_order_id, str) or not self.client_order_id:
            raise ValueError(f"client_order_id must be a non-empty string, got {self.client_order_id!r}")
        if len(self.client_order_id) > 128:
            raise ValueError(
                f"client_order_id is {len(self.client_order_id)} characters; Alpaca allows 128"
            )
        for name in ("limit_price", "stop_price", "take_profit_price", "stop_loss_price",
                     "stop_loss_limit_price", "filled_avg_price"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, require_price(name, value))
        object.__setattr__(self, "filled_qty", require_non_negative("filled_qty", self.filled_qty))
        if self.filled_qty > self.qty + 1e-9:
            raise ValueError(f"filled_qty {self.filled_qty} exceeds qty {self.qty}")
        if self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and self.limit_price is None:
            raise ValueError(f"limit_price is required for a {self.order_type.value} order")
        if self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and self.stop_price is None:
            raise ValueError(f"stop_price is required for a {self.order_type.value} order")

    @property
    def asset_class(self) -> AssetClass:
        return asset_class_of(self.symbol)

    @property
    def remaining_qty(self) -> float:
        return self.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class Fill:
    order_id: str
    symbol: str
    qty: float
    price: float
    side: Side
    timestamp: datetime
    commission: float = 0.0
    client_order_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        object.__setattr__(self, "qty", require_quantity("qty", self.qty))
        object.__setattr__(self, "price", require_price("price", self.price))
        object.__setattr__(self, "side", Side.parse(self.side))
        require_aware("timestamp", self.timestamp)
        object.__setattr__(self, "commission", require_non_negative("commission", self.commission))

    @property
    def notional(self) -> float:
        multiplier = OPTION_MULTIPLIER if asset_class_of(self.symbol) is AssetClass.OPTION else 1
        return self.qty * self.price * multiplier


@dataclass(frozen=True)
class Position:
    """An open position; ``qty`` is signed (negative = short)."""

    symbol: str
    qty: float
    avg_entry_price: float
    current_price: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        qty = require_finite("qty", self.qty)
        if qty == 0:
            raise ValueError("qty must be non-zero for an open position, got 0")
        object.__setattr__(self, "qty", qty)
        object.__setattr__(self, "avg_entry_price", require_price("avg_entry_price", self.avg_entry_price))
        if self.current_price is not None:
            object.__setattr__(self, "current_price", require_price("current_price", self.current_price))

    @property
    def asset_class(self) -> AssetClass:
        return asset_class_of(self.symbol)

    @property
    def multiplier(self) -> int:
        return OPTION_MULTIPLIER if self.asset_class is AssetClass.OPTION else 1

    @property
    def side(self) -> Side:
        return Side.BUY if self.qty > 0 else Side.SELL

    @property
    def market_value(self) -> float:
        price = self.current_price if self.current_price is not None else self.avg_entry_price
        return self.qty * price * self.multiplier

    @property
    def cost_basis(self) -> float:
        return self.qty * self.avg_entry_price * self.multiplier

    @property
    def unrealized_pl(self) -> float:
        return self.market_value - self.cost_basis


@dataclass(frozen=True)
class Account:
    account_id: str
    cash: float
    equity: float
    buying_power: float
    status: str = "ACTIVE"
    trading_blocked: bool = False
    account_blocked: bool = False
    last_equity: float | None = None  # equity at the previous close (Alpaca's field)

    def __post_init__(self) -> None:
        require_finite("cash", self.cash)
        require_finite("equity", self.equity)
        require_finite("buying_power", self.buying_power)

    @property
    def can_trade(self) -> bool:
        return self.status.upper() == "ACTIVE" and not (self.trading_blocked or self.account_blocked)


PROBABILITY_TOLERANCE = 1e-6  # float error allowed in a Signal's probabilities and score


@dataclass(frozen=True)
class Signal:
    """One prediction of the RL signal for one bar.

    For TradeNova's categorical policies, ``raw_action`` is the score ``P(call) − P(put)``
    of the bar's own distribution and ``smoothed_action`` the score of the EMA-smoothed
    one (``score``), the number the ±0.3 thresholds turn into ``decision``;
    ``p_put``/``p_flat``/``p_call`` are the smoothed distribution's probabilities. A
    signal from elsewhere (a scripted or continuous agent) leaves them None: then all
    three are None, never some.
    """

    timestamp: datetime
    symbol: str
    raw_action: float
    smoothed_action: float
    decision: Decision
    model: str = ""
    p_put: float | None = None
    p_flat: float | None = None
    p_call: float | None = None

    def __post_init__(self) -> None:
        require_aware("timestamp", self.timestamp)
        object.__setattr__(self, "symbol", require_symbol("symbol", self.symbol))
        raw, smoothed = self.raw_action, self.smoothed_action
        # Plain floats in [-1, 1] (NaN fails the comparisons) pass the checks below unchanged.
        if not (type(raw) is float and type(smoothed) is float and -1.0 <= raw <= 1.0 and -1.0 <= smoothed <= 1.0):
            for name in ("raw_action", "smoothed_action"):
                value = require_finite(name, getattr(self, name))
                if not -1.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be in [-1, 1], got {value!r}")
                object.__setattr__(self, name, value)
        if type(self.decision) is not Decision:
            object.__setattr__(self, "decision", _parse_enum(Decision, self.decision, "decision"))
        probabilities = require_probabilities(self.p_put, self.p_flat, self.p_call)
        if probabilities is not None:
            for name, value in zip(("p_put", "p_flat", "p_call"), probabilities):
                object.__setattr__(self, name, value)
            implied = probabilities[2] - probabilities[0]
            if abs(self.smoothed_action - implied) > PROBABILITY_TOLERANCE:
                raise ValueError(f"smoothed_action: {self.smoothed_action!r} is not p_call - p_put = {implied!r}")

    @property
    def score(self) -> float:
        """The smoothed score in [-1, 1] the decision is taken on."""
        return self.smoothed_action

    @property
    def probabilities(self) -> tuple[float, float, float] | None:
        """(P(put), P(flat), P(call)) of the smoothed distribution, or None."""
        return None if self.p_put is None else (self.p_put, self.p_flat, self.p_call)


def require_probabilities(p_put, p_flat, p_call) -> tuple[float, float, float] | None:
    """Three probabilities (each in [0, 1], summing to 1), or all three None."""
    # A softmax's three plain floats (every signal, every bar): in (0, 1] (NaN fails) and
    # summing to 1, they are what the general path below returns, unchanged. A zero goes
    # the general way, which stores -0.0 as 0.0.
    if (type(p_put) is float and type(p_flat) is float and type(p_call) is float
            and 0.0 < p_put <= 1.0 and 0.0 < p_flat <= 1.0 and 0.0 < p_call <= 1.0
            and abs(p_put + p_flat + p_call - 1.0) <= PROBABILITY_TOLERANCE):
        return p_put, p_flat, p_call
    values = {"p_put": p_put, "p_flat": p_flat, "p_call": p_call}
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == 3:
        return None
    if missing:
        raise ValueError(f"{', '.join(missing)}: give all three probabilities or none, got {values!r}")
    checked = []
    for name, value in values.items():
        value = require_finite(name, value)
        if not -PROBABILITY_TOLERANCE <= value <= 1.0 + PROBABILITY_TOLERANCE:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        checked.append(min(1.0, max(0.0, value)))
    if abs(sum(checked) - 1.0) > PROBABILITY_TOLERANCE:
        raise ValueError(f"p_put + p_flat + p_call must be 1, got {sum(checked)!r} from {values!r}")
    return checked[0], checked[1], checked[2]
