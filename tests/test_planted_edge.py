"""The planted-edge market (tests/planted_edge.py): the feature predicts the next 30
minutes with the planted probability, its realised variance is what its options are
priced at, the shuffled variant breaks exactly the feature and nothing else, and the
oracle trades it through the real session loop (issue 14, item 6). The oracle and the
agents against the gate: tests/test_rl_learn.py."""

from __future__ import annotations

import numpy as np
import pytest

from planted_edge import BLOCK, EVAL_DAYS, JUMP_AT, MarkerOracle, PlantedEdgeSource, full_days, planted_baselines
from tradenova_dagster.domain import Decision


def _marker_and_move(source: PlantedEdgeSource, day) -> tuple[np.ndarray, np.ndarray]:
    """Per marker of the day: the sign of the marker bar's return (what the policy sees as
    ret_0) and the sign of the move over the next 30 minutes."""
    closes = source.bars("SPY", day)["close"].to_numpy()
    markers = np.arange(BLOCK, len(closes) - BLOCK, BLOCK)
    marker = np.sign(closes[markers] - closes[markers - 1])
    move = np.sign(closes[markers + BLOCK - 1] - closes[markers])
    return marker, move


def test_the_marker_predicts_the_next_30_minutes_with_the_planted_probability_and_not_when_shuffled():
    days = full_days("2026-06-01", 40)  # 40 days x 11 markers: the binomial SE of a rate is ~0.024
    rates = {}
    for shuffled in (False, True):
        source = PlantedEdgeSource(shuffled=shuffled)
        pairs = [_marker_and_move(source, d) for d in days]
        marker = np.concatenate([m for m, _ in pairs])
        move = np.concatenate([v for _, v in pairs])
        assert len(marker) == 440 and set(np.unique(marker)) == {-1.0, 1.0}
        rates[shuffled] = float(np.mean(marker == move))
    assert 0.58 < rates[False] < 0.72, rates  # planted 0.65 (the noise flips a few)
    assert 0.42 < rates[True] < 0.58, rates  # no information


def test_shuffling_changes_the_marker_signs_and_nothing_else():
    day = full_days("2026-06-01", 1)[0]
    planted = PlantedEdgeSource().bars("SPY", day)
    shuffled = PlantedEdgeSource(shuffled=True).bars("SPY", day)
    sigma = PlantedEdgeSource().sigma(day)
    r_planted = np.diff(np.log(planted["close"].to_numpy())) / sigma
    r_shuffled = np.diff(np.log(shuffled["close"].to_numpy())) / sigma
    markers = np.arange(BLOCK, len(planted) - BLOCK, BLOCK) - 1  # diff index of the marker bars
    other = np.setdiff1d(np.arange(len(r_planted)), markers)
    np.testing.assert_allclose(r_planted[other], r_shuffled[other], atol=1e-9)
    np.testing.assert_allclose(np.abs(r_planted[markers]), 2.5, rtol=1e-9)
    assert sorted(r_planted[markers]) == pytest.approx(sorted(r_shuffled[markers]))  # the same signs, permuted
    assert np.abs(r_planted[markers + JUMP_AT]).min() > 3.0  # every block's move is one jump (4.7 sigma)


def test_a_blocks_realised_variance_is_the_variance_its_options_are_priced_at():
    """Over the marker blocks of 20 days, the realised variance of the minute returns is
    what the market model's implied volatility of the contract the session buys charges
    for (within sampling error), so a long option is fairly priced whatever its direction."""
    from tradenova_dagster import rules
    from tradenova_dagster.market import calendar
    from tradenova_dagster.market.model import MarketModel, full_session_minutes_after
    from tradenova_dagster.market.options import MINUTES_PER_YEAR

    source = PlantedEdgeSource()
    ratios = []
    for day in full_days("2026-08-26", 20):
        vix = source.vix(calendar.previous_session(day))
        t = (195 + full_session_minutes_after(day, rules.expiry_for(day))) / MINUTES_PER_YEAR
        implied_minute_variance = float(MarketModel().atm_iv(vix, t)) ** 2 / MINUTES_PER_YEAR
        returns = np.diff(np.log(source.bars("SPY", day)["close"].to_numpy()))
        blocks = returns[BLOCK - 1:BLOCK - 1 + 11 * BLOCK]  # the 11 marker blocks (diff index of bar 30 on)
        ratios.append(np.mean(blocks ** 2) / implied_minute_variance)
    assert 0.9 < np.mean(ratios) < 1.1, ratios


@pytest.mark.parametrize("field, kwargs", [("p", {"p": 1.5}), ("jump", {"jump": -1.0}), ("marker", {"marker": 0.0}),
                                           ("jump", {"jump": 5.0, "marker": 2.5})])
def test_bad_parameters_are_refused_naming_the_field(field, kwargs):
    with pytest.raises(ValueError, match=f"^{field} must"):
        PlantedEdgeSource(**kwargs)


def test_the_oracle_follows_each_marker_through_the_session_loop(store):
    """One replayed day: every entry is on the bar after a marker, in the marker's direction."""
    from tradenova_dagster.ledger.accounts import ledger_store
    from tradenova_dagster.session.day import backtest_account, backtest_day

    source = PlantedEdgeSource()
    day = full_days("2026-06-01", 1)[0]
    report = backtest_day(store, source, day, MarkerOracle(), "oracle-probe")
    assert report.entries >= 1 and report.decisions[Decision.BUY_CALL.value] + report.decisions[
        Decision.BUY_PUT.value] > 0
    bars = source.bars("SPY", day).set_index("timestamp")
    account = backtest_account("oracle-probe")
    trades = ledger_store(account).query_df("SELECT contract, entry_time FROM trades WHERE account = ?", [account])
    assert len(trades) == report.trades >= 1
    for contract, entry in zip(trades["contract"], trades["entry_time"]):
        position = bars.index.get_loc(entry)
        marker = position - 1
        assert marker % BLOCK == 0, (entry, position)
        up = bars["close"].iloc[marker] > bars["close"].iloc[marker - 1]
        assert ("C" if up else "P") == contract[len("SPY") + 6]  # SPY + YYMMDD + C/P


@pytest.mark.slow
def test_the_oracle_passes_the_gate_and_the_shuffled_oracle_fails_it(store):
    """The edge pays the options' costs: the oracle, replayed through the session loop over
    the held-out days, is promotable against every baseline. The same rule on the same
    days with the marker signs shuffled trades as much and is not: a long option bought
    at random earns nothing on volatility (realised variance is what it was priced at)."""
    from tradenova_dagster.rl.evaluate import evaluate_replay

    baselines = planted_baselines(store)
    flat = baselines["flat"]
    assert flat.daily_pnl == [0.0] * len(EVAL_DAYS) and set(flat.trades) == {0}  # flat books 0 on any market
    planted = evaluate_replay(store, PlantedEdgeSource(), EVAL_DAYS, MarkerOracle(), name="oracle",
                              label="oracle-planted", baselines=baselines)
    shuffled = evaluate_replay(store, PlantedEdgeSource(shuffled=True), EVAL_DAYS, MarkerOracle(), name="oracle",
                               label="oracle-shuffled", baselines={"flat": flat})
    rows = {"planted": planted.model.row(), "shuffled": shuffled.model.row()}
    print(rows, planted.reason, shuffled.reason, sep="\n")
    assert planted.promotable, (planted.reason, rows)
    assert not shuffled.promotable, (shuffled.reason, rows)
    assert "ci_low" in shuffled.verdict.failed, shuffled.reason
    assert rows["shuffled"]["trades_per_day"] >= 5, rows  # it did trade: it fails on its P&L, not by sitting out
