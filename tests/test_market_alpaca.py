"""The Alpaca source: alpaca-py's real client against a local Market Data API server."""

import pandas as pd
import pytest

from fake_alpaca_data import API_KEY, PAGE_SIZE, SECRET_KEY, FakeAlpacaData
from tradenova_dagster.market.data import MarketDataError, get_source


@pytest.fixture
def fake_data():
    with FakeAlpacaData() as server:
        yield server


def test_a_day_of_bars_arrives_whole_across_pages(fake_data):
    source = get_source("alpaca", api_key=API_KEY, secret_key=SECRET_KEY, url_override=fake_data.url)
    bars = source.bars("SPY", "2026-11-27")
    assert len(bars) == 210  # early close
    assert len(fake_data.requests) == -(-210 // PAGE_SIZE)  # alpaca-py followed next_page_token
    query = fake_data.requests[0]["query"]
    assert (query["timeframe"], query["feed"], query["adjustment"]) == ("1Min", "iex", "raw")
    expected = get_source("synthetic").bars("SPY", "2026-11-27")
    pd.testing.assert_series_equal(bars["timestamp"], expected["timestamp"])
    assert bars["close"].tolist() == pytest.approx(expected["close"].tolist())


def test_daily_bars_and_no_keys_in_repr(fake_data):
    source = get_source("alpaca", api_key=API_KEY, secret_key=SECRET_KEY, url_override=fake_data.url)
    daily = source.daily_bars("SPY", "2026-11-16", "2026-11-20")
    assert [d.date().isoformat() for d in daily.index] == ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
    assert API_KEY not in repr(source) and SECRET_KEY not in repr(source)


def test_errors_are_clear(fake_data):
    with pytest.raises(MarketDataError, match="ALPACA_API_KEY and ALPACA_SECRET_KEY"):
        get_source("alpaca", api_key=None, secret_key=None)
    with pytest.raises(MarketDataError, match="market_data.feed: unknown value 'nasdaq'"):
        get_source("alpaca", api_key=API_KEY, secret_key=SECRET_KEY, feed="nasdaq")
    source = get_source("alpaca", api_key=API_KEY, secret_key=SECRET_KEY, url_override=fake_data.url)
    with pytest.raises(MarketDataError, match=r"Alpaca refused bars for XYZ \(HTTP 400\)"):
        source.bars("XYZ", "2026-11-20")
    wrong = get_source("alpaca", api_key="other", secret_key=SECRET_KEY, url_override=fake_data.url)
    with pytest.raises(MarketDataError, match="HTTP 401"):
        wrong.bars("SPY", "2026-11-20")


@pytest.mark.timeout(60)  # without a request timeout this would hang for ever
def test_a_data_server_that_never_answers_fails_the_request_instead_of_hanging_the_session():
    import socket

    from tradenova_dagster.market.alpaca_data import AlpacaMarketData

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never replies
    try:
        source = AlpacaMarketData("key", "secret", url_override=f"http://127.0.0.1:{silent.getsockname()[1]}",
                                  timeout_s=0.3)
        with pytest.raises(Exception, match="(?i)timed? ?out"):
            source.bars("SPY", "2026-11-20")
    finally:
        silent.close()
