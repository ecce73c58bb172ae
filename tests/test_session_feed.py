"""Bar feeds and clocks: a bar is delivered only once it has completed, live or replayed."""

import pandas as pd

from tradenova_dagster.market import calendar
from tradenova_dagster.market.data import get_source
from tradenova_dagster.session.clock import PacedClock, SimulatedClock
from tradenova_dagster.session.feed import PollingFeed, ReplayFeed

DAY = "2026-11-27"  # an early close: 210 bars


def test_replay_delivers_every_bar_at_its_end_in_order():
    bars = get_source("synthetic").bars("SPY", DAY)
    open_, _ = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    seen = []
    for tick in ReplayFeed(bars, clock):
        assert clock.now() >= tick.end == tick.timestamp + pd.Timedelta(minutes=1)
        seen.append(tick.close)
    assert seen == bars["close"].tolist()


class GrowingSource:
    """A data source that, like a live feed, only has the bars that have completed."""

    def __init__(self, clock):
        self.clock, self.calls, self.afters = clock, 0, []
        self.day = get_source("synthetic").bars("SPY", DAY)

    def fetch(self, after=None):
        self.calls += 1
        self.afters.append(after)
        done = self.day[self.day["timestamp"] + pd.Timedelta(minutes=1) <= self.clock.now()]
        return done if after is None else done[done["timestamp"] >= after]  # only what is new, as Alpaca's


def test_polling_feed_yields_each_completed_bar_once_and_stops_at_the_close():
    open_, close = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    source = GrowingSource(clock)
    ticks = list(PollingFeed(source.fetch, clock, close, poll_seconds=20))
    assert [t.index for t in ticks] == list(range(210))
    assert all(t.end <= close for t in ticks) and clock.now() < close + pd.Timedelta(minutes=1)
    assert source.calls > 210  # it polled, several times a minute


def test_a_late_started_polling_feed_never_yields_a_bar_that_completed_before_it_started():
    open_, close = calendar.session_open_close(DAY)
    started = open_ + pd.Timedelta(minutes=90, seconds=13)  # 11:00:13 New York: 90 bars are done
    clock = SimulatedClock(started)
    ticks = list(PollingFeed(GrowingSource(clock).fetch, clock, close, poll_seconds=20, start_after=started))
    assert ticks[0].index == 90 and ticks[0].end > started
    assert [t.index for t in ticks] == list(range(90, 210))


def test_polling_feed_gives_up_after_the_close_when_the_last_bar_never_comes():
    open_, close = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    source = GrowingSource(clock)
    source.day = source.day.iloc[:-5]  # the feed goes quiet five minutes before the close
    ticks = list(PollingFeed(source.fetch, clock, close, poll_seconds=30, max_wait=pd.Timedelta(minutes=2)))
    assert len([t for t in ticks if not t.stale]) == 205 and clock.now() >= close + pd.Timedelta(minutes=2)
    assert all(t.end <= close for t in ticks)


def test_a_paced_clock_spends_real_time_per_wait():
    import time

    clock = PacedClock(pd.Timestamp("2026-11-27 14:30", tz="UTC"), pace_s=0.01)
    start = time.perf_counter()
    for minute in range(1, 6):
        clock.wait_until(pd.Timestamp("2026-11-27 14:30", tz="UTC") + pd.Timedelta(minutes=minute))
    assert clock.now() == pd.Timestamp("2026-11-27 14:35", tz="UTC")
    assert time.perf_counter() - start >= 0.05


def _feed(source, clock, close, problems, **kw):
    return PollingFeed(source.fetch, clock, close, poll_seconds=20,
                       on_problem=lambda kind, detail: problems.append((kind, detail)), **kw)


def test_the_feed_asks_only_for_bars_after_the_last_one_it_delivered():
    open_, close = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    source = GrowingSource(clock)
    ticks = list(_feed(source, clock, close, []))
    assert len(ticks) == 210
    asked = [a for a in source.afters if a is not None]
    assert source.afters[: len(source.afters) - len(asked)] == [None] * (len(source.afters) - len(asked))
    assert asked and set(asked) <= {t.end for t in ticks}  # once a bar came: only what starts after it


def test_a_bad_bar_is_reported_and_skipped_and_a_failed_fetch_is_a_quiet_poll():
    open_, close = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    source = GrowingSource(clock)
    source.day.loc[10, "high"] = source.day.loc[10, "close"] - 1.0  # high below the close
    real_fetch, failures = source.fetch, {"left": 3}

    def flaky(after=None):
        if clock.now() > open_ + pd.Timedelta(minutes=50) and failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("feed unreachable")
        return real_fetch(after)

    source.fetch = flaky
    problems = []
    ticks = list(_feed(source, clock, close, problems))
    assert [t.index for t in ticks] == [i for i in range(210) if i != 10]  # nothing lost but the bad bar
    assert problems[0][0] == "bad_bar" and "low/high outside open/close" in problems[0][1]["why"]
    assert [k for k, _ in problems[1:]] == ["fetch_failed"] * 3


def test_a_feed_gone_quiet_yields_stale_ticks_each_minute_for_exits_only():
    open_, close = calendar.session_open_close(DAY)
    clock = SimulatedClock(open_)
    source = GrowingSource(clock)
    source.day = source.day.iloc[:100]  # nothing after 11:10 New York
    problems = []
    ticks = list(_feed(source, clock, close, problems, stale_after=pd.Timedelta(minutes=3)))
    live, stale = [t for t in ticks if not t.stale], [t for t in ticks if t.stale]
    assert len(live) == 100 and stale and all(t.close == live[-1].close for t in stale)
    assert stale[0].end >= live[-1].end + pd.Timedelta(minutes=3)  # only after three quiet minutes
    assert all(b.end - a.end == pd.Timedelta(minutes=1) for a, b in zip(stale, stale[1:]))  # one per minute
    assert stale[-1].end <= close
    assert [k for k, _ in problems] == ["stale_feed"]  # reported once per quiet spell
