"""Baseline strategies: what each decides on bars whose answer is known by construction."""

from datetime import date

import pandas as pd
import pytest

from tradenova_dagster.domain import Bar, Decision
from tradenova_dagster.strategies import LOOKBACK_BARS, STRATEGIES, Baseline, build_strategy

DAY = date(2026, 11, 20)
OPEN = pd.Timestamp("2026-11-20 14:30", tz="UTC")


def _bars(closes, highs=None, lows=None):
    highs = highs or [c + 0.1 for c in closes]
    lows = lows or [c - 0.1 for c in closes]
    return [Bar("SPY", (OPEN + pd.Timedelta(minutes=i)).to_pydatetime(), c, h, l, c, 100.0)
            for i, (c, h, l) in enumerate(zip(closes, highs, lows))]


def _decisions(strategy, bars):
    strategy.reset(DAY, None)
    return [strategy.on_bar(bar).decision for bar in bars]


def test_the_fixed_baselines_say_the_same_thing_on_every_bar():
    bars = _bars([100 + (i % 7) for i in range(50)])
    assert set(_decisions(Baseline("flat"), bars)) == {Decision.FLAT}
    assert set(_decisions(Baseline("always-call"), bars)) == {Decision.BUY_CALL}
    assert set(_decisions(Baseline("always-put"), bars)) == {Decision.BUY_PUT}


def test_momentum_follows_the_sign_of_the_last_30_minutes():
    rising = [100.0 + i for i in range(LOOKBACK_BARS + 1)]  # bar 30 is 30 above bar 0
    falling = [rising[-1] - 2 * (i + 1) for i in range(20)]  # 20 bars back down, 40 below bar 50's level
    decisions = _decisions(Baseline("momentum"), _bars(rising + falling))
    assert decisions[:LOOKBACK_BARS] == [Decision.FLAT] * LOOKBACK_BARS  # not 30 minutes of history yet
    assert decisions[LOOKBACK_BARS] == Decision.BUY_CALL  # 130 vs 100
    # bar 30 + k compares with bar k: 130 - 2k vs 100 + k, down once 3k > 30
    assert decisions[LOOKBACK_BARS + 9] == Decision.BUY_CALL and decisions[LOOKBACK_BARS + 11] == Decision.BUY_PUT
    assert decisions[LOOKBACK_BARS + 10] == Decision.FLAT  # 110 vs 110: no move, no view


def test_the_opening_range_breakout_holds_the_last_break():
    inside = [100.0] * LOOKBACK_BARS  # range 99.9 .. 100.1
    closes = inside + [100.05, 100.5, 100.0, 99.5, 100.0]
    decisions = _decisions(Baseline("orb"), _bars(closes))
    assert decisions[:LOOKBACK_BARS + 1] == [Decision.FLAT] * (LOOKBACK_BARS + 1)  # inside the range
    assert decisions[LOOKBACK_BARS + 1:] == [Decision.BUY_CALL, Decision.BUY_CALL, Decision.BUY_PUT,
                                             Decision.BUY_PUT]


def test_the_day_resets_a_rule_baseline():
    orb = Baseline("orb")
    _decisions(orb, _bars([100.0] * LOOKBACK_BARS + [105.0]))
    assert _decisions(orb, _bars([50.0]))[0] == Decision.FLAT  # yesterday's range is not today's


def test_random_is_uniform_repeatable_per_seed_and_day_and_differs_across_days():
    bars = _bars([100.0] * 3000)
    first = _decisions(Baseline("random", seed=7), bars)
    assert first == _decisions(Baseline("random", seed=7), bars)
    assert first != _decisions(Baseline("random", seed=8), bars)
    other_day = Baseline("random", seed=7)
    other_day.reset(date(2026, 11, 19))
    assert [other_day.on_bar(b).decision for b in bars] != first
    counts = pd.Series(first).value_counts()
    assert len(counts) == 3 and all(abs(n - 1000) < 100 for n in counts)  # ~1/3 each (sd ≈ 26)


def test_a_baseline_signal_carries_its_score_and_probabilities():
    call = Baseline("always-call").on_bar(_bars([100.0])[0])
    assert (call.score, call.probabilities, call.model) == (1.0, (0.0, 0.0, 1.0), "baseline:always-call")
    rnd = Baseline("random", seed=3).on_bar(_bars([100.0])[0])
    assert rnd.score == 0.0 and rnd.probabilities == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert rnd.model == "baseline:random:3"


def test_unknown_strategies_and_a_missing_model_are_named(store):
    with pytest.raises(ValueError, match="strategy: unknown strategy 'buy-and-pray'; expected one of flat"):
        build_strategy("buy-and-pray")
    with pytest.raises(ValueError, match="pass a model file, or backtest a baseline that needs none"):
        build_strategy("model", store=store)
    assert set(STRATEGIES) == {"flat", "always-call", "always-put", "random", "momentum", "orb", "model"}


def test_look_ahead_is_any_overlap_with_the_training_window():
    from tradenova_dagster.strategies import refuse_look_ahead

    class Trained:
        model_id, train_window = "m1", (date(2026, 11, 2), date(2026, 11, 13))

    for first, last in [(date(2026, 11, 13), None), (date(2026, 10, 1), date(2026, 11, 2)),
                        (date(2026, 11, 5), date(2026, 11, 6))]:
        with pytest.raises(ValueError, match="model m1 was trained on 2026-11-02 .. 2026-11-13, which includes"):
            refuse_look_ahead(Trained(), first, last)
    refuse_look_ahead(Trained(), date(2026, 11, 16))  # after the window
    refuse_look_ahead(Trained(), date(2026, 10, 1), date(2026, 10, 30))  # before it
    refuse_look_ahead(Baseline("flat"), date(2026, 11, 5))  # a baseline has no window
