"""The per-bar fast paths of the signal step and of the bar's records give what the general
paths give, value for value and bit for bit:

- ``Bar``, ``Signal`` and ``require_probabilities`` accept and refuse what their field by
  field checks accept and refuse, and store the same values;
- ``FeatureBuilder.observation`` (Python floats, clipped once, one float32 array) is
  ``observation(add_bar(...), position)``; ``SignalModel.on_bar`` is ``predict`` on it;
- ``NumpyActor`` (``weight.dot``) is the ``weight @ x`` evaluation;
- ``AccountRecords``: a ``Signal`` logged without re-checking stores the row
  ``log_prediction`` stores; rows kept as datetimes store the instants Timestamps stored;
  ``clear_day`` (deleting only the tables that hold the day) deletes what a DELETE on
  every table deletes;
- ``session.feed._ticks`` (whole-column conversions) yields the ticks the per-row one did.

No timings here: the speed is measured outside the test suite.
"""

from __future__ import annotations

import contextlib
import math
import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradenova_dagster.domain import (
    PROBABILITY_TOLERANCE,
    Bar,
    Decision,
    Signal,
    require_aware,
    require_finite,
    require_non_negative,
    require_price,
    require_probabilities,
    require_symbol,
)
from tradenova_dagster.rl.features import (
    OBS_CLIP,
    DayContext,
    DayData,
    FeatureBuilder,
    PositionState,
    _clip,
    observation,
)
from tradenova_dagster.rl.inference import NumpyActor

UTC = timezone.utc
T0 = datetime(2024, 3, 8, 14, 30, tzinfo=UTC)

# Numbers of every kind a caller may pass: plain floats (NaN, infinities, signed zeros,
# subnormals), ints, bools, numpy floats.
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 5e-324, 1.0 + 1e-7, -1e-7, math.inf, -math.inf, math.nan]),
    st.integers(-3, 700),
    st.booleans(),
    st.floats(0.01, 1000.0).map(np.float64),
)


def _outcome(make):
    """(True, values) or (False, the ValueError's message)."""
    try:
        return True, make()
    except ValueError as exc:
        return False, str(exc)


def _same(a, b) -> None:
    """The same outcome: the same error message, or the same values of the same types."""
    assert a[0] == b[0], (a, b)
    if a[0]:
        assert [(type(x), repr(x)) for x in a[1]] == [(type(x), repr(x)) for x in b[1]]
    else:
        assert a[1] == b[1]


# ---------------------------------------------------------------------- Bar


def _bar_by_fields(symbol, ts, o, h, low, c, v) -> tuple:
    """Bar's checks field by field (its general path, the only one before the fast path)."""
    symbol = require_symbol("symbol", symbol)
    require_aware("timestamp", ts)
    o, h, low, c = (require_price(name, x) for name, x in zip(("open", "high", "low", "close"), (o, h, low, c)))
    v = require_non_negative("volume", v)
    if low > min(o, c) or h < max(o, c):
        raise ValueError(f"bar for {symbol} at {ts}: need low <= open,close <= high, got "
                         f"open={o} high={h} low={low} close={c}")
    return symbol, ts, o, h, low, c, v


@st.composite
def _bar_values(draw):
    """Mostly well-formed bars (sorted prices), some with any number in any field."""
    if draw(st.booleans()):
        low, a, b, high = sorted(draw(st.lists(st.floats(1e-3, 1e4), min_size=4, max_size=4)))
        o, c = (a, b) if draw(st.booleans()) else (b, a)
        values = [o, high, low, c, draw(st.floats(0.0, 1e9))]
        if draw(st.booleans()):  # then spoil one field
            values[draw(st.integers(0, 4))] = draw(NUMBERS)
        return values
    return [draw(NUMBERS) for _ in range(5)]


@settings(max_examples=400, deadline=None)
@given(values=_bar_values(), naive=st.booleans())
def test_bar_accepts_and_refuses_what_its_field_checks_do(values, naive):
    ts = T0.replace(tzinfo=None) if naive else T0

    def built():
        bar = Bar(" spy", ts, *values)
        return bar.symbol, bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume

    _same(_outcome(built), _outcome(lambda: _bar_by_fields(" spy", ts, *values)))


# ---------------------------------------------------------------------- Signal and probabilities


def _probabilities_by_fields(p_put, p_flat, p_call):
    """require_probabilities' general path (the only one before the fast path)."""
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


@st.composite
def _distributions(draw):
    """Softmaxes of random logits (what the SignalModel gives), some spoiled or None."""
    logits = draw(st.lists(st.floats(-30.0, 30.0), min_size=3, max_size=3))
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    probs = [e / sum(exps) for e in exps]
    if draw(st.booleans()):
        probs[draw(st.integers(0, 2))] = draw(st.one_of(NUMBERS, st.none()))
    return probs


# A zero of either sign beside two halves: the general path stores -0.0 as 0.0.
SIGNED_ZEROS = st.permutations([-0.0, 0.5, 0.5]) | st.permutations([0.0, 0.5, 0.5])


@settings(max_examples=400, deadline=None)
@given(probs=_distributions() | SIGNED_ZEROS)
def test_require_probabilities_gives_what_its_general_path_gives(probs):
    _same(_outcome(lambda: require_probabilities(*probs) or ()),
          _outcome(lambda: _probabilities_by_fields(*probs) or ()))


def _signal_by_fields(ts, symbol, raw, smoothed, decision, model, p_put, p_flat, p_call) -> tuple:
    """Signal's checks field by field (its general path)."""
    require_aware("timestamp", ts)
    symbol = require_symbol("symbol", symbol)
    actions = []
    for name, value in (("raw_action", raw), ("smoothed_action", smoothed)):
        value = require_finite(name, value)
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [-1, 1], got {value!r}")
        actions.append(value)
    decision = Decision(decision.upper()) if isinstance(decision, str) else decision
    probabilities = _probabilities_by_fields(p_put, p_flat, p_call)
    if probabilities is not None:
        p_put, p_flat, p_call = probabilities
        implied = p_call - p_put
        if abs(actions[1] - implied) > PROBABILITY_TOLERANCE:
            raise ValueError(f"smoothed_action: {actions[1]!r} is not p_call - p_put = {implied!r}")
    return ts, symbol, actions[0], actions[1], decision, model, p_put, p_flat, p_call


@settings(max_examples=400, deadline=None)
@given(probs=_distributions() | SIGNED_ZEROS,
       raw=st.one_of(st.floats(-1.0, 1.0), NUMBERS, st.sampled_from([-1.0000001, 1.0000001, -1.25, 1.25])),
       spoil=st.booleans(),
       decision=st.sampled_from([Decision.BUY_CALL, Decision.FLAT, "buy_put"]))
def test_signal_accepts_and_refuses_what_its_field_checks_do(probs, raw, spoil, decision):
    smoothed = probs[2] - probs[0] if all(type(p) is float for p in probs) else 0.0
    if spoil:
        smoothed = raw
    fields = (T0, "spy", raw, smoothed, decision, "m", *probs)

    def built():
        s = Signal(*fields)
        return (s.timestamp, s.symbol, s.raw_action, s.smoothed_action, s.decision, s.model, s.p_put, s.p_flat,
                s.p_call)

    _same(_outcome(built), _outcome(lambda: _signal_by_fields(*fields)))


# ---------------------------------------------------------------------- features and the actor


@given(value=st.one_of(NUMBERS.filter(lambda x: type(x) is float), st.floats(-11.0, 11.0),
                       st.sampled_from([OBS_CLIP, -OBS_CLIP, np.nextafter(OBS_CLIP, 99), -0.0])))
def test_clip_is_numpys_clip(value):
    expected = np.clip(np.float64(value), -OBS_CLIP, OBS_CLIP)
    assert np.array([_clip(value)]).tobytes() == np.array([expected]).tobytes()  # NaN and -0.0 too


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(1, 390), scale=st.floats(1e-5, 0.05),
       vix=st.floats(5.0, 90.0), iv_rank=st.floats(0.0, 100.0))
def test_the_builders_observation_is_the_whole_day_features_bit_for_bit(seed, n_bars, scale, vix, iv_rank):
    """Random paths with jumps past the clip and random positions (P&L past the clip too):
    the builder's observation is ``observation`` of the whole-day function's row."""
    rng = np.random.default_rng(seed)
    day = date(2024, 3, 5)
    open_utc = pd.Timestamp("2024-03-05 14:30", tz="UTC")
    minutes = np.sort(rng.choice(390, size=n_bars, replace=False))
    closes = 500.0 * np.exp(np.cumsum(rng.normal(0.0, scale, n_bars) + rng.choice([0.0, 0.03, -0.03], n_bars)))
    opens = np.concatenate([[499.0], closes[:-1]])
    bars = pd.DataFrame({"timestamp": [open_utc + pd.Timedelta(minutes=int(m)) for m in minutes], "open": opens,
                         "high": np.maximum(opens, closes), "low": np.minimum(opens, closes), "close": closes})
    data = DayData.from_bars("SPY", day, bars, DayContext(vix, iv_rank))
    builder = FeatureBuilder(day, data.context)
    for t in range(n_bars):
        stamp = bars["timestamp"][t]
        stamp = stamp.to_pydatetime() if t % 2 else stamp
        position = PositionState(int(rng.integers(-1, 2)), float(rng.normal(0.0, 8.0)), int(rng.integers(0, 900)))
        got = builder.observation(stamp, float(opens[t]), float(closes[t]), position)
        assert got.dtype == np.float32 and got.tobytes() == observation(data.features[t], position).tobytes()


def _matmul_actor(actor: NumpyActor, obs: np.ndarray) -> np.ndarray:
    """The actor as it was evaluated before ``dot``: ``weight @ x`` per layer."""
    if actor.normalisation is not None:
        mean, std, clip = actor.normalisation
        x = obs - mean
        x /= std
        np.maximum(x, -clip, out=x)
        np.minimum(x, clip, out=x)
        x = x.astype(np.float32)
    else:
        x = obs
    for weight, bias, activation in actor.layers:
        x = weight @ x
        x += bias
        if activation is not None:
            activation(x)
    return x


@pytest.mark.parametrize("widths, activation, normalise", [
    ((64, 64), "Tanh", True), ((64, 64), "Tanh", False), ((32,), "ReLU", True), ((16, 8, 4), "ReLU", False),
])
def test_the_numpy_actor_is_the_matmul_evaluation_bit_for_bit(widths, activation, normalise):
    rng = np.random.default_rng(len(widths) * 2 + normalise)
    sizes = (19, *widths, 3)
    layers = [(rng.normal(0.0, 0.5, (n_out, n_in)).astype(np.float32), rng.normal(0.0, 0.5, n_out).astype(np.float32),
               activation if i < len(sizes) - 2 else None)
              for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))]
    normalisation = (rng.normal(0.0, 0.5, 19), np.sqrt(rng.uniform(0.05, 4.0, 19) + 1e-8), 3.0) if normalise else None
    actor = NumpyActor(layers, normalisation)
    for obs in rng.normal(0.0, 4.0, (3000, 19)).astype(np.float32):
        assert actor(obs).tobytes() == _matmul_actor(actor, obs).tobytes()


def test_on_bar_is_predict_on_the_bars_observation_exactly():
    """The session's path (``on_bar``: the builder's observation, the policy, the Signal)
    against the general one (``add_bar``, ``observation``, ``predict``) on the same bars."""
    import torch as th

    from rl_helpers import categorical_ppo, planted_days
    from tradenova_dagster.rl.signal import SignalModel

    model, venv = categorical_ppo()
    generator = th.Generator().manual_seed(3)
    with th.no_grad():
        for parameter in model.policy.parameters():
            parameter.copy_(th.randn(parameter.shape, generator=generator) * 0.5)
    fast, reference = SignalModel(model, venv, model_id="m"), SignalModel(model, venv, model_id="m")
    rng = np.random.default_rng(5)
    decisions = set()
    for day in planted_days(2, seed=17):
        fast.reset(day.day, day.context)
        reference.reset(day.day, day.context)
        builder = FeatureBuilder(day.day, day.context)
        for t in range(len(day)):
            stamp = pd.Timestamp(int(day.timestamps[t]), tz="UTC").to_pydatetime()
            bar = Bar("SPY", stamp, day.opens[t], day.highs[t], day.lows[t], day.closes[t], 1000.0)
            position = PositionState(int(rng.integers(-1, 2)), float(rng.normal(0.0, 0.3)), int(rng.integers(0, 90)))
            got = fast.on_bar(bar, position)
            expected = reference.predict(observation(builder.add_bar(stamp, bar.open, bar.close), position), stamp)
            assert got == expected
            assert [type(v) for v in vars(got).values()] == [type(v) for v in vars(expected).values()]
            decisions.add(got.decision)
    assert len(decisions) == 3  # every threshold was crossed: the check has teeth


# ---------------------------------------------------------------------- records


def _stored(store, table: str) -> list[tuple]:
    """The table's rows, without the account and the time they were recorded."""
    columns = [c for (c,) in store.query("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                         "ORDER BY ordinal_position", [table])
               if c not in ("account", "recorded_at", "committed_at")]
    return store.query(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL")


class _OtherSignal(Signal):
    """A Signal that is not exactly one: ``log_signal`` takes its general path for it."""


@settings(max_examples=20, deadline=None)
@given(probs=_distributions().filter(lambda p: all(type(x) is float for x in p)),
       minutes=st.lists(st.integers(0, 5 * 24 * 60), min_size=1, max_size=8, unique=True),
       zone=st.sampled_from([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Tokyo")]),
       as_timestamp=st.booleans(), batched=st.booleans())
def test_a_logged_signal_stores_the_row_log_prediction_stores(probs, minutes, zone, as_timestamp, batched):
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.ledger.records import AccountRecords

    try:
        _probabilities_by_fields(*probs)
    except ValueError:
        return  # not a distribution a Signal takes
    tables = ("rl_predictions", "equity_curve", "session_bars", "agent_decisions")
    stored = {}
    for kind, signal_type in (("fast", Signal), ("general", _OtherSignal)):
        account = f"backtest:{kind}"
        store = ledger_store(account)
        records = AccountRecords(store, account, run_id="run-1")
        with store.hold():  # one connection for the example (opening the file costs more than the rest)
            for table in tables:  # the examples share the test's two ledgers
                store.execute(f"DELETE FROM {table}")
            with store.unit_of_work(), records.batch() if batched else contextlib.nullcontext():
                for minute in minutes:
                    ts = (T0 + timedelta(minutes=minute)).astimezone(zone)
                    ts = pd.Timestamp(ts) if as_timestamp else ts
                    score = probs[2] - probs[0]
                    records.log_signal(signal_type(ts, "SPY", score, score, Decision.FLAT, "model-1", *probs))
                    records.record_equity(ts, 1e5 + minute, 9e4, 1e4 - minute)
                    records.record_session_bar(date(2024, 3, 8), ts, 1, 0.25, minute, "run-1")
                    records.log_decision("rl", Decision.BUY_CALL if kind == "fast" else "BUY_CALL", False, "why",
                                         symbol="SPY", timestamp=ts, risk_level="high")
            stored[kind] = {table: _stored(store, table) for table in tables}
            instants = [ts for (ts,) in store.query("SELECT ts FROM equity_curve ORDER BY ts")]
            assert instants == sorted(T0 + timedelta(minutes=minute) for minute in minutes)  # the very instants
    assert stored["fast"] == stored["general"]
    assert all(len(rows) == len(minutes) for rows in stored["fast"].values())


def test_the_remembered_new_york_day_holds_for_datetimes_and_timestamps_in_any_order():
    from tradenova_dagster.ledger import records

    rng = random.Random(11)
    edges = [pd.Timestamp(e, tz="UTC") for e in ("2024-03-10 04:59:59.999999", "2024-03-10 05:00",
                                                   "2024-11-03 03:59:59", "2024-11-03 04:00", "2024-11-04 04:59:59",
                                                   "2024-11-04 05:00")]
    start = pd.Timestamp("2015-01-01", tz="UTC")
    spread = [start + pd.Timedelta(minutes=rng.randrange(6_000_000)) for _ in range(1500)]
    instants = edges + spread + sorted(spread) + edges[::-1]
    mixed = [ts.to_pydatetime() if rng.random() < 0.5 else ts for ts in instants]
    assert [records._session_day(ts) for ts in mixed] == [ts.tz_convert("America/New_York").date() for ts in instants]


def test_clear_day_deletes_what_a_delete_on_every_table_deletes(tradenova_home):
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.ledger.records import DAY_TABLES, AccountRecords

    store = ledger_store("backtest:clear")
    records = AccountRecords(store, "backtest:clear", run_id="r")
    days = (date(2024, 3, 7), date(2024, 3, 8))
    for day in days:
        open_ = pd.Timestamp(f"{day} 14:30", tz="UTC")
        for i in range(3):
            ts = (open_ + pd.Timedelta(minutes=i)).to_pydatetime()
            records.record_equity(ts, 1e5, 1e5, 0.0)
            records.record_session_bar(day, ts, 0, 0.0, 0, "r")
        records.log_decision("rl", "FLAT", False, "why", timestamp=open_)
    late = pd.Timestamp("2024-03-09 04:30", tz="UTC")  # 23:30 on the 8th in New York
    store.execute("INSERT INTO risk_events VALUES ('backtest:clear', 'r', ?, 'refusal', 'vix', NULL, '{}', 'x'), "
                  "('backtest:clear', 'r', ?, 'refusal', 'vix', NULL, '{}', 'x')", [late, late - pd.Timedelta(days=1)])

    def counts(day):
        where = {t: "day = ?" for t in DAY_TABLES}
        where["risk_events"] = "CAST(timezone('America/New_York', ts) AS DATE) = ?"
        return {t: store.query(f"SELECT count(*) FROM {t} WHERE account = 'backtest:clear' AND {w}", [day])[0][0]
                for t, w in where.items()}

    before = [counts(day) for day in days]
    assert before[1] == {**{t: 0 for t in before[1]}, "equity_curve": 3, "session_bars": 3, "agent_decisions": 1,
                         "risk_events": 1}
    assert records.clear_day(days[1]) == sum(before[1].values()) == 8
    assert set(counts(days[1]).values()) == {0}
    assert counts(days[0]) == before[0]  # the other day is left alone
    assert records.clear_day(days[1]) == 0
    assert records.clear_day(date(2024, 3, 11)) == 0  # a day with nothing


# ---------------------------------------------------------------------- feed


def _ticks_by_rows(bars: pd.DataFrame, start_index: int = 0):
    """``_ticks`` as it was: one Timestamp sum and one numpy row per bar."""
    from tradenova_dagster.session.feed import BarTick

    interval = pd.Timedelta(minutes=int(bars.attrs.get("interval_minutes", 1)))
    values = bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    stamps = list(pd.to_datetime(bars["timestamp"], utc=True))
    for i in range(start_index, len(bars)):
        o, h, low, c, v = values[i]
        yield BarTick(i, stamps[i], stamps[i] + interval, float(o), float(h), float(low), float(c), float(v))


@pytest.mark.parametrize("zone, unit, interval, start", [
    ("UTC", "us", 1, 0), ("UTC", "ns", 5, 3), (None, "us", 1, 2), ("America/New_York", "ns", 1, 0),
])
def test_ticks_are_the_per_row_ticks(zone, unit, interval, start):
    from tradenova_dagster.session.feed import _ticks

    rng = np.random.default_rng(1)
    n = 40
    times = pd.date_range("2024-03-08 14:30", periods=n, freq=f"{interval}min", tz="UTC").as_unit(unit)
    times = times.tz_convert(zone) if zone else times.tz_localize(None)
    closes = 500 + rng.normal(0, 1, n).cumsum()
    bars = pd.DataFrame({"timestamp": times, "open": closes - 0.1, "high": closes + 0.5, "low": closes - 0.5,
                         "close": closes, "volume": rng.integers(0, 10**6, n).astype(np.int64)})
    bars.attrs["interval_minutes"] = interval
    got, expected = list(_ticks(bars, start)), list(_ticks_by_rows(bars, start))
    assert got == expected and len(got) == n - start
    for a, b in zip(got, expected):
        assert [(type(x), getattr(x, "unit", None), repr(x)) for x in vars(a).values()] == \
               [(type(x), getattr(x, "unit", None), repr(x)) for x in vars(b).values()]
